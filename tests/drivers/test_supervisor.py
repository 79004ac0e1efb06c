"""The supervisor driver against a real supervisord: programs are tiny Python servers."""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.drivers.process import pid_alive, processes_with_env
from blumeops.drivers.supervisor import SupervisorDriver
from polling import wait_for

from .conftest import answers, free_port
from .procnet import tcp_listen_ports

pytestmark = pytest.mark.slow


def program(name: str, port: int, extra: str = "", startsecs: int = 0) -> str:
    """A program file in the contract's shape (docs/contracts.md)."""
    return f"""; blumeops: service {name}
[program:{name}]
command=%(ENV_BLUMEOPS_PYTHON)s -m http.server {port} --bind 127.0.0.1
directory=%(ENV_BLUMEOPS_LAB_DIR)s
autostart=true
autorestart=true
startsecs={startsecs}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=%(ENV_BLUMEOPS_STATE_DIR)s/logs/{name}.log
{extra}"""


@pytest.fixture
def driver(short_tmp: Path) -> Iterator[SupervisorDriver]:
    lab = short_tmp / "lab"
    lab.mkdir()
    d = SupervisorDriver(short_tmp / "state", lab)
    try:
        yield d
    finally:
        d.shutdown()
        assert not list(our_processes(d)), "processes left behind"


def our_processes(d: SupervisorDriver) -> list[int]:
    """Every live process that belongs to this driver's supervisord (daemon or program)."""
    pids = list(processes_with_env("BLUMEOPS_STATE_DIR", str(d.state_dir)))
    return [p for p in pids if pid_alive(p)]


def wait_state(d: SupervisorDriver, name: str, states: set[str], timeout: float = 30) -> str:
    last = ""

    def ok() -> bool:
        nonlocal last
        st = d.status().get(name)
        last = st.state if st else "MISSING"
        return last in states

    wait_for(ok, timeout, lambda: f"{name} out of {last}, log:\n{d.tail_log(name)}")
    return last


def has_env(pid: int, entry: bytes) -> bool:
    """True once `pid` runs with `entry` in its environment (after the wrapper's exec)."""
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def pid_of(d: SupervisorDriver, name: str) -> int:
    pid = d.status()[name].pid
    assert pid is not None
    return pid


