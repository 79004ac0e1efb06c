"""`blumeops up` as people start it: `--detach` (what `make demo` runs) and `--no-git`;
and the start order `depends_on` promises, with a dependent that cannot start early."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from demolab import DemoLab, demo_fixture, free_port, lab_pids, reap  # noqa: F401 (fixture)
from test_controller import NEW_SERVICE

from polling import wait_for


def answers(demo: DemoLab, name: str, text: str) -> bool:
    try:
        return text in demo.get(name).text
    except Exception:
        return False


def test_up_detach_then_down(demo: DemoLab) -> None:
    # The `make demo` path on a private copy: validate, the secret is there, up --detach.
    assert demo.run("validate", str(demo.lab)).returncode == 0
    assert "demo/api-token" in demo.run("secret", "ls", str(demo.lab)).stdout
    up = demo.cli("up", "--detach", timeout=120)  # it returns: nothing in the foreground
    assert up.returncode == 0, up.stdout + up.stderr
    # Running in the background, reached through Caddy.
    assert "BlumeOps demo" in demo.get("www").text
    assert demo.get("api", "/healthz").status_code == 200
    assert demo.get("notes", "/healthz").status_code == 200
    assert lab_pids(str(demo.root))  # supervisord, Caddy and the services
    down = demo.cli("down")
    assert down.returncode == 0, down.stderr
    assert "caddy" in down.stdout
    wait_for(lambda: not lab_pids(str(demo.root)), 10, "every lab process to exit")


def test_up_detach_in_git_keeps_the_loop_and_dashboard_until_down(demo: DemoLab) -> None:
    """The `make demo` path for a lab in git: the loop follows the branch in the background,
    serving the API and the dashboard, reading the vault beside the working tree (it is not
    committed), and `down` stops the loop before the lab."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (demo.lab / ".gitignore").write_text("vault.age\nvault.recipients\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "lab"]):
        subprocess.run([*git, *args], cwd=demo.lab, check=True, capture_output=True)
    port = free_port()
    up = demo.cli("up", "--detach", "--listen", f"127.0.0.1:{port}", timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"dashboard and API: http://127.0.0.1:{port}/" in up.stderr
    loop = int((demo.state / "up.pid").read_text())

    def status() -> dict[str, object]:
        return httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()  # type: ignore[no-any-return]

    wait_for(lambda: status()["applied"] and status()["sync_state"] == "idle", 60,
               "the loop's first sync")
    assert status()["last_errors"] == [] and status()["health"] == "Healthy", status()
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert page.status_code == 200 and "Healthy" in page.text
    down = demo.cli("down")
    assert down.returncode == 0, down.stderr
    assert "background loop" in down.stderr
    wait_for(lambda: not lab_pids(str(demo.root)), 15, "every lab process to exit")
    from blumeops.drivers.process import pid_alive

    assert not pid_alive(loop)  # gone (or a zombie its reaper has not collected yet)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2)


def test_up_no_git_applies_the_working_tree(demo: DemoLab) -> None:
    # The lab is in a git repository, but --no-git watches files: uncommitted edits apply.
    git = ["git", "-c", "user.name=Erich", "-c", "user.email=erich@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=demo.lab, check=True)
    subprocess.run([*git, "add", "-A"], cwd=demo.lab, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "lab"], cwd=demo.lab, check=True)
    up = subprocess.Popen([sys.executable, "-m", "blumeops", "up", str(demo.lab), "--no-git",
                           "--state-dir", str(demo.state), "--interval", "0.5", "--listen",
                           f"127.0.0.1:{free_port()}"],
                          env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=demo.root)
    lines: list[str] = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if line.startswith("watching"):
                break
        assert answers(demo, "www", "BlumeOps demo")
        port = free_port()
        demo.edit("services:\n", "services:\n" + NEW_SERVICE.format(port=port))
        wait_for(lambda: answers(demo, "extra", "BlumeOps demo"), 20, "the edited route")
    finally:
        up.send_signal(signal.SIGINT)
        output = "".join(lines) + up.communicate(timeout=60)[0]
    assert "following" not in output, output
    assert "catalog changed: applying" in output and "stopping the lab" in output
    wait_for(lambda: not [p for p in lab_pids(str(demo.root)) if p != up.pid], 10,
               "every lab process to exit")


ORDER_LAB = """lab: order
hosts:
  box: {{role: compute, os: linux, service_manager: supervisor, local: true, address: 127.0.0.1}}
services:
  reader:
    native: box
    command: [python3, reader.py]
    environment: {{DB_PORT: {db}, READER_PORT: {reader}}}
    ports: {{http: {reader}}}
    health: {{tcp: http}}
    depends_on: [db]
  db:
    native: box
    command: [python3, db.py]
    environment: {{DB_PORT: {db}}}
    ports: {{db: {db}}}
    health: {{tcp: db}}
"""

DB = """# A dependency that takes a moment before it listens.
import os, socket, time
time.sleep(1.5)
srv = socket.create_server(("127.0.0.1", int(os.environ["DB_PORT"])))
while True:
    conn, _ = srv.accept()
    conn.sendall(b"db ready\\n")
    conn.close()
"""

READER = """# A dependent that reads its dependency once, at start, and exits 3 if it cannot.
import os, socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(os.environ["DB_PORT"])), timeout=2) as s:
        greeting = s.recv(64)
except OSError:
    with open("starts.log", "a") as f:
        f.write("early\\n")
    sys.exit(3)
with open("starts.log", "a") as f:
    f.write("ok\\n")
srv = socket.create_server(("127.0.0.1", int(os.environ["READER_PORT"])))
while True:
    conn, _ = srv.accept()
    conn.sendall(greeting)
    conn.close()
"""


@pytest.fixture
def order_lab() -> Iterator[tuple[Path, dict[str, int]]]:
    root = Path(tempfile.mkdtemp(prefix="bo-o-", dir="/tmp"))
    lab = root / "lab"
    lab.mkdir()
    ports = {"db": free_port(), "reader": free_port()}
    (lab / "lab.yaml").write_text(ORDER_LAB.format(**ports))
    (lab / "db.py").write_text(DB)
    (lab / "reader.py").write_text(READER)
    try:
        yield root, ports
    finally:
        subprocess.run([sys.executable, "-m", "blumeops", "down", str(lab), "--state-dir",
                        str(root / "state")], capture_output=True, check=False, cwd=root)
        left = reap(root)
        assert not left, f"processes left behind: {left}"


def test_depends_on_starts_the_dependency_first(order_lab: tuple[Path, dict[str, int]]
                                                ) -> None:
    import socket

    root, ports = order_lab
    proc = subprocess.run([sys.executable, "-m", "blumeops", "apply", str(root / "lab"),
                           "--state-dir", str(root / "state"), "--yes"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The reader's first start already found the database listening.
    assert (root / "lab" / "starts.log").read_text() == "ok\n"
    with socket.create_connection(("127.0.0.1", ports["reader"]), timeout=5) as sock:
        assert sock.recv(64) == b"db ready\n"


def test_order_lab_reader_fails_when_started_alone(order_lab: tuple[Path, dict[str, int]]
                                                   ) -> None:
    """The check above can fail: started without its database, the reader exits 3."""
    root, ports = order_lab
    proc = subprocess.run([sys.executable, "reader.py"], cwd=root / "lab", timeout=30,
                          env={"DB_PORT": str(ports["db"]), "READER_PORT": str(ports["reader"])},
                          check=False)
    assert proc.returncode == 3
    assert (root / "lab" / "starts.log").read_text() == "early\n"


def test_up_detach_says_so_when_its_api_address_is_taken(demo: DemoLab) -> None:
    """The lab still runs and is followed; the warning names the address and the log."""
    import socket

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (demo.lab / ".gitignore").write_text("vault.age\nvault.recipients\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "lab"]):
        subprocess.run([*git, *args], cwd=demo.lab, check=True, capture_output=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        up = demo.cli("up", "--detach", "--listen", listen, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"warning: nothing answers on {listen} yet" in up.stderr
        assert "up.log" in up.stderr
    down = demo.cli("down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not lab_pids(str(demo.root)), 15, "every lab process to exit")
