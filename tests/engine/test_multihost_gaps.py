"""examples/multihost over real sshd: what a remote host gets beyond programs and routes.

File secrets land as 0600 files on the host (never the environment, a command line, a
log or the state DB); health commands run on the host; files dropped from the catalog
are removed (only those blumeops wrote); a Degraded service shows its log's last lines,
its secrets masked on the host.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from secrets import token_hex

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401

from polling import wait_for

pytestmark = [needs_sshd, pytest.mark.slow]


def edit(lab: MultiLab, old: str, new: str) -> None:
    path = lab.lab / "lab.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def free_loopback_port(address: str) -> int:
    """A port free both on 127.0.0.1 and on `address`."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
        return port


def services(lab: MultiLab) -> dict[str, dict[str, object]]:
    out = lab.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


STORE_SECRETS = '    secrets: {STORE_TOKEN: "vault:multihost/store-token"}\n'


def test_a_file_secret_reaches_only_a_0600_file_on_the_remote_host(
        multihost: MultiLab) -> None:
    canary = f"CANARY-file-secret-{token_hex(4)}-do-not-leak"  # per run: suites at once
    multihost.run("secret", "set", str(multihost.lab), "multihost/store-key", "--value",
                  canary, check=True)
    edit(multihost, STORE_SECRETS,
         '    secrets:\n      STORE_TOKEN: "vault:multihost/store-token"\n'
         '      STORE_KEY: {ref: "vault:multihost/store-key", file: keys/store.key}\n')
    outputs = [multihost.cli("plan"), multihost.cli("apply", "--yes"),
               multihost.cli("plan", "--output", "json"), multihost.cli("status"),
               multihost.cli("status", "--output", "json")]
    assert outputs[1].returncode == 0, outputs[1].stdout + outputs[1].stderr
    assert json.loads(outputs[2].stdout)["changes"] == []

    state = multihost.remote_state("data")
    key = state / "lab" / "keys" / "store.key"
    assert key.read_text() == canary
    st = key.stat()
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0  # the SSH user runs the service
    # The rest of the secrets still reach the environment; the file secret does not.
    env = json.loads((state / "secrets" / "store.env").read_text())
    assert set(env) == {"STORE_TOKEN"}
    pid = int(str(services(multihost)["store"]["pid"]))
    assert canary.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert b"STORE_TOKEN" in Path(f"/proc/{pid}/environ").read_bytes()
    for proc in outputs:
        assert canary not in proc.stdout + proc.stderr
    ps = subprocess.run(["ps", "auxwwe"], capture_output=True, text=True, check=True).stdout
    assert canary not in ps
    # Every file on every host and on this side (state DB, logs, sshd logs, caches):
    # only the secret file holds it. The index on the host names the path, not the value.
    hits = [p for p in multihost.ssh.dir.rglob("*") if p.is_file() and not p.is_symlink()
            and not p.is_socket() and canary.encode() in p.read_bytes()]
    assert hits == [key]
    index = json.loads((state / "secrets" / "files.json").read_text())
    assert index == {"store:STORE_KEY": str(key)}

    # The secret loses its file, same value (how a value is delivered is part of its
    # fingerprint): the file goes, the value moves to the environment.
    edit(multihost, "      STORE_KEY: {ref: \"vault:multihost/store-key\", file: keys/store.key}",
         "      STORE_KEY: \"vault:multihost/store-key\"")
    again = multihost.cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not key.exists()
    assert json.loads((state / "secrets" / "store.env").read_text()).keys() == {
        "STORE_TOKEN", "STORE_KEY"}
    assert json.loads((state / "secrets" / "files.json").read_text()) == {}


def test_a_health_command_runs_on_the_remote_host(multihost: MultiLab) -> None:
    edit(multihost, "    ports: {http: 18211}\n    health: {http: /}\n",
         "    ports: {http: 18211}\n    health: {command: [test, -f, ready.flag]}\n"
         "    files: {ready.flag: \"ok\\n\"}\n")
    first = multihost.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    status = services(multihost)["status"]
    assert (status["health"], status["detail"]) == ("Healthy", "exit 0 on gate")
    # The command looks in the service's working directory on gate, not on this machine.
    (multihost.remote_state("gate") / "lab" / "ready.flag").unlink()
    status = services(multihost)["status"]
    assert (status["health"], status["detail"]) == ("Degraded", "exit 1 on gate")
    # A command the host does not have is a reason, not an error of the run.
    edit(multihost, "[test, -f, ready.flag]", "[no-such-probe-command]")
    multihost.cli("apply", "--yes")
    status = services(multihost)["status"]
    assert status["health"] == "Degraded"
    assert status["detail"] == "command not found: no-such-probe-command on gate"


