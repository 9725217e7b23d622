"""Fixtures for the real-browser tests (``make test-browser``; ``make test`` leaves them out).

One demo server (TLS-SRP, :class:`rpyc_ipy.demo.EmbeddedServer`) and one JupyterLab
for the whole run, both on 127.0.0.1; Debian's Chromium driven by Playwright. The
screenshots of every step go to one folder, printed at the end of the run; with
``RPYC_IPY_UPDATE_SCREENSHOTS=1`` the README's pictures in docs/images/ are
replaced by the new ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import REMOTE_KERNEL, REPO, Lab
from pagekit import ConsoleWatch, Screenshots
from playwright.sync_api import Browser, Page, sync_playwright

from rpyc_ipy.demo import EmbeddedServer

SHOTS_ENV = "RPYC_IPY_BROWSER_SHOTS"  # where the screenshots go (default: a temp folder)
UPDATE_ENV = "RPYC_IPY_UPDATE_SCREENSHOTS"
_SHOTS = pytest.StashKey[Path]()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `make test-browser` installs Debian's chromium "
                "package (apt-get install chromium)", pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    folder = os.environ.get(SHOTS_ENV) or tempfile.mkdtemp(prefix="rpyc_ipy-browser-shots-")
    config.stash[_SHOTS] = Path(folder)


def pytest_report_header(config: pytest.Config) -> str:
    return f"browser test screenshots: {config.stash[_SHOTS]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    folder = terminalreporter.config.stash[_SHOTS]
    terminalreporter.write_line(f"browser test screenshots: {folder}")


@pytest.fixture(scope="session")
def shots(pytestconfig: pytest.Config) -> Screenshots:
    return Screenshots(pytestconfig.stash[_SHOTS])


@pytest.fixture(scope="session")
def publish_screenshots() -> bool:
    return os.environ.get(UPDATE_ENV) == "1"


@pytest.fixture(scope="session")
def demo() -> Iterator[EmbeddedServer]:
    # capture_fd=False: the server shares the test process, whose output pytest owns
    with EmbeddedServer(capture_fd=False) as server:
        yield server


@pytest.fixture(scope="session")
def lab(demo: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    prefix = root / "kernels"
    # the remote kernel, for the demo server, as a user installs it (no password in it)
    subprocess.run(
        [sys.executable, "-m", "rpyc_ipy.kernel", "install", "--name", REMOTE_KERNEL,
         "--display-name", "Remote Python (demo)", "--host", demo.host,
         "--port", str(demo.port), "--srp-user", demo.user,
         "--password-env", "RPYC_IPY_DEMO_PASSWORD", "--prefix", str(prefix)],
        check=True, capture_output=True, timeout=60)
    lab = Lab(root, demo.env(),
              [REPO / "jupyter-data", prefix / "share" / "jupyter"])
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, lab: Lab) -> Iterator[Page]:
    """A fresh browser tab; the test fails if the page logs an error or throws."""
    lab.delete_sessions()  # no kernel left over from the notebook before
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    console = ConsoleWatch(page)
    yield page
    context.close()
    assert console.problems == [], "the browser reported errors:\n" + "\n".join(
        console.problems)
