"""Notifications from a real controller following a real repository, received by real
loopback HTTP servers through Apprise: a json:// webhook (its URL a vault secret) and an
ntfy:// endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
from controllerlab import Followed, wait_for
from demolab import free_port

from .receiver import Receiver

CANARY = "canary-N0t1fy-7hx2"
URL_CANARY = "hookpath-Vq93kd"


def secret(f: Followed, name: str, value: str) -> None:
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(f.repo), name,
                    "--value", value], env=f.env, check=True, capture_output=True)


def add_notify(f: Followed, hook_port: int, ntfy_port: int) -> str:
    secret(f, "notify/hook", f"json://127.0.0.1:{hook_port}/{URL_CANARY}")
    text = (f.repo / "lab.yaml").read_text()
    text = text.replace("\nservices:\n", f"""
notify:
  repeat_after: 3600
  targets:
    hook: {{url: "vault:notify/hook"}}
    phone: {{url: "ntfy://127.0.0.1:{ntfy_port}/lab",
             events: [service-degraded, service-recovered, sync-failed, commit-rejected]}}

services:
""", 1)
    (f.repo / "lab.yaml").write_text(text)
    return f.commit("notify me")


def add_crashy(f: Followed) -> str:
    """A service that prints its secret and exits: Degraded, with its log in the detail."""
    secret(f, "canary/crash", CANARY)
    with (f.repo / "lab.yaml").open("a") as out:
        out.write("""
  crashy:
    native: box
    command: [sh, -c, 'echo "token is $LEAK"; exit 3']
    secrets: {LEAK: "vault:canary/crash"}
""")
    return f.commit("add crashy")


def test_one_notice_per_state_change_retried_and_redacted(followed: Followed) -> None:
    hook_port = free_port()
    ntfy = Receiver()
    hook: Receiver | None = None
    try:
        head = add_notify(followed, hook_port, ntfy.port)
        followed.start(0.5)
        wait_for(lambda: followed.synced(head), 60, "first sync")
        wait_for(lambda: followed.status()["health"] == "Healthy", 30, "a healthy lab")
        followed.passes("heal", 4)  # several heal rounds of a healthy lab: nothing to say
        assert ntfy.got == []  # (and the one notice below is the first: one queue, in order)

        # A hung process: one Degraded notice; the webhook receiver is down at first.
        pid = int(next(s for s in followed.status()["services"]
                       if s["service"] == "web")["pid"])
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: ntfy.titles() == ["web is Degraded"], 30, "the ntfy notice")
            wait_for(lambda: followed.events("notify-failed"), 10, "a failed delivery event")
            failed = followed.events("notify-failed")[0]["message"]
            assert "hook" in failed and "retrying" in failed and URL_CANARY not in failed
            hook = Receiver(hook_port)  # the receiver comes up: the retry gets through
            wait_for(lambda: hook is not None and hook.titles() == ["web is Degraded"], 30,
                     "the retried webhook delivery")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert hook is not None
        wait_for(lambda: len(ntfy.got) == 2 and len(hook.got) == 2, 30, "the recovery")
        followed.passes("heal", 4)  # more heal rounds: no repeats
        assert ntfy.titles() == ["web is Degraded", "web is Healthy again"]
        assert hook.titles() == ["web is Degraded", "web is Healthy again"]
        assert hook.got[0]["path"] == f"/{URL_CANARY}" and ntfy.got[0]["topic"] == "lab"
        assert followed.events("notified")  # the retry's success is on record

        # A no-op sync says nothing.
        syncs = len(httpx.get(f"{followed.api}/api/history", timeout=5).json()["syncs"])
        assert followed.post("/api/sync").status_code == 202
        wait_for(lambda: len(httpx.get(f"{followed.api}/api/history", timeout=5)
                             .json()["syncs"]) > syncs and followed.synced(head), 30,
                 "the no-op sync")
        followed.passes("heal", 2)
        assert len(ntfy.got) == 2 and len(hook.got) == 2

        # A service whose log holds a secret: its Degraded notice is redacted.
        crash = add_crashy(followed)
        followed.webhook(crash)
        wait_for(lambda: any("crashy" in t for t in ntfy.titles()), 90, "crashy's notice")
        wait_for(lambda: any("crashy" in t for t in hook.titles()), 30, "the webhook's")
        # Notices leave one queue in order: nothing was sent between the recovery and
        # crashy's (the heal rounds and the no-op sync above said nothing, even late).
        for got in (ntfy, hook):
            assert got.titles()[:2] == ["web is Degraded", "web is Healthy again"]
            assert all("crashy" in t or crash[:12] in t for t in got.titles()[2:]), \
                got.titles()
        body = next(m for m in ntfy.got if "crashy" in str(m["title"]))["message"]
        assert "[redacted]" in body, body
        everything = json.dumps([ntfy.got, hook.got])
        assert CANARY not in everything
        # Nor on the dashboard, where crashy's detail and the sync's errors are shown.
        wait_for(lambda: "[redacted]" in httpx.get(f"{followed.api}/", timeout=10).text, 10,
                 "crashy's redacted detail on the Lab page")
        for path in ("/", "/service/crashy", "/history", "/topology"):
            page = httpx.get(f"{followed.api}{path}", timeout=10)
            assert page.status_code == 200 and CANARY not in page.text, path
        # The webhook's URL (a vault secret) is in no event and no controller output; the
        # engine's own events and /api/status quote crashy's log redacted (as test_canary).
        events = httpx.get(f"{followed.api}/api/events?limit=1000", timeout=5).text
        assert URL_CANARY not in events and CANARY not in events
        assert "crashy" in events
        assert CANARY not in httpx.get(f"{followed.api}/api/status", timeout=5).text
        log = followed.log.read_text()
        assert URL_CANARY not in log and CANARY not in log
    finally:
        ntfy.close()
        if hook is not None:
            hook.close()


def test_notify_test_sends_to_every_target(followed: Followed) -> None:
    ntfy, hook = Receiver(), Receiver()
    try:
        add_notify(followed, hook.port, ntfy.port)
        cmd = [sys.executable, "-m", "blumeops", "notify", "test", str(followed.repo)]
        out = subprocess.run(cmd, env=followed.env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["hook: sent", "phone: sent"]
        assert len(ntfy.got) == 1 and len(hook.got) == 1
        assert "test" in str(ntfy.got[0]["title"])
        hook.close()  # now the webhook is down: the command says so and exits 1
        out = subprocess.run(cmd, env=followed.env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 1 and "hook: failed" in out.stdout, out
        assert URL_CANARY not in out.stdout + out.stderr
    finally:
        ntfy.close()
