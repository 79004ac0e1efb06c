"""The controller between commits: drift healed (or not), prune, auto-sync, the pause of
a rollback across a restart, and the metrics that say how far behind it is.

A real controller process follows a real git repository and runs the demo lab under a
real supervisord and Caddy; the tests speak to it only over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

import httpx
from controllerlab import Followed, followed_fixture, wait_for  # noqa: F401 (fixture)
from test_controller import add_extra


def caddy_admin(f: Followed) -> httpx.Client:
    """Caddy's admin API, on its private unix socket in the state dir."""
    from blumeops.drivers.caddy import CaddyDriver

    socket = CaddyDriver(f.state).socket_path
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(socket), retries=3),
                        base_url="http://localhost", timeout=10)


def drop_route_by_hand(f: Followed, host: str) -> None:
    """What a person at the box does: edit Caddy's live config through its admin API."""
    with caddy_admin(f) as admin:
        config: dict[str, Any] = admin.get("/config/").json()
    dropped = 0
    for server in config["apps"]["http"]["servers"].values():
        kept = [r for r in server.get("routes", []) if host not in json.dumps(r.get("match"))]
        dropped += len(server.get("routes", [])) - len(kept)
        server["routes"] = kept
    assert dropped, f"no route for {host} in {config}"
    with caddy_admin(f) as admin:
        resp = admin.post("/load", json=config)
    # /load swaps the config before it answers 200: the route is gone now. (No wait to
    # see it gone: a controller healing every 0.5 s may put it back first.)
    assert resp.status_code == 200, resp.text


def service_pid(f: Followed, name: str) -> int:
    (svc,) = [s for s in f.status()["services"] if s["service"] == name]
    assert svc["pid"], svc
    return int(svc["pid"])


def test_drift_is_healed_between_commits(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5)  # heal every half second
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert followed.metric("blumeops_drift_heals_total") == 0

    drop_route_by_hand(followed, "www.ops.localhost")
    wait_for(lambda: followed.answers("www", "BlumeOps demo"), 30, "the route to be healed")
    healed = followed.events("healed")
    assert [e["resource"] for e in healed] == ["caddy@box/config/box"], healed
    assert followed.metric("blumeops_drift_heals_total") == 1

    # A killed process: supervisord restarts it, the controller records and counts it.
    old = service_pid(followed, "web")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: followed.events("restarted"), 60, "the restart to be noticed")
    (restarted,) = followed.events("restarted")
    assert restarted["service"] == "web" and str(old) in restarted["message"]
    assert followed.metric("blumeops_drift_heals_total") == 2
    assert followed.status()["applied"] == first  # no new sync: heals of the same commit


def test_no_self_heal_leaves_drift_and_reports_it(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5, "--no-self-heal")
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert followed.status()["self_heal"] is False
    drop_route_by_hand(followed, "www.ops.localhost")
    wait_for(lambda: followed.status()["drift"] == ["caddy@box/config/box"], 30,
             "the drift to be reported")
    assert not followed.answers("www", "BlumeOps demo")  # no heal: still gone
    followed.passes("heal", 3)  # heal passes that saw the drift: none repaired it
    assert not followed.answers("www", "BlumeOps demo")
    assert followed.events("healed") == []
    assert followed.metric("blumeops_drift_heals_total") == 0
    assert followed.status()["drift"] == ["caddy@box/config/box"]


def echo_answers(f: Followed) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", f.ports["18104"]), timeout=2) as sock:
            sock.sendall(b"ping\n")
            return sock.recv(16).startswith(b"ping")
    except OSError:
        return False


def remove_echo(f: Followed) -> str:
    path = f.repo / "lab.yaml"
    text = path.read_text()
    head, _, _ = text.partition("  echo:\n")
    path.write_text(head)
    return f.commit("drop echo")


