"""Fixtures for the API server tests: a real controller (git, SQLite) per test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.engine.controller import Controller

from .serverlab import ControllerProcess, make_controller, start_controller


@pytest.fixture(name="controller")
def controller_fixture(tmp_path: Path) -> Iterator[Controller]:
    ctl = make_controller(tmp_path)
    yield ctl
    ctl.stop()


@pytest.fixture(name="controller_process")
def controller_process_fixture(tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = start_controller(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every server a test starts is stopped, with its threads, when the test ends."""
    before = set(threading.enumerate())
    yield
    deadline = threading.Event()
    for _ in range(100):
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left:
            return
        deadline.wait(0.05)
    raise AssertionError(f"threads left running: {left}")
