"""The followed repository's password never reaches a command line: a local user reading
/proc/*/cmdline during a fetch (as `nobody` when the tests run as root) never sees it.

Real git over a real `git http-backend` behind basic auth (the stand-in forge)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))

from deliverylab import GIT, git, stand_in_forge

from blumeops.source.git import GitSource

PASSWORD = "cmdline-canary-7f3e"
# Reads every process's argv in a loop until stdin closes; prints each command line
# that names git (one per line, NULs as spaces), so the test sees what was visible.
WATCHER = r"""
import os, sys, threading
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
seen = set()
while not done.is_set():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "git" in line and line not in seen:
            seen.add(line)
            print(line, flush=True)
"""


def _watcher() -> subprocess.Popen[str]:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    prefix: list[str] = []
    if os.geteuid() == 0 and shutil.which("setpriv"):  # read /proc as an ordinary user
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return subprocess.Popen([*prefix, python, "-c", WATCHER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_fetch_password_is_not_on_any_command_line(tmp_path: Path) -> None:
    forge = tmp_path / "forge"
    forge.mkdir()
    subprocess.run([*GIT, "init", "-q", "--bare", str(forge / "lab.git")], check=True)
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    with stand_in_forge(forge, "bob", PASSWORD) as (port, seen):
        url = f"http://bob:{PASSWORD}@127.0.0.1:{port}/lab.git"
        source = GitSource(url, "main", ".", tmp_path / "cache")
        watcher = _watcher()
        lines: list[str] = []
        assert watcher.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or []))
        reader.start()

        def caught() -> bool:  # the watcher saw git's http helper for our forge
            return any("git-remote-http" in line and f"127.0.0.1:{port}" in line
                       for line in list(lines))

        try:
            # Fetches of new commits until the watcher has caught one (or the test
            # would prove nothing).
            for n in range(40):
                (work / "f").write_text(f"{n}\n")
                git(work, "add", "-A")
                git(work, "commit", "-q", "-m", f"c{n}")
                git(work, "push", "-q", str(forge / "lab.git"), "HEAD:main")
                assert source.fetch() == git(work, "rev-parse", "HEAD")
                if caught() and n >= 3:
                    break
        finally:
            watcher.communicate(input="", timeout=30)
            reader.join(30)
    assert any(h.startswith("Basic ") for h in seen)  # it did authenticate
    assert caught(), lines
    leaked = [line for line in lines if PASSWORD in line]
    assert leaked == []


def test_the_controller_takes_the_source_password_from_its_environment(
        tmp_path: Path) -> None:
    """`blumeops controller --source http://bob@host/lab.git` with the password in
    BLUMEOPS_SOURCE_PASSWORD: it fetches (so the password reached git), and neither its
    own command line nor its log holds the password."""
    import signal
    import socket
    import time

    forge = tmp_path / "forge"
    forge.mkdir()
    subprocess.run([*GIT, "init", "-q", "--bare", str(forge / "lab.git")], check=True)
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "lab.yaml").write_text("lab: creds\nhosts: {}\nservices: {}\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "the lab")
    git(work, "push", "-q", str(forge / "lab.git"), "HEAD:main")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_SOURCE_PASSWORD"] = PASSWORD
    with stand_in_forge(forge, "bob", PASSWORD) as (forge_port, seen):
        cmd = [sys.executable, "-m", "blumeops", "controller", "--source",
               f"http://bob@127.0.0.1:{forge_port}/lab.git", "--listen",
               f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state")]
        log = tmp_path / "controller.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "following" not in log.read_text() and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            text = log.read_text()
            assert "following http://bob:***@127.0.0.1" in text, text
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
            assert PASSWORD not in cmdline
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert any(h.startswith("Basic ") for h in seen)
    assert PASSWORD not in log.read_text()


def test_a_source_password_needs_an_http_url_with_a_user(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_SOURCE_PASSWORD"] = PASSWORD
    proc = subprocess.run([sys.executable, "-m", "blumeops", "controller", "--source",
                           "http://127.0.0.1:9/lab.git", "--state-dir",
                           str(tmp_path / "state"), "--listen", "127.0.0.1:7391"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "must be an http(s) URL with a user name" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stderr
