"""Notification tests reuse the controller lab of tests/engine (real repository, real
controller, the demo lab) and receive the notices on real loopback HTTP servers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from controllerlab import followed_fixture  # noqa: F401 (fixture)