def test_files_dropped_from_the_catalog_are_removed_from_the_remote_host(
        multihost: MultiLab) -> None:
    edit(multihost, "    depends_on: [store]\n",
         "    depends_on: [store]\n"
         "    files: {conf/extra.txt: \"extra\\n\", conf/kept.txt: \"kept\\n\"}\n")
    multihost.cli("apply", "--yes", check=True)
    conf = multihost.remote_state("app") / "lab" / "conf"
    assert (conf / "extra.txt").read_text() == "extra\n"
    # A file in the same directory that blumeops did not write.
    (conf / "mine.txt").write_text("the user's own\n")

    edit(multihost, "conf/extra.txt: \"extra\\n\", ", "")
    plan = multihost.cli("plan")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "- delete files@app/file/web:conf/extra.txt  (no longer in the catalog)" \
        in plan.stdout
    assert "Plan: 0 to create, 0 to update, 1 to delete" in plan.stdout
    multihost.cli("apply", "--yes", check=True)
    assert not (conf / "extra.txt").exists()
    assert (conf / "kept.txt").read_text() == "kept\n"
    assert (conf / "mine.txt").read_text() == "the user's own\n"
    assert multihost.cli("plan").returncode == 0

    # A file blumeops wrote but the user already deleted: nothing left to plan.
    edit(multihost, "    files: {conf/kept.txt: \"kept\\n\"}\n", "")
    (conf / "kept.txt").unlink()
    assert multihost.cli("plan").returncode == 0


def test_a_degraded_remote_service_shows_its_log_tail_with_secrets_masked(
        multihost: MultiLab) -> None:
    canary = f"CANARY-log-tail-{token_hex(4)}-do-not-leak"  # per run: suites at once
    key_canary = f"CANARY-log-key-{token_hex(4)}-no-leak"
    multihost.run("secret", "set", str(multihost.lab), "multihost/crash-token", "--value",
                  canary, check=True)
    multihost.run("secret", "set", str(multihost.lab), "multihost/crash-key", "--value",
                  key_canary, check=True)
    edit(multihost, "  web:\n",
         "  crashy:\n    native: app\n"
         "    command: [python3, -c, \"import os, sys; print('token', "
         "os.environ['CRASH_TOKEN']); print('key', open('crash.key').read()); "
         "print('boom: cannot open the database'); sys.exit(3)\"]\n"
         "    ports: {http: 18222}\n    health: {http: /}\n"
         "    secrets:\n      CRASH_TOKEN: \"vault:multihost/crash-token\"\n"
         "      CRASH_KEY: {ref: \"vault:multihost/crash-key\", file: crash.key}\n"
         "  web:\n")
    out = multihost.cli("apply", "--yes")
    assert "crashy" in out.stderr, out.stdout + out.stderr
    # Between two crashes supervisord says STARTING (Progressing): wait for the verdict.
    crashy = wait_for(lambda: (c := services(multihost)["crashy"])["health"] == "Degraded"
                      and c, 60, lambda: f"crashy Degraded: {services(multihost)['crashy']}",
                      every=0.5)
    detail = str(crashy["detail"])
    log = multihost.remote_state("app") / "logs" / "crashy.log"
    # The log's path on app (as `~/...` when this run did not ask app for its home),
    # then its last lines.
    assert f"; log: ~/{log.relative_to(multihost.host('app').root)}: " in detail, detail
    assert "boom: cannot open the database" in detail
    assert "token [redacted]" in detail and "key [redacted]" in detail
    for value in (canary, key_canary):
        assert value in log.read_text()  # in the log on the host...
        for proc in (out, multihost.cli("status"),
                     multihost.cli("status", "--output", "json")):
            assert value not in proc.stdout + proc.stderr  # ...and nowhere it is shown
        for db in multihost.state.glob("state.db*"):
            assert value.encode() not in db.read_bytes()


def test_a_service_on_the_proxy_host_is_probed_where_caddy_dials_it(
        multihost: MultiLab) -> None:
    """gate's Caddy dials a service on gate at 127.0.0.1. Bound to gate's own address it
    answers there but not to Caddy (502): it is Degraded, not Healthy. Bound to loopback,
    it is Healthy and its route answers."""
    gate = multihost.addresses["gate"]
    # A port free on 127.0.0.1 too, which every suite running at once shares (18211 there
    # may be another run's, bound to loopback by this same test).
    port = free_loopback_port(gate)
    edit(multihost, f'"18211", --bind, {gate}]', f'"{port}", --bind, {gate}]')
    edit(multihost, "    ports: {http: 18211}\n",
         f"    ports: {{http: {port}}}\n    routes: {{status.mh: http}}\n")
    multihost.cli("apply", "--yes")
    assert multihost.get("status").status_code == 502  # Caddy cannot reach it
    status = services(multihost)["status"]
    assert status["health"] == "Degraded", status
    assert f"127.0.0.1:{port}" in str(status["detail"]), status
    edit(multihost, f'"{port}", --bind, {gate}]', f'"{port}", --bind, 127.0.0.1]')
    fixed = multihost.cli("apply", "--yes")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert services(multihost)["status"]["health"] == "Healthy"
    assert multihost.get("status").status_code == 200
