"""Loading: includes, malformed files, the CLI's exit codes and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blumeops.catalog.synthetic import synthetic_lab
from blumeops.cli import cli
from blumeops.lab.loader import load_lab
from conftest import EXAMPLES, load_data, write_lab

MINIMAL = "lab: t\nhosts:\n  a: {role: compute, os: linux}\n"


def test_examples_validate() -> None:
    for name in ("demo", "blumeops"):
        result = load_lab(EXAMPLES / name)
        assert result.ok, [str(d) for d in result.diagnostics]


def test_blumeops_example_is_faithful() -> None:
    lab = load_lab(EXAMPLES / "blumeops").lab
    assert lab is not None
    assert set(lab.hosts) == {"indri", "sifaka", "gilbert", "ringtail", "fly"}
    assert not lab.hosts["sifaka"].managed and "media" in lab.hosts["sifaka"].shares
    assert lab.hosts["ringtail"].os.value == "nixos"
    assert lab.clusters["k3s"].delivered_by == "minikube"
    assert lab.public is not None and lab.public.host == "fly"  # nginx on Fly.io
    assert lab.services["docs"].public
    native = {n for n, s in lab.services.items() if s.native == "indri"}
    assert {"forgejo", "zot", "jellyfin", "borgmatic", "caddy", "alloy"} <= native
    k8s = {n for n, s in lab.services.items() if s.kubernetes == "minikube"}
    assert {"grafana", "prometheus", "loki", "miniflux", "navidrome", "kiwix", "postgresql",
            "argocd", "external-secrets", "onepassword-connect"} <= k8s
    assert lab.clusters["minikube"].delivery == "argocd"
    assert lab.backups is not None and lab.backups.to == "sifaka"


def test_demo_lab_shape() -> None:
    lab = load_lab(EXAMPLES / "demo").lab
    assert lab is not None
    assert len(lab.services) >= 4
    assert any(s.secrets for s in lab.services.values())
    assert any(s.metrics for s in lab.services.values())
    assert any(s.depends_on for s in lab.services.values())
    assert lab.domains["ops"].suffix == "ops.localhost"
    assert lab.domains["ops"].listen == "127.0.0.1:8080"


def test_includes_merge_and_report_duplicates(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    write_lab(tmp_path, MINIMAL + "include: [svc/*.yaml]\n")
    svc = "services:\n  web:\n    native: a\n    command: [x]\n"
    write_lab(tmp_path / "svc", svc, "one.yaml")
    assert load_lab(tmp_path).ok
    write_lab(tmp_path / "svc", svc, "two.yaml")
    result = load_lab(tmp_path)
    assert not result.ok
    (dup,) = [d for d in result.errors if d.rule == "duplicate-name"]
    assert dup.file.endswith("two.yaml") and dup.line == 2
    assert "one.yaml:2" in dup.message


def test_include_cycle(tmp_path: Path) -> None:
    write_lab(tmp_path, MINIMAL + "include: [a.yaml]\n")
    write_lab(tmp_path, "include: [b.yaml]\n", "a.yaml")
    write_lab(tmp_path, "include: [a.yaml]\n", "b.yaml")
    result = load_lab(tmp_path)
    (cycle,) = [d for d in result.errors if d.rule == "include-cycle"]
    assert "a.yaml -> b.yaml -> a.yaml" in cycle.message
    assert cycle.file.endswith("b.yaml")


def test_included_file_unknown_section(tmp_path: Path) -> None:
    write_lab(tmp_path, MINIMAL + "include: [x.yaml]\n")
    write_lab(tmp_path, "servces: {}\n", "x.yaml")
    (d,) = load_lab(tmp_path).errors
    assert d.file.endswith("x.yaml") and "did you mean 'services'" in d.message


def test_missing_file(tmp_path: Path) -> None:
    result = load_lab(tmp_path / "nope.yaml")
    (d,) = result.errors
    assert d.rule == "file" and "file not found" in d.message


def test_directory_without_lab_yaml(tmp_path: Path) -> None:
    (d,) = load_lab(tmp_path).errors
    assert "file not found" in d.message and d.file.endswith("lab.yaml")


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    (d,) = load_lab(path).errors
    assert "not a text file" in d.message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"lab: t\nhosts: \xff\xfe\n")
    (d,) = load_lab(path).errors
    assert "not UTF-8" in d.message and d.line == 2


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    result = load_data(tmp_path, MINIMAL + "bogus: 1\nservices:\n  w:\n    native: a\n"
                       "    ports: {http: x}\n    colour: red\n")
    rules = sorted(d.rule for d in result.errors)
    assert rules == ["schema", "unknown-key", "unknown-key"]


def test_warnings_and_strict(tmp_path: Path) -> None:
    text = MINIMAL.replace("os: linux", "os: linux, service_manager: supervisor") + (
        "services:\n  w:\n    native: a\n    command: [x]\n")
    result = load_data(tmp_path, text)
    assert result.ok and [d.rule for d in result.warnings] == ["no-health"]
    strict = load_lab(tmp_path / "lab.yaml", strict=True)
    assert not strict.ok and strict.errors[0].rule == "no-health"


def test_no_metrics_warning(tmp_path: Path) -> None:
    text = (MINIMAL.replace("os: linux", "os: linux, service_manager: supervisor")
            + "domains:\n  ops: {suffix: o.test, proxy: caddy, host: a}\n"
            + "services:\n  w:\n    native: a\n    command: [x]\n    ports: {http: 80}\n"
            + "    routes: {w.ops: http}\n    health: {tcp: http}\n")
    result = load_data(tmp_path, text)
    assert [d.rule for d in result.warnings] == ["no-metrics"]


def test_merge_keys_and_anchors(tmp_path: Path) -> None:
    text = MINIMAL.replace("os: linux", "os: linux, service_manager: supervisor") + (
        "services:\n  w: &base\n    native: a\n    command: [x]\n    health: {tcp: p}\n"
        "    ports: {p: 80}\n  v:\n    <<: *base\n    ports: {p: 81}\n")
    result = load_data(tmp_path, text)
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.lab is not None and result.lab.services["v"].ports["p"] == 81


def test_keys_are_strings_not_yaml11_booleans(tmp_path: Path) -> None:
    result = load_data(tmp_path, MINIMAL + "on: x\n")
    (d,) = result.errors
    assert "unknown key 'on'" in d.message


def test_validate_cli_json(tmp_path: Path) -> None:
    path = write_lab(tmp_path, MINIMAL + "services:\n  w:\n    native: b\n    command: [x]\n")
    out = CliRunner().invoke(cli, ["validate", str(path), "--output", "json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["valid"] is False
    (err,) = data["errors"]
    assert {"file", "line", "col", "rule", "message"} <= set(err)
    assert err["line"] == 6 and err["rule"] == "unknown-reference"


def test_validate_cli_exit_codes() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", str(EXAMPLES / "blumeops")]).exit_code == 0
    assert runner.invoke(cli, ["validate", "--no-such-flag"]).exit_code == 2


def test_validate_subprocess_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"\x00\x01garbage")
    proc = subprocess.run([sys.executable, "-m", "blumeops", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "not a text file" in proc.stderr


def test_show_fills_derived_values() -> None:
    out = CliRunner().invoke(cli, ["show", str(EXAMPLES / "blumeops"), "--output", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    forge = data["services"]["forgejo"]
    assert forge["runtime"] == "native" and forge["runs_on"] == "indri"
    assert forge["service_manager"] == "launchd"
    route = forge["routes"]["forge.ops"]
    assert route["hostname"] == "forge.ops.eblu.me"
    assert route["upstream"] == "http://127.0.0.1:3001"
    grafana = data["services"]["grafana"]["routes"]
    assert grafana["grafana.ops"]["upstream"] == "https://grafana.tail8d86e.ts.net"
    assert grafana["grafana.ts"]["url"] == "https://grafana.tail8d86e.ts.net"
    yml = CliRunner().invoke(cli, ["show", str(EXAMPLES / "demo")])
    assert yaml.safe_load(yml.stdout)["services"]["api"]["routes"]["api.ops"]["url"] == (
        "http://api.ops.localhost:8080")


def test_upstream_on_other_host(tmp_path: Path) -> None:
    text = (
        "lab: t\ntailnet: {name: tn.ts.net}\n"
        "domains:\n  ops: {suffix: o.test, proxy: caddy, host: a}\n"
        "hosts:\n  a: {role: compute, os: linux}\n  b: {role: compute, os: linux}\n"
        "services:\n  w:\n    native: b\n    command: [x]\n    ports: {http: 81}\n"
        "    routes: {w.ops: http}\n"
    )
    lab = load_data(tmp_path, text).lab
    assert lab is not None
    from blumeops.catalog.resolve import routes

    (route,) = routes(lab)
    assert route.upstream == "http://b.tn.ts.net:81"


def test_schema_command() -> None:
    out = CliRunner().invoke(cli, ["schema"])
    schema = json.loads(out.stdout)
    assert schema["title"] == "BlumeOps lab catalog"
    assert "services" in schema["properties"]


def test_synthetic_labs_are_valid(tmp_path: Path) -> None:
    result = load_data(tmp_path, synthetic_lab(50, 4))
    assert result.ok, [str(d) for d in result.errors[:5]]


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(yaml_values.map(lambda v: yaml.safe_dump(v)), st.text(max_size=200),
                 st.binary(max_size=200)))
def test_loader_never_raises(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = load_lab(path)
    assert result.lab is not None or result.errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["lab", "hosts", "services", "domains", "tailnet",
                                        "clusters", "backups", "include"]),
                       yaml_values, max_size=6))
def test_loader_never_raises_on_lab_shaped_data(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    result = load_lab(path)
    assert result.lab is not None or result.errors


def test_committed_schema_is_current() -> None:
    """schema/lab.schema.json (which editors load) matches `blumeops schema`."""
    committed = (EXAMPLES.parent / "schema" / "lab.schema.json").read_text()
    out = CliRunner().invoke(cli, ["schema"])
    assert out.stdout == committed, "run: blumeops schema > schema/lab.schema.json"


def test_examples_validate_against_the_json_schema() -> None:
    import jsonschema

    schema = json.loads((EXAMPLES.parent / "schema" / "lab.schema.json").read_text())
    for path in [EXAMPLES / "demo" / "lab.yaml", EXAMPLES / "blumeops" / "lab.yaml",
                 *(EXAMPLES / "blumeops" / "services").glob("*.yaml")]:
        data = yaml.safe_load(path.read_text())
        if "lab" not in data:  # an included file: check it as part of a lab
            data = {"lab": "x", "hosts": {"h": {"role": "compute", "os": "linux"}}, **data}
        jsonschema.validate(data, schema)
    # and it still rejects what blumeops rejects
    bad = {"lab": "x", "hosts": {"h": {"role": "compute", "os": "linux", "tag": []}}}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an unknown key passed the JSON Schema")


# VmHWM is this process's own peak (ru_maxrss would carry the forking parent's over exec).
BOMB_CHILD = """
import sys
from pathlib import Path
from blumeops.lab.loader import load_lab
result = load_lab(Path(sys.argv[1]))
print(result.errors[0].message if result.errors else "accepted")
status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()
print(int(status[0]) // 1024)
"""


def test_a_20_kb_alias_bomb_is_refused_cheaply(tmp_path: Path) -> None:
    """Ten levels of ten aliases each (10^10 values once expanded) in about 20 KB: refused
    before anything is built, in little memory (it used to grow to 600 MB first)."""
    lines = ["lab: t", "l0: &l0 [" + ", ".join(['"' + "lol" * 60 + '"'] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines += [f"# {'padding ' * 12}" for _ in range(180)]  # the size of the probe's file
    bomb = tmp_path / "lab.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert 15_000 < bomb.stat().st_size < 25_000
    out = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(bomb)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.splitlines()
    assert "refused as an alias bomb" in out[0], out
    assert int(out[1]) < 150, f"peak {out[1]} MB"  # (it used to take 600 MB and 25 s)
