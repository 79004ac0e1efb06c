"""The demo lab for real: supervisord runs the services, Caddy routes their names."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from demolab import DemoLab, demo_fixture, lab_pids  # noqa: F401 (fixture "demo")

from blumeops.state.store import Store
from polling import wait_for


def statuses(demo: DemoLab) -> dict[str, dict[str, object]]:
    out = demo.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def test_apply_routes_and_idempotence(demo: DemoLab) -> None:
    plan = demo.cli("plan")
    assert plan.returncode == 2, plan.stderr
    assert "5 to create" in plan.stdout
    first = demo.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert demo.get("www").status_code == 200
    api = demo.get("api").json()
    assert api["service"] == "demo" and len(api["token_sha256"]) == 12
    assert "plan before apply" in demo.get("notes").text  # notes -> api works
    pids = {n: s["pid"] for n, s in statuses(demo).items()}
    assert all(s["health"] == "Healthy" for s in statuses(demo).values())

    again = demo.cli("plan")
    assert again.returncode == 0, again.stdout
    second = demo.cli("apply", "--yes", "--output", "json")
    assert second.returncode == 0
    report = json.loads(second.stdout)
    assert report["applied"] == [] and report["plan"]["counts"]["unchanged"] == 5
    assert {n: s["pid"] for n, s in statuses(demo).items()} == pids  # nothing restarted

    # The no-op path stays cheap: an unchanged catalog comes from the cache, so neither
    # the YAML parser nor pydantic is imported (checked by import, not by a timer).
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "blumeops", "apply",
                           str(demo.lab), "--state-dir", str(demo.state), "--yes"],
                          capture_output=True, text=True, env=demo.env, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "pydantic" not in imported and "yaml" not in imported

    check = demo.cli("check", "--output", "json")
    assert check.returncode == 0, check.stdout
    kinds = [c["kind"] for c in json.loads(check.stdout)["checks"]]
    assert kinds.count("route") == 3 and kinds.count("service") == 4


def test_change_one_service_touches_only_it(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    before = {n: s["pid"] for n, s in statuses(demo).items()}
    demo.edit("API_NAME: demo", "API_NAME: changed")
    plan = demo.cli("plan", "--output", "json")
    changes = json.loads(plan.stdout)["changes"]
    assert [c["id"] for c in changes] == ["supervisor@box/program/api"]
    assert 'API_NAME="changed"' in changes[0]["diff"]
    demo.cli("apply", "--yes", check=True)
    after = {n: s["pid"] for n, s in statuses(demo).items()}
    assert after["api"] != before["api"]
    assert {k: v for k, v in after.items() if k != "api"} == {
        k: v for k, v in before.items() if k != "api"}
    assert demo.get("api").json()["service"] == "changed"


def test_bad_commands_degrade_only_themselves(demo: DemoLab) -> None:
    demo.edit("services:\n", "services:\n"
              "  ghost:\n    native: box\n    command: [/nonexistent/binary]\n"
              "    health: {command: ['true']}\n"
              "  quitter:\n    native: box\n    command: [python3, -c, 'print(\"bye now\")']\n"
              "    health: {command: ['true']}\n")
    out = demo.cli("apply", "--yes")
    assert out.returncode == 1, out.stdout
    # A crash loop passes through STARTING between its tries (Progressing, honestly) and
    # ends FATAL: wait for the verdict instead of catching one phase of the loop.
    st = wait_for(lambda: (s := statuses(demo))["ghost"]["health"] == "Degraded"
                  and s["quitter"]["health"] == "Degraded" and s, 60,
                  lambda: f"ghost and quitter Degraded: {statuses(demo)}")
    assert "bye now" in str(st["quitter"]["detail"])  # the last lines of its log
    for name in ("web", "api", "notes", "echo"):
        assert st[name]["health"] == "Healthy", st[name]
    assert demo.get("www").status_code == 200


def test_hand_removed_route_is_restored(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    import httpx

    from blumeops.drivers.caddy import CaddyDriver

    assert "BlumeOps demo" in demo.get("www").text
    # Routes carry @ids, so a hand edit (by the operator, on the admin socket) can name
    # one directly.
    transport = httpx.HTTPTransport(uds=str(CaddyDriver(demo.state).socket_path))
    with httpx.Client(transport=transport) as admin:
        resp = admin.delete("http://localhost/id/route:web:www.ops")
    assert resp.status_code == 200, resp.text
    assert "BlumeOps demo" not in demo.get("www").text  # Caddy answers an empty 200
    plan = demo.cli("plan", "--output", "json")
    assert [c["id"] for c in json.loads(plan.stdout)["changes"]] == ["caddy@box/config/box"]
    demo.cli("apply", "--yes", check=True)
    assert "BlumeOps demo" in demo.get("www").text


def test_port_taken_by_another_process(demo: DemoLab) -> None:
    port = demo.ports["18101"]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        out = demo.cli("apply", "--yes")
    assert out.returncode == 1
    assert f"port {port} is already in use" in out.stderr
    assert statuses(demo)["api"]["health"] == "Healthy"


def test_killed_service_is_restarted_and_recorded(demo: DemoLab) -> None:
    up = subprocess.Popen([sys.executable, "-m", "blumeops", "up", str(demo.lab),
                           "--state-dir", str(demo.state), "--interval", "0.5"],
                          env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=demo.root)
    try:
        assert up.stdout is not None
        for line in up.stdout:  # the loop has taken its first look at the processes
            if line.startswith("watching"):
                break
        assert _answers(demo)
        pid = statuses(demo)["web"]["pid"]
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        events: list[str] = []
        while time.monotonic() < deadline:
            with Store(demo.state) as store:
                events = [e.message for e in store.events(service="web")
                          if e.kind == "restarted"]
            if events:
                break
            time.sleep(0.2)
        assert events and str(pid) in events[0]
        assert statuses(demo)["web"]["health"] in ("Healthy", "Progressing")
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=30)[0]
    assert "stopping the lab" in output
    assert not [p for p in lab_pids(str(demo.root)) if p != up.pid]


def _answers(demo: DemoLab) -> bool:
    try:
        return demo.get("www").status_code == 200
    except Exception:
        return False


def test_sigkill_mid_apply_converges(demo: DemoLab) -> None:
    cmd = [sys.executable, "-m", "blumeops", "apply", str(demo.lab), "--state-dir",
           str(demo.state), "--yes"]
    proc = subprocess.Popen(cmd, env=demo.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=demo.root)
    assert proc.stderr is not None
    for line in proc.stderr:  # kill it as the first wave starts
        if "starting" in line:
            break
    proc.kill()
    proc.wait()
    out = demo.cli("apply", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(s["health"] == "Healthy" for s in statuses(demo).values())
    assert demo.get("notes").status_code == 200
    # exactly one process per service: no duplicates, no orphans
    for port in (demo.ports[p] for p in ("18101", "18102", "18103")):
        holders = [p for p in lab_pids(str(demo.root)) if _listens(p, port)]
        assert len(holders) <= 1
    assert demo.cli("plan").returncode == 0


def _listens(pid: int, port: int) -> bool:
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            listening = int(parts[1].split(":")[1], 16) == port and parts[3] == "0A"
            if listening and f"socket:[{parts[9]}]" in inodes:
                return True
    return False


def test_down_leaves_nothing(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    assert lab_pids(str(demo.root))
    out = demo.cli("down")
    assert out.returncode == 0 and "Stopped" in out.stdout
    deadline = time.monotonic() + 10
    while lab_pids(str(demo.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lab_pids(str(demo.root))
    # and it comes back
    demo.cli("apply", "--yes", check=True)
    assert demo.get("www").status_code == 200


def test_state_records_syncs_and_events(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    db = sqlite3.connect(demo.state / "state.db")
    results = [r[0] for r in db.execute("SELECT result FROM syncs")]
    assert results == ["ok"]
    kinds = {r[0] for r in db.execute("SELECT kind FROM events")}
    assert "created" in kinds


def test_file_secret_is_a_0600_file_not_environment(demo: DemoLab) -> None:
    demo.edit('secrets: {API_TOKEN: "vault:demo/api-token"}',
              'secrets:\n      API_TOKEN: "vault:demo/api-token"\n'
              '      TOKEN_FILE: {ref: "vault:demo/api-token", file: data/token.txt}')
    demo.cli("apply", "--yes", check=True)
    path = demo.lab / "data" / "token.txt"
    assert path.read_text() == "demo-token-value"
    assert path.stat().st_mode & 0o777 == 0o600
    env_file = (demo.state / "secrets" / "api.env").read_text()
    assert "TOKEN_FILE" not in env_file and "API_TOKEN" in env_file
    # A new value rewrites the file and restarts the service.
    pid = statuses(demo)["api"]["pid"]
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", "v2", check=True)
    demo.cli("apply", "--yes", check=True)
    assert path.read_text() == "v2" and statuses(demo)["api"]["pid"] != pid
    demo.cli("down", check=True)
    assert not path.exists()


def test_down_works_with_a_broken_catalog(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    demo.edit("native: box\n    description: A small JSON API",
              "native: boxx\n    description: A small JSON API")
    assert demo.cli("apply", "--yes").returncode == 1  # refuses, names the problem
    out = demo.cli("down")
    assert out.returncode == 0, out.stderr
    assert "has errors; stopping what runs for lab 'demo' anyway" in out.stderr
    assert "Stopped:" in out.stdout and "caddy" in out.stdout
    deadline = time.monotonic() + 10
    while lab_pids(str(demo.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lab_pids(str(demo.root))


def test_apply_asks_and_refuses_without_a_terminal(demo: DemoLab) -> None:
    out = demo.cli("apply", input="y\n")
    assert out.returncode == 1
    assert "refusing to apply without --yes" in out.stderr
    assert "5 to create" in out.stdout  # the plan was shown first
    assert not lab_pids(str(demo.root))  # and nothing started
    assert demo.cli("plan").returncode == 2


def test_service_files_are_written_updated_and_removed(demo: DemoLab) -> None:
    demo.edit("    backup: [data/]\n", "    backup: [data/]\n"
              "    files: {conf/notes.ini: \"title = Notes\\n\"}\n")
    # api holds a secret: its files may quote it, so only its user reads them.
    demo.edit('    secrets: {API_TOKEN: "vault:demo/api-token"}\n',
              '    secrets: {API_TOKEN: "vault:demo/api-token"}\n'
              '    files: {conf/api.ini: "name = demo\\n"}\n')
    demo.cli("apply", "--yes", check=True)
    path = demo.lab / "conf" / "notes.ini"
    assert path.read_text() == "title = Notes\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert (demo.lab / "conf" / "api.ini").stat().st_mode & 0o777 == 0o600
    path.write_text("edited by hand\n")  # drift
    plan = json.loads(demo.cli("plan", "--output", "json").stdout)
    assert [c["id"] for c in plan["changes"]] == ["files@box/file/notes:conf/notes.ini"]
    assert "+title = Notes" in plan["changes"][0]["diff"]
    demo.cli("apply", "--yes", check=True)
    assert path.read_text() == "title = Notes\n"
    demo.edit("    files: {conf/notes.ini: \"title = Notes\\n\"}\n", "")
    demo.cli("apply", "--yes", check=True)
    assert not path.exists()


def test_cli_sync_records_the_catalog_hash(demo: DemoLab) -> None:
    demo.cli("apply", "--yes", check=True)
    demo.edit("API_NAME: demo", "API_NAME: other")
    demo.cli("apply", "--yes", check=True)
    db = sqlite3.connect(demo.state / "state.db")
    rows = list(db.execute("SELECT revision, catalog_hash FROM syncs ORDER BY id"))
    assert len(rows) == 2
    for revision, digest in rows:
        assert revision == digest and len(digest) == 16
        int(digest, 16)
    assert rows[0][1] != rows[1][1]  # a changed catalog, a different hash
