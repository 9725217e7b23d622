"""A notebook open in JupyterLab, driven the way a person does it: click, Shift+Enter,
the stop button; every wait is Playwright's, with an explicit timeout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Locator, Page, expect

NUMBERED = re.compile(r"^\[\d+\]:$")  # a cell that has run: "[7]:" (not "[ ]:" or "[*]:")
RUNNING = "[*]:"
SECOND = 1000  # Playwright counts in milliseconds


class ConsoleWatch:
    """What a page logs as an error, and what it throws without catching."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._uncaught)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _uncaught(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error.message}")


class Screenshots:
    """Screenshots of each step, numbered in order, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, name: str, target: Locator | Page, max_height: int = 800) -> Path:
        """The page, or an element scrolled to the top of the view and cut at
        ``max_height`` pixels (and at the bottom of the view: a long output shows its top)."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        if isinstance(target, Page):
            target.screenshot(path=str(path))
        else:
            target.evaluate("element => element.scrollIntoView({block: 'start'})")
            box = target.bounding_box(timeout=10 * SECOND)
            view = target.page.viewport_size
            assert box is not None and view is not None, f"{name}: nothing to see"
            top = max(box["y"], 0)
            height = min(box["height"], max_height, view["height"] - top)
            target.page.screenshot(path=str(path), animations="disabled", clip={
                "x": box["x"], "y": top, "width": box["width"], "height": height})
        self.taken.append(path)
        return path

    def publish(self, picks: dict[str, str], docs: Path) -> list[Path]:
        """Copy the screenshots named in ``picks`` (step name -> file name) to ``docs``."""
        docs.mkdir(parents=True, exist_ok=True)
        copied = []
        for path in self.taken:
            step = path.stem.split("-", 1)[1]
            if step in picks:
                copied.append(Path(shutil.copyfile(path, docs / picks[step])))
        return copied


class NotebookPage:
    """The notebook in the page's JupyterLab (one notebook open at a time)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.panel = page.locator(".jp-NotebookPanel").first
        self.cells = self.panel.locator(".jp-Cell")

    def wait_loaded(self, cell_count: int, kernel: str) -> None:
        """All cells shown and the kernel ``kernel`` started and idle."""
        expect(self.cells).to_have_count(cell_count, timeout=60 * SECOND)
        toolbar = self.panel.locator(".jp-NotebookPanel-toolbar")
        expect(toolbar.locator('[data-jp-item-name="kernelName"]')).to_contain_text(
            kernel, timeout=60 * SECOND)
        expect(self.page.locator("#jp-main-statusbar")).to_contain_text(
            f"{kernel} | Idle", timeout=60 * SECOND)

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def prompt(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-InputArea-prompt")

    def output(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-Cell-outputArea")

    def start(self, index: int) -> None:
        """Select the cell and press Shift+Enter (as a person runs one cell)."""
        self.prompt(index).click()
        expect(self.cell(index)).to_have_class(re.compile(r"\bjp-mod-selected\b"),
                                               timeout=10 * SECOND)
        self.page.keyboard.press("Shift+Enter")

    def wait_done(self, index: int, timeout: float = 60) -> None:
        expect(self.prompt(index)).to_have_text(NUMBERED, timeout=timeout * SECOND)

    def run(self, index: int, timeout: float = 60) -> None:
        self.start(index)
        self.wait_done(index, timeout)

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel",
                          has_text=re.compile(r"^Run All Cells$")).click()

    def stop_button(self) -> Locator:
        return self.panel.locator(
            '.jp-NotebookPanel-toolbar [data-jp-item-name="interrupt"] jp-button')

    def save(self) -> None:
        """Ctrl+S, and wait until the tab no longer shows unsaved changes."""
        self.panel.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        expect(self.page.locator(".jp-mod-current.jp-mod-dirty")).to_have_count(
            0, timeout=30 * SECOND)
