"""The running demo lab under attack and failure: real supervisord, Caddy and users.

- a local user who is not the operator (`nobody`) can change nothing and read nothing;
- `status` tells the truth (Caddy killed, a service missing) in its exit code;
- `check` sees a route deleted from Caddy by hand;
- a corrupt or full state database gets the right advice, and `down` still works;
- two concurrent applies restart each service once.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from demolab import DemoLab, demo_fixture, lab_pids  # noqa: F401 (fixture "demo")

from blumeops.core.spec import ROUTE_HEADER
from blumeops.drivers.caddy import CaddyDriver
from blumeops.drivers.process import read_pidfile
from blumeops.drivers.supervisor import SupervisorDriver
from blumeops.state.store import Store
from polling import wait_for

pytestmark = pytest.mark.slow

CORRUPT = "state.db is corrupt: move it aside, blumeops rebuilds from live state"
ROUTES = ("www", "api", "notes")


def status_json(demo: DemoLab) -> tuple[int, dict[str, Any]]:
    out = demo.cli("status", "--output", "json")
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout)


def no_lab_left(demo: DemoLab) -> None:
    wait_for(lambda: not lab_pids(str(demo.root)), 30,
             lambda: f"every lab process to exit: {lab_pids(str(demo.root))}")


# -- 1. no way in for another local user ---------------------------------------------------

# Run as nobody: every attempt must fail. Prints what each attempt got, as JSON.
NOBODY = r"""
import json, os, socket, sys, http.client
sockets, files, dirs = json.loads(sys.argv[1])
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ALLOWED"
    except OSError as exc:
        out[name] = type(exc).__name__
def connect(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        s.recv(100)
def read(path):
    with open(path, "rb") as f:
        f.read(1)
def write(path):
    with open(os.path.join(path, "planted.json"), "w") as f:
        f.write("{}")
def admin_tcp():
    conn = http.client.HTTPConnection("127.0.0.1", 2019, timeout=2)
    conn.request("GET", "/config/")
    conn.getresponse()
for path in sockets:
    attempt("connect " + path, lambda: connect(path))
for path in files:
    attempt("read " + path, lambda: read(path))
for path in dirs:
    attempt("list " + path, lambda: os.listdir(path))
    attempt("write " + path, lambda: write(path))
attempt("GET 127.0.0.1:2019/config/", admin_tcp)
print(json.dumps(out))
"""


def caddy_tcp_listeners(pid: int) -> set[int]:
    """Ports Caddy listens on, as `ss -ltnp` reports them."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
            if f"pid={pid}," in line}


