"""examples/multihost applied for real over SSH: three sshd hosts (gate, app, data) on
loopback addresses picked per run (multihostlab.py), blumeops's own supervisord on each,
Caddy on gate routing to services on app and data, and `store` on data holding a
secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from secrets import token_hex
from typing import Any

import pytest
from multihostlab import TOKEN, MultiLab, multihost_fixture, needs_sshd  # noqa: F401

from polling import wait_for

pytestmark = [needs_sshd, pytest.mark.slow]


def services(lab: MultiLab) -> dict[str, dict[str, object]]:
    out = lab.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def sessions(lab: MultiLab) -> dict[str, int]:
    return {name: host.sessions() for name, host in lab.ssh.hosts.items()}


def test_apply_routes_across_hosts_and_a_second_apply_is_a_one_trip_no_op(
        multihost: MultiLab) -> None:
    first = multihost.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    # Caddy on gate reaches web on app and store on data, each on its host's address.
    web, store = multihost.get("web"), multihost.get("store")
    assert web.status_code == 200 and web.headers["X-Blumeops-Route"] == "web.mh.localhost"
    assert store.status_code == 200
    # Each service runs under the supervisord of its own host.
    state = services(multihost)
    assert {n: (s["host"], s["health"]) for n, s in state.items()} == {
        "status": ("gate", "Healthy"), "store": ("data", "Healthy"),
        "web": ("app", "Healthy")}
    for name, host in (("status", "gate"), ("store", "data"), ("web", "app")):
        conf = multihost.remote_state(host) / "supervisor" / "programs" / f"{name}.conf"
        assert conf.is_file()
    # web depends on store across hosts: it started after store was healthy.
    lines = first.stderr.splitlines()
    assert (lines.index(next(x for x in lines if "store: healthy" in x))
            < lines.index(next(x for x in lines if "web: starting" in x)))

    plan = multihost.cli("plan", "--output", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["changes"] == []
    # status probes each route through gate's Caddy (its X-Blumeops-Route answer) and
    # check probes each service on its own host.
    status = json.loads(multihost.cli("status", "--output", "json").stdout)
    assert status["health"] == "Healthy"
    assert {r["route"]: r["health"] for r in status["routes"]} == {
        "store.mh.localhost": "Healthy", "web.mh.localhost": "Healthy"}
    check = multihost.cli("check", "--output", "json")
    assert check.returncode == 0, check.stdout
    assert {c["name"] for c in json.loads(check.stdout)["checks"] if c["kind"] == "service"
            } == {"status", "store", "web"}

    before = sessions(multihost)
    again = multihost.cli("apply", "--yes")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout
    after = sessions(multihost)
    # One round trip per host: the observation (programs, supervisord's table, each
    # service's probe, Caddy's config) also fills the health table.
    assert {h: after[h] - before[h] for h in after} == {"gate": 1, "app": 1, "data": 1}
    # The remote no-op path stays as light as the local one: no YAML parser, no pydantic.
    proc = multihost.run("-X", "importtime", "-m", "blumeops", "apply", str(multihost.lab),
                         "--state-dir", str(multihost.state), "--yes", python_flags=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "pydantic" not in imported and "yaml" not in imported


def test_a_killed_remote_service_is_restarted_and_an_edited_program_restored(
        multihost: MultiLab) -> None:
    multihost.cli("apply", "--yes", check=True)
    pid = int(str(services(multihost)["web"]["pid"]))
    conf = multihost.remote_state("app") / "supervisor" / "programs" / "web.conf"
    conf.write_text(conf.read_text().replace("autorestart=true", "autorestart=false"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, f"web's process {pid} reaped")
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "supervisor@app/program/web" in plan.stdout
    assert "-autorestart=false" in plan.stdout and "+autorestart=true" in plan.stdout
    multihost.cli("apply", "--yes", check=True)
    assert "autorestart=true" in conf.read_text()
    state = services(multihost)["web"]
    assert state["health"] == "Healthy" and state["pid"] != pid
    assert multihost.get("web").status_code == 200


def test_an_unreachable_host_is_reported_while_the_others_converge(
        multihost: MultiLab) -> None:
    multihost.host("app").stop()
    first = multihost.cli("apply", "--yes")
    assert first.returncode == 1
    assert "host app" in first.stderr and "connection refused" in first.stderr
    state = services(multihost)
    assert state["web"]["health"] == "Unknown" and "unreachable" in str(state["web"]["detail"])
    assert state["store"]["health"] == "Healthy" and state["status"]["health"] == "Healthy"
    assert multihost.get("store").status_code == 200
    plan = multihost.cli("plan")
    assert plan.returncode == 1 and "host app not planned" in plan.stderr

    multihost.host("app").start()
    again = multihost.cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert multihost.get("web").status_code == 200
    assert multihost.cli("plan").returncode == 0


def test_a_changed_host_key_is_refused(multihost: MultiLab) -> None:
    multihost.cli("apply", "--yes", check=True)
    data = multihost.host("data")
    subprocess.run(["ssh", "-F", str(multihost.ssh.ssh_config), "-O", "exit", "data"],
                   capture_output=True, check=False)
    data.stop()
    data.generate_host_key()
    data.start()
    out = multihost.cli("apply", "--yes")
    assert out.returncode == 1
    assert "host key has CHANGED" in out.stderr and "host data" in out.stderr
    # The other hosts are still planned and healthy.
    assert services(multihost)["web"]["health"] == "Healthy"
    # The user checks the new key and records it: the next run reaches data again.
    known = multihost.ssh.known_hosts
    kept = [line for line in known.read_text().splitlines(keepends=True)
            if not line.startswith(f"[{data.address}]:{data.port} ")]
    known.write_text("".join(kept) + data.known_hosts_entry())
    assert multihost.cli("apply", "--yes").returncode == 0


def test_a_remote_secret_never_leaks(multihost: MultiLab) -> None:
    canary = f"CANARY-remote-{token_hex(4)}-do-not-leak"  # per run: suites run at once
    multihost.run("secret", "set", str(multihost.lab), "multihost/store-token",
                  "--value", canary, check=True)
    outputs = [multihost.cli("plan"), multihost.cli("apply", "--yes"),
               multihost.cli("plan", "--output", "json"), multihost.cli("status"),
               multihost.cli("status", "--output", "json")]
    assert outputs[1].returncode == 0, outputs[1].stderr
    for proc in outputs:
        assert canary not in proc.stdout + proc.stderr
    ps = subprocess.run(["ps", "auxww"], capture_output=True, text=True, check=True).stdout
    assert canary not in ps
    # The store process on data has it in its environment; nothing else does.
    pid = int(str(services(multihost)["store"]["pid"]))
    assert canary.encode() in Path(f"/proc/{pid}/environ").read_bytes()
    holders = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if canary.encode() in (entry / "environ").read_bytes():
                    holders.append(int(entry.name))
            except OSError:
                continue
    assert holders == [pid]
    # Files: only the env file on data, 0600; not the state DB, logs or cache.
    hits = [p for p in multihost.ssh.dir.rglob("*") if p.is_file() and not p.is_symlink()
            and not p.is_socket() and canary.encode() in p.read_bytes()]
    env = multihost.remote_state("data") / "secrets" / "store.env"
    assert hits == [env]
    assert env.stat().st_mode & 0o777 == 0o600
    assert (multihost.remote_state("data").stat().st_mode & 0o777) == 0o700


def commit_and_follow(multihost: MultiLab) -> tuple[subprocess.Popen[bytes], str, Any]:
    """Commit the lab as it stands and start a controller following it (interval 1 s).
    Returns the process, its API address and its open log (the caller closes both)."""
    from controllerlab import GIT
    from demolab import free_port

    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "lab"]):
        subprocess.run([*GIT, *args], cwd=multihost.lab, check=True, capture_output=True)
    api = f"127.0.0.1:{free_port()}"
    log = (multihost.root / "controller.log").open("a")
    proc = subprocess.Popen([*multihost.command("controller"), "--source", str(multihost.lab),
                             "--listen", api, "--interval", "1",
                             "--state-dir", str(multihost.state)],
                            env=multihost.env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=multihost.root)
    return proc, api, log


def test_the_controller_applies_every_host_and_heals_remote_drift(multihost: MultiLab) -> None:
    import httpx

    proc, api, log = commit_and_follow(multihost)

    def health() -> dict[str, tuple[str, int]]:
        try:
            got = httpx.get(f"http://{api}/api/status", timeout=5).json()["services"]
        except (httpx.HTTPError, ValueError):
            return {}
        return {s["service"]: (s["health"], s["pid"]) for s in got}

    try:
        wait_for(lambda: {h for h, _ in health().values()} == {"Healthy"}
                 and len(health()) == 3, 60, "every host applied by the controller")
        assert multihost.get("web").status_code == 200
        pid = health()["web"][1]
        conf = multihost.remote_state("app") / "supervisor" / "programs" / "web.conf"
        conf.write_text(conf.read_text().replace("autorestart=true", "autorestart=false"))
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "autorestart=true" in conf.read_text(), 30,
                 "the program file restored on app")
        wait_for(lambda: health().get("web", ("", pid))[0] == "Healthy"
                 and health()["web"][1] != pid, 30, "web running again on app")
        assert multihost.get("web").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_a_host_that_contradicts_the_catalog_is_not_applied(multihost: MultiLab) -> None:
    path = multihost.lab / "lab.yaml"
    path.write_text(path.read_text().replace(
        "data: {role: compute, os: linux,", "data: {role: compute, os: macos,"))
    out = multihost.cli("apply", "--yes")
    assert out.returncode == 1
    assert "host data is declared os: macos but answers Linux" in out.stderr
    assert not (multihost.remote_state("data") / "supervisor").exists()  # nothing written
    # The others are applied; web, which depends on data's store, does not start.
    assert services(multihost)["status"]["health"] == "Healthy"
    assert "depends on store" in out.stderr


def test_the_controller_notifies_once_when_a_host_drops_and_once_when_it_is_back(
        multihost: MultiLab) -> None:
    """host-unreachable through a real Apprise json:// target to a loopback receiver."""
    import sys

    import httpx

    sys.path.insert(0, str(Path(__file__).parent.parent / "notify"))
    from receiver import Receiver

    hook = Receiver()
    repo = multihost.lab
    text = (repo / "lab.yaml").read_text()
    target = f'hook: {{url: "json://127.0.0.1:{hook.port}/lab", events: [host-unreachable]}}'
    (repo / "lab.yaml").write_text(text.replace(
        "\nhosts:\n", f"\nnotify:\n  targets:\n    {target}\n\nhosts:\n", 1))
    proc, api, log = commit_and_follow(multihost)

    def healthy() -> bool:
        try:
            got = httpx.get(f"http://{api}/api/status", timeout=5).json()["services"]
        except (httpx.HTTPError, ValueError):
            return False
        return len(got) == 3 and {s["health"] for s in got} == {"Healthy"}

    try:
        wait_for(healthy, 60, "every host applied by the controller")
        assert hook.titles() == []  # reachable hosts are news to nobody
        multihost.host("app").stop()
        wait_for(lambda: any("host app is unreachable" in t for t in hook.titles()), 30,
                 "the host-unreachable notice")
        multihost.host("app").start()
        wait_for(lambda: any("host app is reachable again" in t for t in hook.titles()), 30,
                 "the recovery notice")
        # More heal passes, each probing app again: no repeats.
        passes = httpx.get(f"http://{api}/api/status", timeout=5).json()["heal_passes"]
        wait_for(lambda: httpx.get(f"http://{api}/api/status", timeout=5)
                 .json()["heal_passes"] >= passes + 4, 60, "four more heal passes")
        titles = hook.titles()
        assert len([t for t in titles if "unreachable" in t]) == 1, titles
        assert len([t for t in titles if "reachable again" in t]) == 1, titles
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        hook.close()
