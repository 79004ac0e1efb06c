"""Native renderers: golden supervisor programs, launchd/systemd checks, real supervisord."""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import yaml
from systemd_check import verify_clean

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, native
from blumeops.secrets.envfile import write_env_file
from conftest import EXAMPLES, ROOT, check_golden

SUPERVISORD = ROOT / ".venv" / "bin" / "supervisord"


def render(lab: Lab) -> dict[str, Any]:
    return {r.path: r for r in native.render(lab, RenderContext())}


def linux_lab(**service: Any) -> Lab:
    svc = {"native": "node", "command": ["/bin/sleep", "1000"], **service}
    return Lab.model_validate({
        "lab": "t",
        "hosts": {"node": {"role": "compute", "os": "linux"}},
        "services": {"db": {"native": "node", "command": ["/bin/true"]}, "app": svc},
    })


# --- supervisor ---------------------------------------------------------------------------


def test_demo_golden(demo_lab: Lab) -> None:
    out = render(demo_lab)
    assert sorted(out) == [f"native/box/supervisor/{n}.conf" for n in
                           ("api", "echo", "notes", "web")]
    for path, res in out.items():
        check_golden(f"native/demo/{Path(path).name}", res.body)
    api = out["native/box/supervisor/api.conf"]
    assert (api.target, api.kind, api.name) == ("supervisor@box", "program", "api")
    assert api.secret_refs == (("API_TOKEN", "vault:demo/api-token"),)
    notes = out["native/box/supervisor/notes.conf"]
    assert notes.depends_on == ("api",)


def test_program_format(demo_lab: Lab) -> None:
    body = render(demo_lab)["native/box/supervisor/api.conf"].body
    parser = configparser.RawConfigParser(comment_prefixes=(";", "#"))
    parser.read_string(body)
    section = dict(parser["program:api"])
    assert section["command"] == (
        "'%(ENV_BLUMEOPS_PYTHON)s' -m blumeops.secrets.exec "
        "'%(ENV_BLUMEOPS_STATE_DIR)s/secrets/api.env' -- python3 apps/api.py")
    assert section["directory"] == "%(ENV_BLUMEOPS_LAB_DIR)s"
    assert section["stdout_logfile"] == "%(ENV_BLUMEOPS_STATE_DIR)s/logs/api.log"
    assert section["environment"] == 'API_NAME="demo",API_PORT="18102"'
    for key, value in (("autorestart", "true"), ("stopasgroup", "true"),
                       ("killasgroup", "true"), ("redirect_stderr", "true"),
                       ("startsecs", "1")):
        assert section[key] == value


