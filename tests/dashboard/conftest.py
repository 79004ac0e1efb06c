"""The dashboard tests reuse the controller lab of tests/engine (a real repository, a real
controller, the demo lab) and drive it with a real headless Chromium."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from requires import require

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from controllerlab import followed_fixture  # noqa: F401 (fixture)

CHROMIUM = "/usr/bin/chromium"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Any]:
    require(shutil.which(CHROMIUM), f"{CHROMIUM} (Debian chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
