"""Headless Debian chromium driven by playwright, for tests of pages the project serves or writes.

playwright's own browser download is never used (the machine has no internet beyond
the package registries): the Makefile's ``browser`` target installs /usr/bin/chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

# Without the background-networking flags chromium keeps dialling Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: run 'make browser' (apt-get install chromium)")
    return path


@contextmanager
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@contextmanager
def page(console_errors: list[str]) -> Iterator[Page]:
    """A fresh page whose console errors and uncaught exceptions are appended to ``console_errors``."""
    with browser() as instance:
        context = instance.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                console_errors.append(message.text)

        tab.on("console", on_console)
        tab.on("pageerror", lambda error: console_errors.append(str(error)))
        try:
            yield tab
        finally:
            context.close()


def screenshot(tab: Page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(path), full_page=True)
    return path