def test_supervisor_parses_escapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """supervisord's own parser reads back argv and environment exactly."""
    from supervisor.datatypes import dict_of_key_value_pairs
    from supervisor.options import ServerOptions

    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo" / "lab.yaml").read_text())
    nasty = ["bin/tool", "50%", "it's", 'say "hi"', "$HOME", "a b", "%(here)s", "a ;b #c",
             "%%(here)s", "trail\u3000"]
    env = {"PCT": "100%", "Q": 'x"y\\z', "S": "a,b=c", "E": "", "END": "it's 'x'",
           "HERE": "%(here)s", "SEMI": "x ;y", "HASH": "x #y", "SP": "end "}
    data["services"]["web"].update(command=nasty, environment=env, workdir="w d ;x ")
    lab = Lab.model_validate(data)
    body = render(lab)["native/box/supervisor/web.conf"].body
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\n[include]\nfiles = web.conf\n")
    (tmp_path / "web.conf").write_text(body)
    (tmp_path / "logs").mkdir()
    monkeypatch.setenv("BLUMEOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BLUMEOPS_LAB_DIR", "/lab dir")
    monkeypatch.setenv("BLUMEOPS_PYTHON", sys.executable)
    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    [group] = options.process_group_configs
    [proc] = group.process_configs
    import shlex
    # END cannot be written in `environment=` (it ends with a quote): it goes via `env`
    assert shlex.split(proc.command) == ["env", f"END={env['END']}", "/lab dir/bin/tool",
                                         *nasty[1:]]
    assert proc.directory == "/lab dir/w d ;x "
    assert proc.environment == {k: v for k, v in env.items() if k != "END"}
    assert proc.stdout_logfile == f"{tmp_path}/logs/web.log"
    assert proc.stopasgroup and proc.killasgroup and proc.redirect_stderr
    assert dict_of_key_value_pairs('A="1"') == {"A": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: Any) -> HTTPConnection:
        conn = HTTPConnection("localhost")
        path = self.path

        def connect() -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            conn.sock = sock

        conn.connect = connect  # type: ignore[method-assign]
        return conn


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to ~100 bytes: pytest's tmp_path is too long
    path = Path(tempfile.mkdtemp(prefix="bo", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_real_supervisord_runs_program(short_dir: Path) -> None:
    """The rendered program, secrets wrapper included, reaches RUNNING in a real supervisord."""
    port = free_port()
    lab_dir, state = short_dir / "l d", short_dir / "s t"  # spaces on purpose
    (lab_dir / "site").mkdir(parents=True)
    (lab_dir / "site" / "index.html").write_text("hi from web\n")
    for d in ("logs", "secrets", "programs"):
        (state / d).mkdir(parents=True)
    script = ('printf "%s|%s" "$TOKEN" "$GREETING" > token.out && '
              f'exec {sys.executable} -m http.server {port} --bind 127.0.0.1 --directory site')
    lab = Lab.model_validate({
        "lab": "t",
        "hosts": {"box": {"role": "compute", "os": "linux", "service_manager": "supervisor"}},
        "services": {"web": {
            "native": "box", "command": ["sh", "-c", script], "ports": {"http": port},
            "environment": {"GREETING": "50% 'off' %(here)s ;x #y"}, "startsecs": 1,
            "secrets": {"TOKEN": "vault:t/token"},
        }},
    })
    [res] = native.render(lab, RenderContext())
    (state / "programs" / "web.conf").write_text(res.body)
    write_env_file(state / "secrets" / "web.env", {"TOKEN": "s3cret"})
    assert "s3cret" not in res.body
    sock = short_dir / "s.sock"
    conf = short_dir / "supervisord.conf"
    conf.write_text(
        "[unix_http_server]\n"
        f"file={sock}\n\n[supervisord]\n"
        f"logfile={state}/logs/supervisord.log\npidfile={short_dir}/sd.pid\n"
        f"directory={lab_dir}\nnodaemon=true\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        "[include]\nfiles = s?t/programs/*.conf\n")
    env = {"PATH": os.environ["PATH"], "BLUMEOPS_STATE_DIR": str(state),
           "BLUMEOPS_LAB_DIR": str(lab_dir), "BLUMEOPS_PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT / "src")}
    daemon = subprocess.Popen([str(SUPERVISORD), "-c", str(conf)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rpc = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(str(sock)))
    pid = 0
    try:
        deadline = time.monotonic() + 20
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert daemon.poll() is None, "supervisord exited"
            try:
                info = rpc.supervisor.getProcessInfo("web")
                if info["statename"] in ("RUNNING", "FATAL"):
                    break
            except (OSError, xmlrpc.client.Fault):
                pass
            time.sleep(0.1)
        log = (state / "logs" / "web.log")
        assert info.get("statename") == "RUNNING", log.read_text() if log.exists() else info
        pid = int(info["pid"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as r:
            assert r.read() == b"hi from web\n"
        assert (lab_dir / "token.out").read_text() == "s3cret|50% 'off' %(here)s ;x #y"
    finally:
        try:
            rpc.supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    if pid:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the program outlived supervisord"


# --- launchd ------------------------------------------------------------------------------


def test_launchd_plists_round_trip(blumeops_lab: Lab) -> None:
    out = render(blumeops_lab)
    plists = {p: r for p, r in out.items() if "/launchd/" in p}
    # forgejo keeps the label its Homebrew plist has (names.launchd); the rest are derived.
    assert sorted(plists) == sorted(
        ["native/indri/launchd/homebrew.mxcl.forgejo.plist"]
        + [f"native/indri/launchd/me.blumeops.{n}.plist"
           for n in ("caddy", "zot", "jellyfin", "borgmatic", "alloy", "speedtest")])
    forgejo = plistlib.loads(out["native/indri/launchd/homebrew.mxcl.forgejo.plist"].body.encode())
    assert forgejo["Label"] == "homebrew.mxcl.forgejo"
    argv = forgejo["ProgramArguments"]
    assert argv[argv.index("--") + 1:] == [
        "/opt/homebrew/bin/forgejo", "web", "--config",
        "/opt/homebrew/var/forgejo/custom/conf/app.ini"]
    # A Mac has python3, not blumeops: the stdlib-only wrapper the launchd manager writes.
    assert argv[:argv.index("--")] == [
        "/usr/bin/env", "python3", "/usr/local/var/blumeops/bin/blumeops-secrets-exec",
        "/usr/local/var/blumeops/secrets/forgejo.env"]
    assert forgejo["WorkingDirectory"] == "/opt/homebrew/var/forgejo"
    assert forgejo["RunAtLoad"] is True and forgejo["KeepAlive"] == {"SuccessfulExit": False}
    assert forgejo["StandardOutPath"] == forgejo["StandardErrorPath"]
    res = out["native/indri/launchd/homebrew.mxcl.forgejo.plist"]
    assert (res.target, res.kind, res.name) == ("launchd@indri", "plist", "forgejo")
    assert dict(res.secret_refs)["FORGEJO__security__SECRET_KEY"].startswith("op://")
    for path, r in plists.items():
        data = plistlib.loads(r.body.encode())
        assert plistlib.dumps(data, sort_keys=True).decode() == r.body, path
        check_golden(f"native/blumeops/{Path(path).name}", r.body)


def test_launchd_environment() -> None:
    lab = Lab.model_validate({
        "lab": "t", "hosts": {"mac": {"role": "compute", "os": "macos"}},
        "services": {"app": {"native": "mac", "command": ["/bin/app"],
                             "environment": {"B": "2", "A": "1"},
                             "secrets": {"K": "vault:a/b"}}},
    })
    [res] = native.render(lab, RenderContext())
    data = plistlib.loads(res.body.encode())
    assert data["EnvironmentVariables"] == {"A": "1", "B": "2"}
    assert "K" not in data["EnvironmentVariables"]


# --- systemd ------------------------------------------------------------------------------


def test_systemd_unit() -> None:
    lab = linux_lab(command=["/usr/bin/env", "echo", "50%", "$HOME", 'a "b"'],
                    environment={"X": "1 2", "P": "100%"}, depends_on=["db"],
                    secrets={"TOKEN": "vault:a/b"}, workdir="data")
    out = render(lab)
    res = out["native/node/systemd/blumeops-app.service"]
    assert (res.target, res.kind, res.name) == ("systemd@node", "unit", "app")
    body = res.body
    assert body.startswith("# Generated by blumeops")
    # systemd reads the secrets itself: the host needs no blumeops.
    assert ('ExecStart=/usr/bin/env echo 50%% "$$HOME" "a \\"b\\""\n') in body
    assert "EnvironmentFile=%S/blumeops/secrets/app.env\n" in body
    assert "WantedBy=multi-user.target default.target\n" in body
    assert 'Environment="P=100%%"' in body and 'Environment="X=1 2"' in body
    assert "After=network-online.target blumeops-db.service" in body
    assert "Wants=network-online.target blumeops-db.service" in body
    assert "WorkingDirectory=%S/blumeops/lab/data" in body
    assert "Restart=on-failure" in body and "KillMode=control-group" in body
    assert "vault:a/b" not in body
    check_golden("native/systemd/blumeops-app.service", body)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    lab = linux_lab(environment={"X": "1", "P": "50%"}, depends_on=["db"], workdir="/tmp",
                    secrets={"TOKEN": "vault:a/b"}, description="the app; 100% real")
    for res in native.render(lab, RenderContext()):
        (tmp_path / Path(res.path).name).write_text(res.body)
    units = sorted(tmp_path.glob("*.service"))
    assert [u.name for u in units] == ["blumeops-app.service", "blumeops-db.service"]
    verify_clean(units)


def test_systemd_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check itself: a misspelt key (which systemd only warns about) fails it."""
    [res] = native.render(linux_lab(), RenderContext())[1:]
    unit = tmp_path / "blumeops-app.service"
    unit.write_text(res.body.replace("Restart=on-failure", "Restrat=on-failure"))
    with pytest.raises(AssertionError, match="Unknown key 'Restrat'"):
        verify_clean([unit])


# --- files and secrets --------------------------------------------------------------------


def test_files_and_no_secret_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab with a real secret (env and file): its value is in no rendered file."""
    from blumeops.render import render_lab
    from blumeops.secrets.resolve import resolve
    from blumeops.secrets.vault import Vault

    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(tmp_path / "home" / "age.key"))
    canary = "CANARY-9f2c-secret-value"
    Vault(tmp_path).set("app/token", canary)
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({
        "lab": "t",
        "hosts": {"node": {"role": "compute", "os": "linux"}},
        "services": {"app": {
            "native": "node", "command": ["/bin/sleep", "1000"],
            "files": {"etc/app.conf": "port = 1\n", "conf/local.ini": "[a]\n"},
            "secrets": {"TOKEN": "vault:app/token",
                        "CERT": {"ref": "vault:app/token", "file": "conf/cert.pem"}},
        }},
    }))
    from blumeops.lab.loader import load_lab

    result = load_lab(tmp_path)
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    everything = render_lab(result.lab)
    files = {r.path: r for r in everything if r.kind == "file"}
    assert sorted(files) == ["native/node/files/app/conf/local.ini",
                             "native/node/files/app/etc/app.conf"]  # the secret file is not one
    res = files["native/node/files/app/etc/app.conf"]
    assert (res.target, res.name, res.body) == ("files@node", "app:etc/app.conf", "port = 1\n")
    assert res.meta["dest"] == "etc/app.conf"
    [unit] = [r for r in everything if r.kind == "unit"]
    # The reference is real: apply would resolve it to the value, which render never saw.
    assert resolve(list(unit.secret_refs), tmp_path) == {"TOKEN": canary, "CERT": canary}
    leaks = [r.path for r in everything if canary in r.body or canary in str(r.meta)]
    assert not leaks and everything


def test_file_paths_cannot_leave_the_render_dir() -> None:
    """Defence in depth for labs built without validate (which refuses these paths)."""
    lab = linux_lab(files={"/etc/app/app.conf": "x", "../../evil": "x"})
    files = sorted(p for p, r in render(lab).items() if r.kind == "file")
    assert files == ["native/node/files/app/etc/app/app.conf", "native/node/files/app/evil"]


def test_only_native_services(blumeops_lab: Lab) -> None:
    services = {r.service for r in native.render(blumeops_lab, RenderContext())}
    assert services == {"caddy", "forgejo", "zot", "jellyfin", "borgmatic", "alloy",
                        "speedtest"}


def test_declared_unit_names_are_kept(tmp_path: Path) -> None:
    """names.systemd names the unit and the After= of its dependants."""
    from blumeops.render import systemd
    from conftest import load_data

    data = {"lab": "t", "hosts": {"box": {"role": "compute", "os": "linux"}}, "services": {
        "db": {"native": "box", "command": ["pg"], "names": {"systemd": "postgresql"}},
        "app": {"native": "box", "command": ["app"], "depends_on": ["db"]}}}
    result = load_data(tmp_path, data)
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    out = render(result.lab)
    assert "native/box/systemd/postgresql.service" in out
    app = out["native/box/systemd/blumeops-app.service"].body
    assert "After=network-online.target postgresql.service" in app
    assert systemd.unit_name("x") == "blumeops-x.service"
