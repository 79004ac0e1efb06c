"""Several clusters, storage, appliances, NixOS and brew: golden renders and real checks.

Real tools: kubernetes_validate (strict) on the pods with NFS, hostPath and claim
volumes; `systemd-analyze verify` on the mount units and `systemd-escape --path` for
their names; `nix-instantiate --parse` and `--eval` on the NixOS module (Debian's
nix-bin, offline: nothing is built or fetched). Custom resources against kubernetes/crds.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blumeops.catalog.model import Lab
from blumeops.core.resources import Resource
from blumeops.kubernetes import crds
from blumeops.render import RenderContext, render_lab
from blumeops.render.mounts import unit_stem
from blumeops.render.systemd import exec_start
from conftest import GOLDEN, check_golden, load_data
from render.systemd_check import systemd_analyze, verify_clean
from render.test_kubernetes import assert_strictly_valid
from requires import require
from validshare import note, run_requiring_valid

MINE = ("kubernetes", "argocd", "mounts", "nixos", "brew")


def hosts_lab_data() -> dict[str, Any]:
    """Two clusters (edge delivered by hub's ArgoCD), a NAS appliance with shares, mounts
    on Linux, macOS and NixOS, a brew service: the golden-file lab."""
    return {
        "lab": "hl",
        "tailnet": {"name": "tail1234.ts.net", "grants": [
            {"src": ["lin", "mac", "nix"], "dst": ["nas"], "ip": ["tcp:2049", "tcp:445"]}]},
        "domains": {"ops": {"suffix": "ops.example.com", "proxy": "caddy", "host": "mac"}},
        "hosts": {
            "mac": {"role": "compute", "os": "macos", "ssh": "me@mac",
                    "mounts": {"/System/Volumes/Data/mnt/media": {
                        "share": "nas:media", "read_only": True},
                        "/Users/me/photos": {"share": "nas:photos", "protocol": "smb",
                                             "user": "me"}}},
            "lin": {"role": "compute", "os": "linux", "ssh": "me@lin",
                    "mounts": {"/mnt/nas-media": {"share": "nas:media", "protocol": "smb",
                                                  "read_only": True},
                               "/srv/photos": {"share": "nas:photos",
                                               "options": ["nfsvers=4.1"]}}},
            "nix": {"role": "gpu", "os": "nixos", "ssh": "root@nix"},
            "nas": {"role": "storage", "os": "dsm", "managed": False, "address": "10.0.0.5",
                    "shares": {"media": {"path": "/volume1/media", "protocols": ["nfs", "smb"],
                                         "read_only": True},
                               "photos": {"path": "/volume1/photos",
                                          "protocols": ["nfs", "smb"]}}},
        },
        "clusters": {
            "hub": {"host": "mac", "context": "hub", "repo_url": "https://git.example.com/l.git",
                    "deploy_branch": "deploy",
                    "secret_store": {"kind": "onepassword",
                                     "connect_url": "http://connect.op.svc:8080"}},
            "edge": {"host": "nix", "context": "edge",
                     "repo_url": "https://git.example.com/l.git", "deploy_branch": "deploy",
                     "delivered_by": "hub", "server": "https://nix.tail1234.ts.net:6443",
                     "credentials": {"bearer_token": "op://infra/edge-argocd/token",
                                     "ca_data": "op://infra/edge-argocd/ca"},
                     "secret_store": {"kind": "onepassword",
                                      "connect_url": "https://connect.tail1234.ts.net"}},
        },
        "services": {
            "ui": {"native": "nas", "ports": {"http": 5000}, "routes": {"nas.ops": "http"},
                   "health": {"http": "/"}, "metrics": {"port": "http"}},
            "ollama": {"native": "mac", "brew": "ollama", "ports": {"http": 11434},
                       "health": {"http": "/"}},
            "api": {"native": "nix", "description": "API ${HOME} \"quoted\"",
                    "command": ["/run/current-system/sw/bin/api", "--name", "a b$c%d\\e"],
                    "environment": {"GREETING": "hi ${USER} \"x\" 100%", "PORT": 8080},
                    "secrets": {"TOKEN": "vault:api/token"},
                    "ports": {"http": 8080}, "health": {"http": "/healthz"},
                    "storage": {"films": {"share": "nas:media", "mount": "/mnt/media",
                                          "read_only": True}},
                    "names": {"systemd": "api-server.service"}},
            "worker": {"native": "nix", "command": ["worker"], "depends_on": ["api"],
                       "workdir": "/var/lib/worker", "health": {"command": ["true"]}},
            "photos": {"kubernetes": "hub", "image": "example/photos:1",
                       "ports": {"http": 2283}, "health": {"http": "/ping"},
                       "storage": {
                           "library": {"share": "nas:photos", "mount": "/library",
                                       "sub_path": "library"},
                           "films": {"share": "nas:media", "mount": "/films",
                                     "read_only": True},
                           "cache": {"size": "5Gi", "mount": "/cache",
                                     "storage_class": "local-path"}}},
            "logs": {"kubernetes": "edge", "image": "grafana/alloy:v1.5.0",
                     "workload": "daemonset", "names": {"argocd": "logs-edge"},
                     "ports": {"http": 12345}, "health": {"http": "/-/ready"},
                     "secrets": {"LOKI_TOKEN": "op://infra/loki/token"},
                     "storage": {"varlog": {"host_path": "/var/log", "mount": "/var/log",
                                            "read_only": True}}},
        },
    }


@pytest.fixture
def hosts_lab(tmp_path: Path) -> Lab:
    result = load_data(tmp_path, hosts_lab_data())
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    assert not result.diagnostics, [str(d) for d in result.diagnostics]
    return result.lab


def rendered(lab: Lab) -> list[Resource]:
    return render_lab(lab, RenderContext(), only=MINE)


def by_path(lab: Lab) -> dict[str, Resource]:
    return {r.path: r for r in rendered(lab)}


def test_golden_hosts_lab(hosts_lab: Lab) -> None:
    written = set()
    for r in rendered(hosts_lab):
        check_golden(f"hosts/{r.path}", r.body)
        written.add(f"hosts/{r.path}")
    on_disk = {str(p.relative_to(GOLDEN)) for p in (GOLDEN / "hosts").rglob("*") if p.is_file()}
    assert on_disk == written, "stale golden files: remove them"


# --- storage in pods ------------------------------------------------------------------


def test_pod_volumes_are_strictly_valid_and_point_at_the_share(hosts_lab: Lab) -> None:
    resources = [r for r in rendered(hosts_lab) if r.target.startswith("k8s@")]
    assert assert_strictly_valid(hosts_lab, resources) >= 6
    files = by_path(hosts_lab)
    photos = yaml.safe_load(files["kubernetes/hub/photos/deployment-photos.yaml"].body)
    volumes = {v["name"]: v for v in photos["spec"]["template"]["spec"]["volumes"]}
    assert volumes["library"] == {"name": "library",
                                  "nfs": {"server": "10.0.0.5", "path": "/volume1/photos"}}
    assert volumes["films"]["nfs"] == {"server": "10.0.0.5", "path": "/volume1/media",
                                       "readOnly": True}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "photos-cache"}
    mounts = {m["name"]: m for m in photos["spec"]["template"]["spec"]["containers"][0][
        "volumeMounts"]}
    assert mounts["library"] == {"name": "library", "mountPath": "/library",
                                 "subPath": "library"}
    assert mounts["films"]["readOnly"] is True
    # Only the claim is a PVC (and keeps its class); a share needs no claim.
    claims = [p for p in files if "persistentvolumeclaim" in p]
    assert claims == ["kubernetes/hub/photos/persistentvolumeclaim-photos-cache.yaml"]
    logs = yaml.safe_load(files["kubernetes/edge/logs/daemonset-logs.yaml"].body)
    assert logs["spec"]["template"]["spec"]["volumes"] == [
        {"name": "varlog", "hostPath": {"path": "/var/log", "type": "Directory"}}]


# --- two clusters, one ArgoCD -----------------------------------------------------------


def test_the_second_cluster_is_delivered_by_the_first_argocd(hosts_lab: Lab) -> None:
    files = by_path(hosts_lab)
    docs = {p: yaml.safe_load(r.body) for p, r in files.items() if p.endswith(".yaml")}
    edge_app = docs["argocd/edge/logs-edge.yaml"]  # names.argocd
    assert edge_app["spec"]["destination"] == {"server": "https://nix.tail1234.ts.net:6443",
                                               "namespace": "logs"}
    assert edge_app["spec"]["source"]["path"] == "rendered/kubernetes/edge/logs"
    hub_app = docs["argocd/hub/photos.yaml"]
    assert hub_app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
    # edge's app-of-apps sits among hub's Applications, so hub's root owns it.
    root = docs["argocd/hub/hl-edge-apps.yaml"]
    assert root["spec"]["source"]["path"] == "rendered/argocd/edge"
    assert root["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
    assert "directory" not in root["spec"]["source"]
    assert docs["argocd/hub/hl-apps.yaml"]["spec"]["source"]["directory"] == {
        "exclude": "hl-apps.yaml"}
    assert {p for p in docs if p.startswith("argocd/edge/")} == {
        "argocd/edge/logs-edge.yaml", "argocd/edge/hl-edge-cluster.yaml"}
    names = [d["metadata"]["name"] for p, d in docs.items() if p.startswith("argocd/")]
    assert len(names) == len(set(names)), "Application names collide in hub's ArgoCD"
    # Each cluster its own store and ExternalSecrets reading it.
    assert docs["kubernetes/edge/_cluster/clustersecretstore-onepassword.yaml"]["spec"][
        "provider"]["onepassword"]["connectHost"] == "https://connect.tail1234.ts.net"


def test_argocd_learns_the_cluster_from_an_external_secret(hosts_lab: Lab) -> None:
    res = by_path(hosts_lab)["kubernetes/hub/_cluster/externalsecret-cluster-edge.yaml"]
    doc = yaml.safe_load(res.body)
    assert crds.problems(doc) == []
    assert doc["metadata"]["namespace"] == "argocd"
    target = doc["spec"]["target"]
    assert target["template"]["metadata"]["labels"]["argocd.argoproj.io/secret-type"] \
        == "cluster"
    data = target["template"]["data"]
    assert data["name"] == "edge" and data["server"] == "https://nix.tail1234.ts.net:6443"
    # ESO fills the placeholders from the store; the result is ArgoCD's config JSON.
    config = json.loads(data["config"].replace("{{ .bearerToken }}", "TOKEN")
                        .replace("{{ .caData }}", "Q0E="))
    assert config == {"bearerToken": "TOKEN",
                      "tlsClientConfig": {"caData": "Q0E=", "insecure": False}}
    assert doc["spec"]["data"] == [
        {"secretKey": "bearerToken", "remoteRef": {"key": "edge-argocd", "property": "token"}},
        {"secretKey": "caData", "remoteRef": {"key": "edge-argocd", "property": "ca"}}]
    for r in rendered(hosts_lab):
        if r.kind in ("Application", "ExternalSecret", "ClusterSecretStore"):
            assert crds.problems(yaml.safe_load(r.body)) == [], r.path


# --- mounts on hosts --------------------------------------------------------------------


def test_mount_units_pass_systemd_analyze(hosts_lab: Lab, tmp_path: Path) -> None:
    units = [r for r in rendered(hosts_lab) if r.target == "mounts@lin"]
    assert sorted(Path(r.path).name for r in units) == [
        "mnt-nas\\x2dmedia.automount", "mnt-nas\\x2dmedia.mount",
        "srv-photos.automount", "srv-photos.mount"]
    folder = tmp_path / "units"
    folder.mkdir()
    paths = []
    for r in units:
        path = folder / Path(r.path).name
        path.write_text(r.body)
        paths.append(path)
    verify_clean(paths)
    smb = next(r.body for r in units if r.path.endswith("x2dmedia.mount"))
    assert "What=//10.0.0.5/media\nWhere=/mnt/nas-media\nType=cifs\n" in smb
    assert "Options=ro,_netdev,credentials=/etc/blumeops/cifs/nas-media.cred\n" in smb
    nfs = next(r.body for r in units if r.path.endswith("srv-photos.mount"))
    assert "What=10.0.0.5:/volume1/photos\n" in nfs and "Options=rw,_netdev,nfsvers=4.1\n" \
        in nfs


def test_a_misnamed_mount_unit_is_refused_by_systemd(hosts_lab: Lab, tmp_path: Path) -> None:
    """The check above can fail: systemd refuses a .mount whose name is not its path's."""
    unit = next(r for r in rendered(hosts_lab) if r.path.endswith("x2dmedia.mount"))
    wrong = tmp_path / "mnt-nas-media.mount"
    wrong.write_text(unit.body)
    proc = subprocess.run([systemd_analyze(), "verify", "--man=no", str(wrong)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "doesn't match unit name" in proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ["/mnt/media", "/mnt/nas-media", "/srv/a.b/c_d",
                                  "/Volumes/Média", "/x/.hidden", "/a:b"])
def test_unit_names_match_systemd_escape(path: str) -> None:
    tool = require(shutil.which("systemd-escape"), "systemd-escape (Debian systemd)")
    proc = subprocess.run([tool, "--path", path], capture_output=True, text=True, check=True)
    assert unit_stem(path) == proc.stdout.strip()


def test_autofs_map_on_macos(hosts_lab: Lab) -> None:
    body = by_path(hosts_lab)["mounts/mac/autofs/auto_blumeops"].body
    entries = [line.split("\t") for line in body.splitlines() if not line.startswith("#")]
    assert entries == [
        ["/System/Volumes/Data/mnt/media", "-fstype=nfs,ro,resvport",
         "10.0.0.5:/volume1/media"],
        ["/Users/me/photos", "-fstype=smbfs,rw", "://me@10.0.0.5/photos"]]


# --- NixOS ------------------------------------------------------------------------------


def nix(tool: str) -> str:
    return require(shutil.which(tool), f"{tool} (Debian nix-bin)")


def nix_eval(module: Path, attr: str) -> Any:
    expr = f"(import {module} {{ config = null; lib = null; pkgs = null; }}).{attr}"
    proc = subprocess.run([nix("nix-instantiate"), "--eval", "--strict", "--json", "-E", expr],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_nixos_module_parses_and_reads_back(hosts_lab: Lab, tmp_path: Path) -> None:
    files = by_path(hosts_lab)
    assert not any(p.startswith(("native/nix/", "mounts/nix/")) for p in files), \
        "a NixOS host gets a module, not unit files"
    module = tmp_path / "blumeops.nix"
    module.write_text(files["nixos/nix/blumeops.nix"].body)
    parsed = subprocess.run([nix("nix-instantiate"), "--parse", str(module)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert parsed.returncode == 0, parsed.stderr
    services = nix_eval(module, "systemd.services")
    assert set(services) == {"api-server", "blumeops-worker"}  # names.systemd kept
    api = services["api-server"]
    svc = hosts_lab.services["api"]
    # What Nix reads back is exactly the systemd syntax render/systemd.py writes.
    assert api["serviceConfig"]["ExecStart"] == exec_start("api", svc)
    assert api["environment"] == {"GREETING": "hi ${USER} \"x\" 100%%", "PORT": "8080"}
    assert api["description"] == "API ${HOME} \"quoted\" (blumeops)"
    assert api["serviceConfig"]["EnvironmentFile"] == "%S/blumeops/secrets/api.env"
    assert services["blumeops-worker"]["after"] == ["network-online.target",
                                                    "api-server.service"]
    assert services["blumeops-worker"]["serviceConfig"]["WorkingDirectory"] == \
        "/var/lib/worker"
    # The share the api's storage names is mounted by NixOS itself.
    fs = nix_eval(module, "fileSystems")
    assert fs == {"/mnt/media": {"device": "10.0.0.5:/volume1/media", "fsType": "nfs",
                                 "options": ["ro", "_netdev", "noauto", "x-systemd.automount",
                                             "x-systemd.idle-timeout=600"]}}
    assert nix_eval(module, "networking.firewall.allowedTCPPorts") == [8080]
    assert "vault:" not in files["nixos/nix/blumeops.nix"].body


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def nix_strings_round_trip(value: str, tmp_path: Path) -> None:
    """Any environment value the catalog accepts reads back from the module unchanged
    (systemd's `%` doubled, as in a unit file): Nix interpolation never runs."""
    data = hosts_lab_data()
    data["services"]["api"]["environment"] = {"V": value}
    folder = tmp_path / f"lab-{abs(hash(value))}"
    folder.mkdir(exist_ok=True)
    result = load_data(folder, data)
    note(result.lab is not None)
    if result.lab is None:
        return  # refused at validate (e.g. odd whitespace): never rendered
    module = folder / "m.nix"
    module.write_text(by_path(result.lab)["nixos/nix/blumeops.nix"].body)
    got = nix_eval(module, 'systemd.services."api-server".environment.V')
    assert got == value.replace("%", "%%")


def test_nix_strings_round_trip(tmp_path: Path) -> None:
    run_requiring_valid(lambda: nix_strings_round_trip(tmp_path=tmp_path))


# --- brew -------------------------------------------------------------------------------


def test_brew_service_is_a_brewfile_line(hosts_lab: Lab) -> None:
    res = by_path(hosts_lab)["native/mac/brew/ollama.Brewfile"]
    assert res.target == "brew@mac" and res.kind == "formula" and res.service == "ollama"
    assert res.body == 'brew "ollama", restart_service: :changed\n'
    # Nothing of an appliance's is rendered for it to run.
    assert not any("/nas/" in r.path for r in render_lab(hosts_lab, RenderContext()))


def test_an_appliance_is_routed_to_and_scraped(hosts_lab: Lab) -> None:
    """The NAS runs its own UI: Caddy routes to it and Prometheus scrapes it at the NAS's
    address, though nothing is rendered for the NAS to run."""
    out = {r.path: r.body for r in render_lab(hosts_lab, RenderContext(),
                                              only=("caddy", "prometheus"))}
    caddy = json.loads(out["caddy/mac.json"])
    assert "10.0.0.5:5000" in json.dumps(caddy)
    scrape = yaml.safe_load(out["prometheus/prometheus.yml"])
    targets = [t for job in scrape["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    assert "10.0.0.5:5000" in targets


def test_host_docs_name_shares_mounts_and_appliances(hosts_lab: Lab) -> None:
    docs = {r.path: r.body for r in render_lab(hosts_lab, RenderContext(), only=("docs",))}
    nas = docs["docs/hosts/nas.md"]
    assert "not managed by blumeops" in nas
    assert "| `nas:media` | `/volume1/media` | nfs, smb (read-only) |" in nas
    nix = docs["docs/hosts/nix.md"]  # implied by the api service's share volume
    assert "| `/mnt/media` | `nas:media` | nfs (read-only) |" in nix
