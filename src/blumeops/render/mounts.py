"""Mounts of shares on hosts: what mounts them at boot, in each OS's own terms.

A host's mounts are the ones it declares (`hosts.H.mounts`) and those its native
services' `storage: {share: HOST:SHARE}` imply (catalog.resolve.host_mounts).

- Linux: one systemd `.mount` unit per mount point (named as systemd names it, from the
  path) plus a matching `.automount`, so boot never waits for a NAS that is asleep and
  the share is mounted on first access. SMB credentials come from a root-only file
  (`/etc/blumeops/cifs/HOST-SHARE.cred`, `username=`/`password=` lines) that you create
  on the host: never from the catalog.
- macOS: one autofs direct map, `auto_blumeops`, for `/etc/auto_blumeops`, with the line
  `/- auto_blumeops -nosuid` added to `/etc/auto_master` (then `sudo automount -cv`).
  autofs is how macOS mounts NFS at boot; SMB passwords come from the system keychain
  or `/etc/nsmb.conf`, never the map.
- NixOS: `fileSystems` entries inside the host's module (render/nixos.py).

Rendered for review and for the host's own tools to apply (`mounts@HOST`): blumeops does
not mount anything itself.
"""

from __future__ import annotations

from blumeops.catalog.model import Lab, Mount
from blumeops.catalog.resolve import host_mounts, share_source, split_share
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

_UNIT_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")
CIFS_CREDENTIALS = "/etc/blumeops/cifs"


def unit_stem(path: str) -> str:
    """`systemd-escape --path`: /mnt/nas-media -> mnt-nas\\x2dmedia."""
    trimmed = path.strip("/")
    if not trimmed:
        return "-"
    out = []
    for i, ch in enumerate(trimmed):
        if ch == "/":
            out.append("-")
        elif ch in _UNIT_SAFE and not (ch == "." and i == 0):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


def options(lab: Lab, mount: Mount, *, linux: bool) -> list[str]:
    """Mount options: read-only when asked, the network's, then the declared ones."""
    opts = ["ro" if mount.read_only else "rw"]
    if linux:
        opts.append("_netdev")
        if mount.protocol == "smb":
            host, share = split_share(mount.share)
            opts.append(f"credentials={CIFS_CREDENTIALS}/{host}-{share}.cred")
    elif mount.protocol == "nfs":
        opts.append("resvport")  # macOS' NFS client needs it for most NAS exports
    return [*opts, *mount.options]


def _unit_value(text: str) -> str:
    """A value in a unit file: `%` escaped for specifier expansion."""
    return text.replace("%", "%%")


def mount_unit(lab: Lab, ctx: RenderContext, point: str, mount: Mount) -> str:
    what = share_source(lab, mount.share, mount.protocol)
    lines = [
        ctx.header("#").rstrip("\n"),
        "[Unit]",
        f"Description={_unit_value(mount.share)} at {_unit_value(point)} (blumeops)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Mount]",
        f"What={_unit_value(what)}",
        f"Where={_unit_value(point)}",
        f"Type={'cifs' if mount.protocol == 'smb' else 'nfs'}",
        f"Options={_unit_value(','.join(options(lab, mount, linux=True)))}",
        "TimeoutSec=30",
        "",
    ]
    return "\n".join(lines) + "\n"


def automount_unit(ctx: RenderContext, point: str, mount: Mount) -> str:
    lines = [
        ctx.header("#").rstrip("\n"),
        "[Unit]",
        f"Description=mount {_unit_value(mount.share)} at {_unit_value(point)} on first "
        "access (blumeops)",
        "",
        "[Automount]",
        f"Where={_unit_value(point)}",
        "TimeoutIdleSec=600",
        "",
        "[Install]",
        "WantedBy=remote-fs.target",
    ]
    return "\n".join(lines) + "\n"


def autofs_map(lab: Lab, ctx: RenderContext, mounts: dict[str, Mount]) -> str:
    lines = [ctx.header("#").rstrip("\n"),
             "# An autofs direct map: save as /etc/auto_blumeops, add the line",
             "#   /-  auto_blumeops  -nosuid",
             "# to /etc/auto_master, then run `sudo automount -cv`."]
    for point, mount in mounts.items():
        if mount.protocol == "smb":
            user = f"{mount.user}@" if mount.user else ""
            source = f"://{user}{share_source(lab, mount.share, 'smb').removeprefix('//')}"
            fstype = "smbfs"
        else:
            source, fstype = share_source(lab, mount.share, "nfs"), "nfs"
        opts = ",".join([f"-fstype={fstype}", *options(lab, mount, linux=False)])
        # autofs splits on blanks; the rules keep mount points and sources free of them.
        lines.append(f"{point}\t{opts}\t{source}")
    return "\n".join(lines) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out: list[Resource] = []
    for host, spec in lab.hosts.items():
        if not spec.managed or spec.os.value not in ("linux", "macos"):
            continue  # NixOS: fileSystems in its module; appliances mount nothing of ours
        mounts = host_mounts(lab, host)
        if not mounts:
            continue
        target = f"mounts@{host}"
        if spec.os.value == "macos":
            out.append(Resource(target, "autofs", "auto_blumeops",
                                autofs_map(lab, ctx, mounts),
                                f"mounts/{host}/autofs/auto_blumeops"))
            continue
        for point, mount in mounts.items():
            stem = unit_stem(point)
            out.append(Resource(target, "mount", point, mount_unit(lab, ctx, point, mount),
                                f"mounts/{host}/systemd/{stem}.mount"))
            out.append(Resource(target, "automount", point,
                                automount_unit(ctx, point, mount),
                                f"mounts/{host}/systemd/{stem}.automount"))
    return out