def test_another_local_user_can_change_nothing_and_read_nothing(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    # Let nobody walk down to the state dir: only the state dir's own mode protects it.
    demo.root.chmod(0o755)
    state = demo.state
    assert state.stat().st_mode & 0o777 == 0o700
    caddy, sup = CaddyDriver(state), SupervisorDriver(state, demo.lab)
    sockets = [str(caddy.socket_path), str(sup.socket_path)]
    assert all(Path(p).is_socket() for p in sockets)
    files = [str(p) for p in state.rglob("*") if p.is_file()]
    secrets = [f for f in files if "/secrets/" in f or f.endswith(("hmac.key", "state.db"))]
    assert any(f.endswith("state.db") for f in files) and any(f.endswith(".env") for f in secrets)
    files.append(str(demo.root / "age.key"))  # the vault's key, beside the lab here
    dirs = [str(state), str(state / "supervisor" / "programs"), str(state / "caddy")]
    proc = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3", "-I", "-c", NOBODY, json.dumps([sockets, files, dirs])],
        capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(sockets) + len(files) + 2 * len(dirs) + 1
    allowed = {what: got for what, got in results.items() if got == "ALLOWED"}
    assert not allowed, allowed
    assert results["GET 127.0.0.1:2019/config/"] == "ConnectionRefusedError"
    assert {v for k, v in results.items() if k.startswith(("connect", "read", "list"))} == {
        "PermissionError"}
    # Caddy listens on TCP for its routes only: no admin API on any loopback port.
    pid = caddy.running_pid()
    assert pid is not None
    assert caddy_tcp_listeners(pid) == {demo.proxy_port}
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:2019/config/", timeout=2)
    # and the lab is unchanged: the operator's own checks all pass
    assert demo.cli("check").returncode == 0


# -- 3. status tells the truth -------------------------------------------------------------


def test_status_is_healthy_and_exits_0_only_when_everything_answers(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    code, report = status_json(demo)
    assert code == 0 and report["health"] == "Healthy"
    routes = report["routes"]
    assert sorted(r["route"] for r in routes) == sorted(f"{r}.ops.localhost" for r in ROUTES)
    text = demo.cli("status")
    assert text.returncode == 0 and "Lab demo: Healthy" in text.stdout


def test_status_with_caddy_killed(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    pid = read_pidfile(demo.state / "caddy" / "caddy.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, "not Path(f'/proc/{pid}').exists()")
    with pytest.raises(httpx.ConnectError):
        demo.get("www")  # every route is refused
    code, report = status_json(demo)
    assert code == 1 and report["health"] == "Degraded"
    routes = report["routes"]
    assert len(routes) == 3
    assert all(r["health"] == "Degraded" and "refused" in r["detail"] for r in routes), routes
    text = demo.cli("status")
    assert text.returncode == 1 and "Lab demo: Degraded" in text.stdout
    # apply brings Caddy back, and status says so
    demo.cli("apply", "--yes", check=True)
    assert status_json(demo)[0] == 0


def test_status_with_a_service_missing(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    rpc = SupervisorDriver(demo.state, demo.lab).rpc.supervisor
    rpc.stopProcessGroup("echo")
    rpc.removeProcessGroup("echo")  # gone from supervisord: Missing
    code, report = status_json(demo)
    services = {s["service"]: s for s in report["services"]}
    assert services["echo"]["health"] == "Missing"
    assert code == 1 and report["health"] == "Missing"
    assert all(r["health"] == "Healthy" for r in report["routes"])


# -- issue 12: check sees a route deleted by hand ------------------------------------------


def test_check_fails_naming_a_route_deleted_from_caddy(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    assert demo.get("www").headers[ROUTE_HEADER] == "www.ops.localhost"
    transport = httpx.HTTPTransport(uds=str(CaddyDriver(demo.state).socket_path))
    with httpx.Client(transport=transport) as admin:
        resp = admin.delete("http://localhost/id/route:web:www.ops")
    assert resp.status_code == 200, resp.text
    gone = demo.get("www")
    assert gone.status_code == 200 and gone.text == ""  # Caddy's empty 200 for no route
    out = demo.cli("check")
    assert out.returncode == 1, out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "www.ops.localhost" in failed[0], out.stdout
    assert ROUTE_HEADER in failed[0]
    assert "2 passed" not in out.stdout and "6 passed, 1 failed" in out.stdout
    assert status_json(demo)[0] == 1
    demo.cli("apply", "--yes", check=True)  # the drift is healed
    assert demo.cli("check").returncode == 0


# -- 2. state: corrupt, full, and down without it ------------------------------------------


def test_corrupt_database_is_named_its_advice_works_and_down_needs_it_not(
        demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    pids = {s["service"]: s["pid"] for s in status_json(demo)[1]["services"]}
    db = demo.state / "state.db"
    db.write_bytes(os.urandom(32 * 1024))
    for command in ("status", "plan", "apply"):
        out = demo.cli(command, "--yes") if command == "apply" else demo.cli(command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert CORRUPT in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert demo.get("www").status_code == 200  # nothing was touched
    # The advice holds: moved aside, the state is rebuilt from what runs. Only what the
    # database alone knew is redone: api's secret fingerprint, so api restarts once.
    db.rename(demo.state / "state.db.corrupt")
    plan = json.loads(demo.cli("plan", "--output", "json").stdout)
    assert [c["id"] for c in plan["changes"]] == ["supervisor@box/program/api"]
    demo.cli("apply", "--yes", check=True)
    code, report = status_json(demo)
    after = {s["service"]: s["pid"] for s in report["services"]}
    assert code == 0 and after["api"] != pids["api"]
    assert {k: v for k, v in after.items() if k != "api"} == {
        k: v for k, v in pids.items() if k != "api"}
    assert demo.cli("plan").returncode == 0
    # Corrupt again, and the catalog broken too: down needs neither.
    db.write_bytes(os.urandom(32 * 1024))
    (demo.lab / "lab.yaml").write_text("lab: demo\nservices: [not, a, mapping\n")
    out = demo.cli("down")
    assert out.returncode == 0, out.stderr
    assert CORRUPT in out.stderr and "Traceback" not in out.stderr
    assert "Stopped:" in out.stdout and "caddy" in out.stdout and "api" in out.stdout
    no_lab_left(demo)


def limited(limit: int) -> None:
    """In the child: writes past `limit` bytes fail with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_full_disk_says_free_space_and_down_still_works(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    with Store(demo.state) as store:
        syncs = [s.id for s in store.syncs()]

    def run_full(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "blumeops", *args, str(demo.lab), "--state-dir",
               str(demo.state)]
        return subprocess.run(cmd, capture_output=True, text=True, env=demo.env, timeout=120,
                              check=False, cwd=demo.root, preexec_fn=lambda: limited(1024))

    out = run_full("status")
    assert out.returncode == 1
    assert f"no space left on device writing {demo.state}" in out.stderr, out.stderr
    assert "free some space" in out.stderr
    assert "corrupt" not in out.stderr and "Traceback" not in out.stderr
    # intact: with space again, everything is there and the lab still runs
    code, _ = status_json(demo)
    assert code == 0
    with Store(demo.state) as store:
        assert [s.id for s in store.syncs()] == syncs
    down = run_full("down")
    assert down.returncode == 0, down.stderr
    assert "no space left on device" in down.stderr and "Traceback" not in down.stderr
    assert "Stopped:" in down.stdout and "caddy" in down.stdout
    no_lab_left(demo)


# -- 4. two applies at once ------------------------------------------------------------------


def spawns(log: Path, offset: int) -> dict[str, int]:
    """How many times supervisord spawned each program since `offset` in its log."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    counts: dict[str, int] = {}
    for name in re.findall(r"spawned: '([^']+)' with pid", text):
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_two_concurrent_applies_restart_each_service_once(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    before = {s["service"]: s["pid"] for s in status_json(demo)[1]["services"]}
    # A changed catalog: every service's environment changes, and api's secret too.
    demo.edit("environment: {WEB_PORT", 'environment: {V: "2", WEB_PORT')
    demo.edit("API_NAME: demo", 'API_NAME: demo, V: "2"')
    demo.edit("API_URL: ", 'V: "2", API_URL: ')
    demo.edit("environment: {ECHO_PORT", 'environment: {V: "2", ECHO_PORT')
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", "v2", check=True)
    log = demo.state / "logs" / "supervisord.log"
    offset = log.stat().st_size
    # Hold the lab's lock so both applies plan first, then wait for it.
    fd = os.open(demo.state / "apply.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    cmd = [sys.executable, "-m", "blumeops", "apply", str(demo.lab), "--state-dir",
           str(demo.state), "--yes"]
    procs = [subprocess.Popen(cmd, env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=demo.root) for _ in range(2)]
    errs: list[list[str]] = [[], []]

    def read(i: int) -> None:
        stream = procs[i].stderr
        assert stream is not None
        errs[i].extend(stream)

    readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    for t in readers:
        t.start()
    try:
        wait_for(lambda: all(any("waiting" in line for line in e) for e in errs), 180,
                 "all(any('waiting' in line for line in e) for e in errs)")
    finally:
        os.close(fd)  # release: they run one after the other
    for p in procs:
        p.wait(timeout=120)
    for t in readers:
        t.join()
    assert [p.returncode for p in procs] == [0, 0], errs
    assert spawns(log, offset) == {"api": 1, "echo": 1, "notes": 1, "web": 1}
    # the second one planned again and found nothing left to do
    assert any(any("0 changes left" in line for line in e) for e in errs), errs
    code, report = status_json(demo)
    after = {s["service"]: s["pid"] for s in report["services"]}
    assert code == 0 and all(after[n] != before[n] for n in before)
    with Store(demo.state) as store:
        assert [s.result for s in store.syncs(limit=2)] == ["ok", "ok"]


def test_plan_made_before_another_apply_is_made_again(demo: DemoLab,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """No wait for the lock, but another apply ran while this plan was shown: the
    plan is stale all the same, and is made again."""
    from blumeops.commands.session import Session
    from blumeops.engine.apply import apply, prepare

    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, demo.env[name])
    demo.cli("apply", "--yes", check=True)
    demo.edit("API_NAME: demo", "API_NAME: other")
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", "v2", check=True)
    log = demo.state / "logs" / "supervisord.log"
    offset = log.stat().st_size
    session = Session(demo.lab, demo.state)
    try:
        stale = prepare(session.runtime, session.store)
        assert [c.id for c in stale.plan.pending] == ["supervisor@box/program/api"]
        demo.cli("apply", "--yes", check=True)  # someone else, meanwhile
        report = apply(session.runtime, stale, session.store)
    finally:
        session.close()
    assert report.ok and report.plan.pending == [] and report.applied == []
    assert spawns(log, offset) == {"api": 1}


def test_state_dir_is_created_private(demo: DemoLab) -> None:
    shutil.rmtree(demo.state, ignore_errors=True)
    old = os.umask(0)
    try:
        demo.cli("plan")
    finally:
        os.umask(old)
    assert demo.state.stat().st_mode & 0o777 == 0o700
