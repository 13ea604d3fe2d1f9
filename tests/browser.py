"""A real headless Chromium for the tests (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium; nothing is downloaded at test time), and screenshots of what it shows.

``chromium()`` skips the test with the reason where there is no Chromium, and fails it under CI
(``CI`` set), where ``scripts/setup.sh`` installs one: a view nobody tested must not pass as tested.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MER_LIVE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MER_LIVE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            return f"{path} not found (apt-get install {package}; scripts/setup.sh does it as root)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1100, height: int = 800) -> Iterator:
    """A selenium webdriver on headless Chromium with a fresh profile, quit (with its processes) after."""
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="mer-live-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver, path: Path, colors: int = 256) -> Path:
    """A PNG of the window, reduced to ``colors`` colours (Pillow, when present) so it stays small in git."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    try:
        from PIL import Image
    except ImportError:
        return path
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    small.save(path, optimize=True)
    return path


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the tests put their screenshots: ``docs/`` with MER_LIVE_SCREENSHOTS=1 (to refresh the
    README's), else the test's temporary folder."""
    if os.environ.get("MER_LIVE_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[1] / "docs"
    return tmp_path
