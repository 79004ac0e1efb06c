"""NixOS hosts: their services and mounts as one NixOS module, not unit files.

On NixOS, /etc/systemd/system is built from the system configuration, so a unit file
written there would be lost on the next `nixos-rebuild`. A NixOS host (`os: nixos`) gets
`nixos/HOST/blumeops.nix` instead: `systemd.services.<unit>` for each native service
(the same ExecStart, environment, ordering and restart policy as render/systemd.py),
`fileSystems` for its mounts (automounted, like render/mounts.py) and its services'
TCP ports opened in the firewall. Import it from `configuration.nix` and run
`nixos-rebuild switch`: NixOS applies it, blumeops only renders it.

Secret values are never in the module (it lands in the world-readable Nix store): a
service with secrets reads `EnvironmentFile=` `/var/lib/blumeops/secrets/NAME.env`,
which you provide (sops-nix, agenix, or by hand, 0600).
"""

from __future__ import annotations

from blumeops.catalog.model import Lab, Mount, Service, ServiceManager
from blumeops.catalog.resolve import host_mounts, service_manager, share_source, systemd_unit
from blumeops.core.resources import Resource
from blumeops.render import RenderContext
from blumeops.render.systemd import LAB_DIR, _resolve, env_file, exec_start, spec
from blumeops.render.unitfields import one_line


def nix_string(value: str) -> str:
    """A Nix double-quoted string: backslash, quote and `${` (interpolation) escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def nix_list(values: list[str]) -> str:
    return "[ " + " ".join(nix_string(v) for v in values) + " ]" if values else "[ ]"


def _service(lab: Lab, name: str, svc: Service) -> list[str]:
    unit = systemd_unit(name, svc).removesuffix(".service")
    deps = [systemd_unit(d, lab.services.get(d)) for d in svc.depends_on]
    config = [
        ("ExecStart", exec_start(name, svc)),
        ("WorkingDirectory", _resolve(svc.workdir) if svc.workdir else LAB_DIR),
    ]
    if svc.secrets:
        config.append(("EnvironmentFile", env_file(name)))
    config += [("Restart", "on-failure"), ("RestartSec", "1"), ("KillMode", "control-group")]
    out = [
        f"  systemd.services.{nix_string(unit)} = {{",
        f"    description = {nix_string(spec(one_line(svc.description) or name) + ' (blumeops)')};",
        '    wantedBy = [ "multi-user.target" ];',
        '    wants = [ "network-online.target" ];',
        f"    after = {nix_list(['network-online.target', *deps])};",
    ]
    if svc.environment:
        out.append("    environment = {")
        out += [f"      {nix_string(k)} = {nix_string(spec(v))};"
                for k, v in sorted(svc.environment.items())]
        out.append("    };")
    if svc.secrets:
        out.append("    # secrets (values never here: provide the EnvironmentFile, 0600): "
                   + ", ".join(sorted(svc.secrets)))
    out.append("    serviceConfig = {")
    out += [f"      {key} = {nix_string(value)};" for key, value in config]
    out += ["    };", "  };"]
    return out


def _file_system(lab: Lab, point: str, mount: Mount) -> list[str]:
    opts = ["ro" if mount.read_only else "rw", "_netdev", "noauto", "x-systemd.automount",
            "x-systemd.idle-timeout=600", *mount.options]
    return [
        f"  fileSystems.{nix_string(point)} = {{",
        f"    device = {nix_string(share_source(lab, mount.share, mount.protocol))};",
        f"    fsType = {nix_string('cifs' if mount.protocol == 'smb' else 'nfs')};",
        f"    options = {nix_list(opts)};",
        "  };",
    ]


def module(lab: Lab, ctx: RenderContext, host: str) -> str:
    services = [(n, s) for n, s in lab.services.items() if s.native == host and s.command]
    lines = [
        ctx.header("#").rstrip("\n"),
        "# Import it from configuration.nix (imports = [ ./blumeops.nix ];) and run",
        "# `nixos-rebuild switch`: NixOS applies it, blumeops only renders it.",
        "{ config, lib, pkgs, ... }:",
        "{",
    ]
    for name, svc in services:
        lines += _service(lab, name, svc)
    for point, mount in host_mounts(lab, host).items():
        lines += _file_system(lab, point, mount)
    ports = sorted({p for _, s in services for p in s.ports.values()})
    if ports:
        lines.append("  networking.firewall.allowedTCPPorts = [ "
                     + " ".join(map(str, ports)) + " ];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out: list[Resource] = []
    for host, spec_ in lab.hosts.items():
        if not spec_.managed or service_manager(lab, host) is not ServiceManager.nixos:
            continue
        out.append(Resource(f"nixos@{host}", "module", host, module(lab, ctx, host),
                            f"nixos/{host}/blumeops.nix"))
    return out