def test_apply_change_remove(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    assert driver.is_running()
    pa, pb = free_port(), free_port()
    res = driver.apply({"a": (program("a", pa), {}), "b": (program("b", pb), {})}, [])
    assert res.added == ["a", "b"] and not res.errors
    wait_state(driver, "a", {"RUNNING"})
    wait_state(driver, "b", {"RUNNING"})
    wait_for(lambda: answers(pa) and answers(pb), 30, "answers(pa) and answers(pb)")
    assert driver.observe() == {"a": program("a", pa), "b": program("b", pb)}

    # No-op: nothing touched, no daemon call needed.
    res = driver.apply({"a": (program("a", pa), {}), "b": (program("b", pb), {})}, [])
    assert not res.touched and not res.errors

    # Change a: only a restarts.
    a_pid, b_pid = pid_of(driver, "a"), pid_of(driver, "b")
    new_a = program("a", pa, extra="environment=CHANGED=1\n")
    res = driver.apply({"a": (new_a, {}), "b": (program("b", pb), {})}, [])
    assert res.changed == ["a"] and not res.added and not res.removed
    wait_state(driver, "a", {"RUNNING"})
    assert pid_of(driver, "a") != a_pid
    assert pid_of(driver, "b") == b_pid
    assert not pid_alive(a_pid)

    # Remove b: gone from supervisord, from disk, and its process is dead.
    res = driver.apply({}, ["b"])
    assert res.removed == ["b"]
    assert "b" not in driver.status() and "b" not in driver.observe()
    assert not driver.program_path("b").exists()
    assert not pid_alive(b_pid)
    wait_for(lambda: not answers(pb), 30, "not answers(pb)")


def test_failing_program_does_not_stop_others(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    pa = free_port()
    bad = program("bad", 1, extra="startretries=0\n").replace(
        "%(ENV_BLUMEOPS_PYTHON)s -m http.server 1", "/nonexistent/blumeops-nope"
    )
    res = driver.apply({"a": (program("a", pa), {}), "bad": (bad, {})}, [])
    assert sorted(res.added) == ["a", "bad"]
    state = wait_state(driver, "bad", {"FATAL", "BACKOFF"})
    assert state in {"FATAL", "BACKOFF"}
    assert "nonexistent" in driver.status()["bad"].spawnerr or state == "BACKOFF"
    wait_state(driver, "a", {"RUNNING"})


def test_invalid_program_file_is_isolated(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    pa, pb = free_port(), free_port()
    driver.apply({"a": (program("a", pa), {})}, [])
    broken = program("b", pb) + "this line is not ini\n"
    res = driver.apply({"a": (program("a", pa), {}), "b": (broken, {})}, [])
    assert "b" in res.errors and "a" not in res.errors
    assert "b" not in driver.observe()  # the bad file was not left in place
    wait_state(driver, "a", {"RUNNING"})
    # The next good apply is not blocked by the bad one.
    res = driver.apply({"b": (program("b", pb), {})}, [])
    assert res.added == ["b"] and not res.errors


def test_secrets_env_file_and_restart(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    port = free_port()
    uses_wrapper = importlib.util.find_spec("blumeops.secrets.exec") is not None
    body = program("s", port)
    if uses_wrapper:
        body = body.replace(
            "command=%(ENV_BLUMEOPS_PYTHON)s",
            "command=%(ENV_BLUMEOPS_PYTHON)s -m blumeops.secrets.exec "
            "%(ENV_BLUMEOPS_STATE_DIR)s/secrets/s.env -- %(ENV_BLUMEOPS_PYTHON)s",
        )
    driver.apply({"s": (body, {"API_TOKEN": "hunter2"})}, [])
    env_file = driver.env_path("s")
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "hunter2" not in driver.program_path("s").read_text()
    wait_state(driver, "s", {"RUNNING"})
    first = pid_of(driver, "s")
    if uses_wrapper:
        wait_for(lambda: has_env(first, b"API_TOKEN=hunter2"), 30,
                 "has_env(first, b'API_TOKEN=hunter2')")

    # Same body, new secret value: the program restarts to pick it up.
    res = driver.apply({"s": (body, {"API_TOKEN": "swordfish"})}, [])
    assert res.restarted == ["s"] and not res.changed
    wait_state(driver, "s", {"RUNNING"})
    second = pid_of(driver, "s")
    assert second != first
    if uses_wrapper:
        wait_for(lambda: has_env(second, b"API_TOKEN=swordfish"), 30,
                 "has_env(second, b'API_TOKEN=swordfish')")

    # Same value again: nothing happens.
    assert not driver.apply({"s": (body, {"API_TOKEN": "swordfish"})}, []).touched

    # Removing the program removes its secrets too.
    driver.apply({}, ["s"])
    assert not env_file.exists()


def test_autorestart_after_kill(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    port = free_port()
    driver.apply({"a": (program("a", port), {})}, [])
    wait_state(driver, "a", {"RUNNING"})
    old = pid_of(driver, "a")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: driver.status()["a"].pid not in (None, old), 30,
             "driver.status()['a'].pid not in (None, old)")
    wait_state(driver, "a", {"RUNNING"})
    wait_for(lambda: answers(port), 30, "answers(port)")


def test_crash_recovery_no_duplicates(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    pa, pb = free_port(), free_port()
    driver.apply({"a": (program("a", pa), {}), "b": (program("b", pb), {})}, [])
    wait_state(driver, "a", {"RUNNING"})
    wait_state(driver, "b", {"RUNNING"})
    old = {pid_of(driver, "a"), pid_of(driver, "b")}
    daemon = driver.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not pid_alive(daemon), 30, "not pid_alive(daemon)")
    assert not driver.is_running()
    assert all(pid_alive(p) for p in old)  # orphans still holding their ports

    driver.ensure_running()
    assert driver.daemon_pid() not in (None, daemon)
    wait_state(driver, "a", {"RUNNING"})
    wait_state(driver, "b", {"RUNNING"})
    assert not any(pid_alive(p) for p in old)
    new = {pid_of(driver, "a"), pid_of(driver, "b")}
    assert not new & old
    # Exactly one daemon and one process per program.
    assert sorted(our_processes(driver)) == sorted([*new, driver.daemon_pid()])
    wait_for(lambda: answers(pa) and answers(pb), 30, "answers(pa) and answers(pb)")


def test_ensure_running_is_idempotent_and_shutdown_is_clean(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    daemon = driver.daemon_pid()
    driver.ensure_running()
    assert driver.daemon_pid() == daemon
    driver.apply({"a": (program("a", free_port()), {})}, [])
    wait_state(driver, "a", {"RUNNING"})
    child = pid_of(driver, "a")
    driver.shutdown()
    assert daemon is not None and not pid_alive(daemon) and not pid_alive(child)
    assert not our_processes(driver)
    assert not driver.is_running()
    driver.shutdown()  # again: harmless


def test_long_state_dir_uses_short_socket(short_tmp: Path) -> None:
    deep = short_tmp.joinpath(*["a-rather-long-directory-name"] * 4) / "state"
    d = SupervisorDriver(deep, short_tmp)
    try:
        assert str(d.socket_path).startswith("/tmp/blumeops-")
        assert len(str(d.socket_path)) < 100
        d.ensure_running()
        assert d.is_running()
        st = d.socket_path.parent.stat()
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
    finally:
        d.shutdown()
    assert not d.is_running()


def test_control_socket_and_state_dir_are_private(short_tmp: Path) -> None:
    """supervisord's socket runs any program we name: only the operator may reach it.
    A state dir an older blumeops made 0755 is tightened to 0700."""
    state = short_tmp / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    d = SupervisorDriver(state, short_tmp)
    try:
        d.ensure_running()
        assert state.stat().st_mode & 0o777 == 0o700
        assert d.socket_path.is_relative_to(state)
        assert stat.S_ISSOCK(d.socket_path.stat().st_mode)
        assert d.socket_path.stat().st_mode & 0o077 == 0
        assert d.secrets_dir.stat().st_mode & 0o777 == 0o700
        daemon = d.daemon_pid()
        assert daemon is not None and tcp_listen_ports(daemon) == set()  # no inet server
    finally:
        d.shutdown()


def test_start_failure_is_reported(short_tmp: Path) -> None:
    d = SupervisorDriver(short_tmp / "state", short_tmp)
    d.programs_dir.mkdir(parents=True)
    # An include that supervisord cannot parse at start: the error names the problem.
    d.program_path("x").write_text("[program:x]\nno equals sign here\n")
    with pytest.raises(Exception, match="supervisord failed to start"):
        d.ensure_running()
    d.shutdown()


def test_noop_apply_touches_nothing(driver: SupervisorDriver) -> None:
    """Applying the same programs again reloads, restarts and rewrites nothing. (How fast
    a no-op is belongs to bench/, not to a timer in a test.)"""
    driver.ensure_running()
    bodies = {f"p{i}": (program(f"p{i}", free_port()), {}) for i in range(4)}
    driver.apply(bodies, [])
    for name in bodies:
        wait_state(driver, name, {"RUNNING"})
    pids = {name: st.pid for name, st in driver.status().items()}
    mtimes = {name: driver.program_path(name).stat().st_mtime_ns for name in bodies}
    for _ in range(3):
        assert set(driver.observe()) == set(bodies)
        result = driver.apply(bodies, [])
        assert not result.touched and not result.errors, result
    assert {name: st.pid for name, st in driver.status().items()} == pids
    assert {name: driver.program_path(name).stat().st_mtime_ns for name in bodies} == mtimes


def test_file_written_but_never_loaded_is_picked_up(driver: SupervisorDriver) -> None:
    """A run that died between writing a program file and reloading must not leave the
    program unknown to supervisord forever: the next apply of the same body adds it."""
    driver.ensure_running()
    port = free_port()
    driver.program_path("a").write_text(program("a", port))
    res = driver.apply({"a": (program("a", port), {})}, [])
    assert res.added == ["a"]
    wait_state(driver, "a", {"RUNNING"})


def test_moved_lab_dir_restarts_daemon_with_new_env(driver: SupervisorDriver) -> None:
    driver.ensure_running()
    driver.apply({"a": (program("a", free_port()), {})}, [])
    wait_state(driver, "a", {"RUNNING"})
    old = driver.daemon_pid()
    moved = driver.lab_dir.parent / "lab2"
    moved.mkdir()
    again = SupervisorDriver(driver.state_dir, moved)
    again.ensure_running()
    assert again.daemon_pid() not in (None, old)
    wait_state(again, "a", {"RUNNING"})
    env = f"BLUMEOPS_LAB_DIR={moved}".encode()
    wait_for(lambda: has_env(pid_of(again, "a"), env), 30, "has_env(pid_of(again, 'a'), env)")


def test_restart_retries_a_fatal_program(driver: SupervisorDriver, short_tmp: Path) -> None:
    """A program that gave up (FATAL) starts again when asked, once its cause is fixed."""
    driver.ensure_running()
    port = free_port()
    script = short_tmp / "lab" / "late.py"
    body = program("late", port, extra="startretries=0\n", startsecs=1).replace(
        f"-m http.server {port} --bind 127.0.0.1", "late.py"
    )
    driver.apply({"late": (body, {})}, [])
    wait_state(driver, "late", {"FATAL"})
    script.write_text(f"import http.server as h\nh.test(h.SimpleHTTPRequestHandler, port={port})\n")
    res = driver.apply({"late": (body, {})}, [], restart={"late"})
    assert res.restarted == ["late"]
    wait_state(driver, "late", {"RUNNING"})
