"""A canary secret goes everywhere a secret could leak; it must show up nowhere but
the service's own environment and its 0600 env file."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from secrets import token_hex

import httpx
from controllerlab import Followed, followed_fixture, wait_for  # noqa: F401 (fixture)
from demolab import DemoLab, demo_fixture, lab_pids  # noqa: F401 (fixture "demo")

CANARY = f"CANARY-{token_hex(4)}-do-not-leak"  # per run: suites run at once share /proc


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


def test_canary_secret_never_leaks(demo: DemoLab, tmp_path: Path) -> None:
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", CANARY, check=True)
    outputs = [
        demo.cli("plan"), demo.cli("plan", "--output", "json"),
        demo.cli("apply", "--yes"), demo.cli("apply", "--yes", "--output", "json"),
        demo.cli("status"), demo.cli("status", "--output", "json"),
        demo.cli("check"),
        demo.run("render", str(demo.lab), "--out", str(tmp_path / "rendered")),
        demo.run("secret", "ls", str(demo.lab)),
        demo.run("show", str(demo.lab), "--output", "json"),
    ]
    assert outputs[2].returncode == 0, outputs[2].stderr
    for proc in outputs:
        assert CANARY not in proc.stdout + proc.stderr, proc.args

    # The service really got it: the API shows a hash of its token.
    token_hash = hashlib.sha256(CANARY.encode()).hexdigest()[:12]
    assert demo.get("api").json()["token_sha256"] == token_hash

    # Files (state, logs, database, catalog cache): only the service's env file, 0600.
    assert list((demo.root / "cache").rglob("*.pickle")), "the catalog cache is searched too"
    allowed = demo.state / "secrets" / "api.env"
    hits = files_containing(demo.root, CANARY.encode())
    assert hits == [allowed], hits
    assert stat.S_IMODE(allowed.stat().st_mode) == 0o600
    assert not files_containing(tmp_path / "rendered", CANARY.encode())

    # A changed secret shows in the plan as a fingerprint, never as a value.
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", CANARY + "-2",
             check=True)
    plan = demo.cli("plan", "--output", "json")
    changes = json.loads(plan.stdout)["changes"]
    assert [c["id"] for c in changes] == ["supervisor@box/program/api"]
    assert "secret values changed" in changes[0]["reasons"][0]
    assert CANARY not in plan.stdout

    # Processes: no command line carries it; only the api process's environment does.
    ps = subprocess.run(["ps", "auxww"], capture_output=True, text=True, check=True).stdout
    assert CANARY not in ps
    holders = []
    for pid in lab_pids(str(demo.root)):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if CANARY.encode() in env:
            holders.append(pid)
    api_pid = json.loads(demo.cli("status", "--output", "json").stdout)["services"]
    api = next(s for s in api_pid if s["service"] == "api")
    assert holders == [api["pid"]]
    assert os.getpid() not in holders


BROKEN = """  broken:
    native: box
    description: Gets the secret, prints it to its own log, then fails at start
    command: [python3, -c, "import os, sys; print('token', os.environ['API_TOKEN']); sys.exit(3)"]
    secrets: {API_TOKEN: "vault:demo/api-token"}
    startsecs: 10
"""
# startsecs: it exits long before it counts as started, even on a loaded machine (with the
# default 1 s, a python3 slower than 1 s to print is RUNNING for a moment: apply passes).


def test_canary_never_leaks_from_a_running_controller(followed: Followed) -> None:
    """The controller's API, metrics, log and files, after a good sync and a failed one."""
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(followed.repo),
                    "demo/api-token"], input=CANARY + "\n", env=followed.env, check=True,
                   capture_output=True, text=True)
    good = followed.commit("the canary token")
    followed.start(0.5)
    wait_for(lambda: followed.synced(good), 60, "first sync")
    token_hash = hashlib.sha256(CANARY.encode()).hexdigest()[:12]
    assert followed.get("api").json()["token_sha256"] == token_hash  # it is in flight

    # A failed apply: a service holding the secret whose command fails.
    followed.edit("services:\n", "services:\n" + BROKEN)
    bad = followed.commit("a service that fails")
    assert followed.webhook(bad).status_code == 202
    wait_for(lambda: followed.synced(bad), 60, "the failing sync")
    status = followed.status()
    assert status["sync_state"] == "error", status
    assert [e["service"] for e in status["last_errors"]] == ["broken"], status
    sync = followed.post("/api/sync")
    assert sync.status_code == 202 and CANARY not in sync.text

    answers = {path: httpx.get(f"{followed.api}{path}", timeout=5).text
               for path in ("/api/status", "/api/history?limit=1000",
                            "/api/events?limit=1000", "/metrics")}
    assert 'blumeops_syncs_total{result="failed"}' in answers["/metrics"]
    assert any(e["kind"] == "failed" and e["service"] == "broken"
               for e in followed.events()), answers["/api/events?limit=1000"]
    for path, text in answers.items():
        assert CANARY not in text, path
    followed.stop()
    assert followed.log.read_text(), "the controller's own output is searched too"
    # Files: state, logs, database, controller log, git clone: only the env files (0600),
    # and the log the failing service wrote itself (blumeops quotes it only redacted).
    secrets = followed.state / "secrets"
    hits = files_containing(followed.root, CANARY.encode())
    assert sorted(hits) == [followed.state / "logs" / "broken.log", secrets / "api.env",
                            secrets / "broken.env"], hits
    for path in hits[1:]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(followed.state.stat().st_mode) == 0o700  # guards the service's log


def test_canary_never_leaks_from_a_failed_cli_apply(demo: DemoLab) -> None:
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", CANARY, check=True)
    demo.edit("services:\n", "services:\n" + BROKEN)
    outputs = [demo.cli("apply", "--yes"), demo.cli("apply", "--yes", "--output", "json"),
               demo.cli("status", "--output", "json"), demo.cli("plan", "--output", "json")]
    assert outputs[0].returncode == 1, outputs[0].stdout + outputs[0].stderr
    assert "broken" in outputs[0].stderr
    report = json.loads(outputs[1].stdout)
    assert report["ok"] is False
    for proc in outputs:
        assert CANARY not in proc.stdout + proc.stderr, proc.args
    assert "[redacted]" in outputs[2].stdout  # its log is quoted, the token masked
    secrets = demo.state / "secrets"
    hits = files_containing(demo.root, CANARY.encode())
    assert sorted(hits) == [demo.state / "logs" / "broken.log", secrets / "api.env",
                            secrets / "broken.env"], hits