def test_no_prune_keeps_a_removed_service_running(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5, "--no-prune")
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert echo_answers(followed)
    pid = service_pid(followed, "echo")
    second = remove_echo(followed)
    followed.webhook(second)
    wait_for(lambda: followed.synced(second), 30, "the sync without echo")
    followed.passes("heal", 3)  # heals run too: they must not prune either
    assert echo_answers(followed)
    os.kill(pid, 0)  # the same process, still there
    assert not [e for e in followed.events("deleted") if e["service"] == "echo"]


def test_prune_removes_a_removed_service(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5)
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert echo_answers(followed)
    second = remove_echo(followed)
    followed.webhook(second)
    wait_for(lambda: followed.synced(second), 30, "the sync without echo")
    wait_for(lambda: not echo_answers(followed), 10, "echo to stop")
    assert [e["service"] for e in followed.events("deleted")] == ["echo"]


def test_no_auto_sync_fetches_but_waits_for_a_request(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5, "--no-auto-sync")
    wait_for(lambda: followed.status()["newest"] == first, 10, "the first fetch")
    followed.passes("fetch", 3)  # passes that fetched it and chose not to sync
    assert followed.status()["applied"] is None and followed.status()["auto_sync"] is False
    assert followed.post("/api/sync").status_code == 202
    wait_for(lambda: followed.synced(first), 60, "the requested sync")
    assert followed.metric("blumeops_commits_behind") == 0
    assert followed.metric("blumeops_sync_lag_seconds") == 0

    second = add_extra(followed)
    followed.edit("API_NAME: demo", "API_NAME: demo2")
    third = followed.commit("rename the api")
    assert followed.webhook(third).status_code == 202
    wait_for(lambda: followed.status()["newest"] == third, 10, "the fetch of the new commits")
    wait_for(lambda: followed.metric("blumeops_commits_behind") == 2, 5, "commits_behind")
    followed.passes("fetch", 3)
    assert followed.status()["applied"] == first  # fetched, not applied
    assert not followed.answers("extra", "BlumeOps demo")
    lag = followed.metric("blumeops_sync_lag_seconds")
    assert lag >= 0.9, lag  # the metric is refreshed every fetch (0.5 s)
    assert second != third
    assert followed.post("/api/sync").status_code == 202
    wait_for(lambda: followed.synced(third), 30, "the second requested sync")
    wait_for(lambda: followed.answers("extra", "BlumeOps demo"), 10, "extra")
    assert followed.metric("blumeops_commits_behind") == 0
    assert followed.metric("blumeops_sync_lag_seconds") == 0


def test_rollback_pause_survives_a_restart(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5)
    wait_for(lambda: followed.synced(first), 60, "first sync")
    second = add_extra(followed)
    followed.webhook(second)
    wait_for(lambda: followed.synced(second), 30, "second sync")
    assert followed.post("/api/rollback", {"revision": first}).status_code == 202
    wait_for(lambda: followed.synced(first), 30, "rollback")
    followed.stop()
    followed.start(0.5)
    status = followed.status()
    assert status["paused"] is True and status["auto_sync"] is False, status
    followed.passes("fetch", 3)  # fetches of the branch's newest: it is not followed
    assert followed.status()["applied"] == first
    assert followed.status()["newest"] == second
    assert followed.post("/api/resume").status_code == 200
    wait_for(lambda: followed.synced(second), 30, "resume")


def test_fetch_failures_are_counted_and_reported(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5)
    wait_for(lambda: followed.synced(first), 60, "first sync")
    assert followed.metric("blumeops_git_fetch_failures_total") == 0
    gone = followed.repo.with_name("repo-moved")
    followed.repo.rename(gone)
    try:
        wait_for(lambda: followed.metric("blumeops_git_fetch_failures_total") >= 2, 10,
                 "failed fetches")
        status = followed.status()
        assert status["last_fetch_error"] == f"repository {followed.repo} does not exist"
        assert status["applied"] == first and status["health"] == "Healthy"
        assert followed.events("fetch-failed")
    finally:
        gone.rename(followed.repo)
    wait_for(lambda: followed.status()["last_fetch_error"] is None, 10, "a good fetch")
