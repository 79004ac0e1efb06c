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


# Playwright waits are conditions, not speed checks: on a loaded machine (the suite twice at
# once beside a CPU hog) a page can take longer than Playwright's default 30 s.
PAGE_TIMEOUT_MS = 120_000


class Browser:
    """Chromium whose pages wait as long as a loaded machine needs."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_page(self, **options: Any) -> Any:
        page = self._browser.new_page(**options)
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Any]:
    require(shutil.which(CHROMIUM), f"{CHROMIUM} (Debian chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Browser(browser)
        finally:
            browser.close()
