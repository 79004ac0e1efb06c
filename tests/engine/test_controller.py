"""The GitOps loop for real: git commits, signed webhooks, supervisord and Caddy."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from controllerlab import Followed, followed_fixture, wait_for  # noqa: F401 (fixture)
from demolab import free_port, lab_pids

NEW_SERVICE = """  extra:
    native: box
    command: [python3, -m, http.server, "{port}", --bind, 127.0.0.1, --directory, site]
    ports: {{http: {port}}}
    routes: {{extra.ops: http}}
    health: {{http: /}}
"""


def add_extra(f: Followed) -> str:
    port = free_port()
    f.edit("services:\n", "services:\n" + NEW_SERVICE.format(port=port))
    return f.commit("add extra")


def test_follow_webhook_invalid_commit_and_rollback(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(3600)  # no polling in this test's time: every pass is a wake
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert followed.status()["health"] == "Healthy"
    assert followed.answers("www", "BlumeOps demo")

    # Unsigned and wrongly signed webhooks: 401, nothing synced.
    second = add_extra(followed)
    assert followed.webhook(second, sign=False).status_code == 401
    assert followed.webhook(second, secret="wrong").status_code == 401
    # Another branch: acknowledged, ignored.
    other = followed.webhook(second, branch="feature")
    assert other.status_code == 202 and other.json()["accepted"] is False
    # Counted as they were answered: none of them woke the loop (that is only for an
    # accepted push; source/test_webhooks.py watches the wakes themselves).
    assert followed.metric('blumeops_webhook_requests_total{result="unauthorized"}') == 2
    assert followed.metric('blumeops_webhook_requests_total{result="ignored"}') == 1
    assert followed.metric('blumeops_webhook_requests_total{result="accepted"}') == 0
    assert followed.status()["applied"] == first

    # A signed push wakes the loop: the new service comes up, its route answers via Caddy.
    assert followed.webhook(second).status_code == 202
    wait_for(lambda: followed.synced(second), 30, "second sync")
    wait_for(lambda: followed.answers("extra", "BlumeOps demo"), 30, "the new route")

    # A broken catalog: nothing changes, status names the commit and file:line.
    followed.edit("native: box\n    description: A small JSON API",
                  "native: boxx\n    description: A small JSON API")
    broken = followed.commit("typo")
    followed.webhook(broken)
    wait_for(lambda: bool(followed.status()["last_errors"]), 30, "the error")
    status = followed.status()
    assert status["applied"] == second
    assert len(status["last_errors"]) == 1, status
    (err,) = status["last_errors"]
    assert err.get("commit") == broken, err
    assert err["file"] == "lab.yaml" and err["line"] > 1
    assert "did you mean 'box'" in err["message"]
    assert followed.answers("api", "token_sha256")

    # Roll back to the first commit: extra goes away, auto-sync pauses.
    assert followed.post("/api/rollback", {"revision": first}, token=None).status_code == 401
    resp = followed.post("/api/rollback", {"revision": first[:10]})
    assert resp.status_code == 202, resp.text
    wait_for(lambda: followed.synced(first), 30, "rollback")
    assert not followed.answers("extra", "BlumeOps demo")
    assert followed.status()["paused"] is True
    # Fix the typo; while paused nothing follows the branch.
    followed.edit("native: boxx", "native: box")
    fixed = followed.commit("fix typo")
    followed.webhook(fixed)
    status = followed.settled()  # the pass the push woke has fetched it, and is done
    assert status["newest"] == fixed and status["applied"] == first
    # Resume: back to the branch's newest commit.
    assert followed.post("/api/resume").status_code == 200
    wait_for(lambda: followed.synced(fixed), 30, "resume")
    wait_for(lambda: followed.answers("extra", "BlumeOps demo"), 30, "extra again")

    history = httpx.get(f"{followed.api}/api/history").json()["syncs"]
    results = [s["result"] for s in history]
    assert "invalid" in results and results.count("ok") >= 3
    assert history[0]["commit"] == fixed and history[0]["author"] == "Erich"
    events = httpx.get(f"{followed.api}/api/events").json()["events"]
    assert any(e["kind"] == "rollback" for e in events)


def test_webhook_burst_coalesces(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start()
    wait_for(lambda: followed.synced(first), 60, "first sync")
    before = len(httpx.get(f"{followed.api}/api/history").json()["syncs"])
    before_wakes = followed.status()["wakes"]
    second = add_extra(followed)

    def hook(_: int) -> int:
        return followed.webhook(second).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(hook, range(200)))
        assert followed.status_or_none() is not None  # answers while the burst lands
    assert codes == [202] * 200
    wait_for(lambda: followed.synced(second), 30, "sync after burst")
    status = followed.settled()  # every wake of the burst handled: no sync still to come
    assert status["wakes"] - before_wakes == 200
    after = len(httpx.get(f"{followed.api}/api/history").json()["syncs"])
    assert 1 <= after - before <= 2
    metrics = httpx.get(f"{followed.api}/metrics").text
    assert 'blumeops_webhook_requests_total{result="accepted"} 200.0' in metrics


def test_sigkill_during_sync_converges(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start()
    wait_for(lambda: followed.synced(first), 60, "first sync")
    second = add_extra(followed)
    followed.webhook(second)
    wait_for(lambda: followed.status()["sync_state"] == "syncing", 10, "a sync to start")
    followed.stop(signal.SIGKILL)
    followed.start()
    wait_for(lambda: followed.synced(second), 60, "convergence after SIGKILL")
    wait_for(lambda: followed.answers("extra", "BlumeOps demo"), 30, "extra")
    assert followed.status()["health"] in ("Healthy", "Progressing")
    # one supervisord, one caddy
    cmdlines = []
    for pid in lab_pids(str(followed.root)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdlines.append(fh.read().decode(errors="replace"))
        except OSError:
            continue
    assert sum("supervisord" in c for c in cmdlines) == 1
    assert sum("caddy\x00run" in c for c in cmdlines) == 1


def test_api_guards(followed: Followed) -> None:
    followed.start()
    assert followed.post("/api/sync", token=None).status_code == 401
    assert followed.post("/api/sync", token="wrong").status_code == 401
    assert followed.post("/api/sync", {"revision": "nope"}).status_code == 400
    big = httpx.post(f"{followed.api}/api/webhook", content=b"x" * (2 * 1024 * 1024),
                     headers={"X-Forgejo-Event": "push"}, timeout=10)
    assert big.status_code == 413
    bad = followed.webhook("not-a-commit-id", sign=True)
    assert bad.status_code == 400 and "after" in bad.text
    malformed = httpx.post(f"{followed.api}/api/webhook", content=b"{not json",
                           headers={"X-Forgejo-Event": "push", "X-Forgejo-Signature":
                                    __import__("hmac").new(b"webhook-secret-for-tests",
                                                           b"{not json", "sha256").hexdigest()})
    assert malformed.status_code == 400
    assert httpx.get(f"{followed.api}/api/nope").status_code == 404


def test_up_in_a_git_repository_follows_commits(followed: Followed) -> None:

    first = followed.git("rev-parse", "HEAD")
    listen = followed.api.removeprefix("http://")
    up = subprocess.Popen([sys.executable, "-m", "blumeops", "up", str(followed.repo),
                           "--state-dir", str(followed.state), "--interval", "0.5",
                           "--listen", listen],
                          env=followed.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=followed.root)
    try:
        wait_for(lambda: followed.synced(first), 60, "first sync")
        assert followed.answers("www", "BlumeOps demo")
        # Uncommitted edits are not applied; a commit is, without any webhook.
        second = add_extra(followed)
        wait_for(lambda: followed.synced(second), 30, "the commit to be followed")
        wait_for(lambda: followed.answers("extra", "BlumeOps demo"), 30, "extra")
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=60)[0]
    assert "following" in output and "stopping the lab" in output
    assert not [p for p in lab_pids(str(followed.root)) if p != up.pid]


def test_cli_talks_to_the_controller(followed: Followed) -> None:
    import json

    first = followed.git("rev-parse", "HEAD")
    followed.start()
    wait_for(lambda: followed.synced(first), 60, "first sync")

    def cli(*args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(followed.env)
        if not token:
            env.pop("BLUMEOPS_API_TOKEN")
        return subprocess.run([sys.executable, "-m", "blumeops", *args, "--controller",
                               followed.api], capture_output=True, text=True, env=env,
                              check=False, timeout=60)

    status = cli("status", "--output", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["applied"] == first
    text = cli("status")
    assert "in sync" in text.stdout and "Healthy" in text.stdout
    second = add_extra(followed)
    denied = cli("sync", token=False)
    assert denied.returncode == 1 and "401" in denied.stderr and "Traceback" not in denied.stderr
    assert cli("sync").returncode == 0
    wait_for(lambda: followed.synced(second), 30, "manual sync")
    history = cli("history", "--output", "json")
    assert [s["commit"] for s in json.loads(history.stdout)["syncs"]][:2] == [second, first]
    assert "Erich" in cli("history").stdout
    rolled = cli("rollback", first)
    assert rolled.returncode == 0 and "auto-sync paused" in rolled.stdout
    wait_for(lambda: followed.synced(first), 30, "rollback")
    assert cli("resume").returncode == 0
    wait_for(lambda: followed.synced(second), 30, "resume")
    unknown = cli("rollback", "0" * 40)
    assert unknown.returncode == 1 and "unknown commit" in unknown.stderr
    gone = subprocess.run([sys.executable, "-m", "blumeops", "status", "--controller",
                           "http://127.0.0.1:1"], capture_output=True, text=True, check=False)
    assert gone.returncode == 1 and "cannot reach the controller" in gone.stderr


def test_password_in_source_url_stays_out_of_status_and_events(tmp_path: Path) -> None:
    from blumeops.engine.controller import Controller, ControllerConfig

    url = "https://erich:forge-pw-123@127.0.0.1:9/erich/lab.git"
    ctl = Controller(ControllerConfig(source_url=url, state_dir=tmp_path / "state"))
    try:
        assert ctl.tick() is False  # the fetch fails: nobody listens on port 9
        status = ctl.status()
        assert status["source"]["url"] == "https://erich:***@127.0.0.1:9/erich/lab.git"
        assert "Failed to connect to 127.0.0.1 port 9" in status["last_fetch_error"]
        seen = json.dumps([status, ctl.events(), ctl.history()])
        assert "forge-pw-123" not in seen
        assert "forge-pw-123" not in ctl.metrics.exposition().decode()
    finally:
        ctl.stop()


def test_unreachable_sources_name_the_reason(tmp_path: Path) -> None:

    cases = {
        "ssh://git@127.0.0.1:1/x.git": "error: cannot fetch branch 'main' from "
        "ssh://git@127.0.0.1:1/x.git: ssh: connect to host 127.0.0.1 port 1: Connection refused",
        str(tmp_path / "nowhere"): f"error: repository {tmp_path / 'nowhere'} does not exist",
    }
    for source, message in cases.items():
        proc = subprocess.run([sys.executable, "-m", "blumeops", "controller", "--source",
                               source, "--state-dir", str(tmp_path / "state"), "--listen",
                               f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == message, proc.stderr


def test_controller_on_a_corrupt_state_db_says_what_to_do(tmp_path: Path) -> None:
    """No traceback: exit 1, the path, and the advice to move the file aside."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "state.db"
    garbage = os.urandom(64 * 1024)
    db.write_bytes(garbage)
    proc = subprocess.run([sys.executable, "-m", "blumeops", "controller", "--source",
                           str(tmp_path / "nowhere"), "--state-dir", str(state), "--listen",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: state.db is corrupt: move it aside"), proc.stderr
    assert str(db) in proc.stderr
    assert db.read_bytes() == garbage  # refused, not rewritten


def test_password_in_source_url_stays_out_of_the_controller_log(followed: Followed) -> None:
    """The start-up line names the source, as every message does, without its password."""
    url = f"file://erich:log-pw-456@localhost{followed.repo}"
    cmd = [sys.executable, "-m", "blumeops", "controller", "--source", url, "--listen",
           followed.api.removeprefix("http://"), "--state-dir", str(followed.state)]
    with followed.log.open("a") as log:
        followed.proc = subprocess.Popen(cmd, env=followed.env, stdout=log,
                                         stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: "following" in followed.log.read_text(), 30, "start-up line")
    text = followed.log.read_text()
    assert "file://erich:***@localhost" in text
    assert "log-pw-456" not in text
