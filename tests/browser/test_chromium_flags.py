"""The browser the page tests drive is started as conftest.py means it to be."""

from __future__ import annotations

import uuid
from pathlib import Path

from playwright.sync_api import Playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DISABLED_FEATURES


def _command_lines_with(marker: str) -> list[list[str]]:
    lines = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it has gone
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(marker in a for a in args):
            lines.append(args)
    return lines


def test_our_disabled_features_keep_every_one_playwright_disables(
    playwright_instance: Playwright,
) -> None:
    """Chromium takes the last --disable-features and Playwright writes its own first: ours
    must still hold all of Playwright's, and it did when this test was written. When a new
    Playwright changes its list, copy the new list into PLAYWRIGHT_DISABLED_FEATURES."""
    marker = f"--user-agent=sluice-flags-{uuid.uuid4().hex}"
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, marker]
    )
    try:
        (main,) = [args for args in _command_lines_with(marker) if "--type=" not in " ".join(args)]
    finally:
        browser.close()
    lists = [a.split("=", 1)[1].split(",") for a in main if a.startswith("--disable-features=")]
    assert len(lists) == 2, lists  # Playwright's, then ours
    playwrights, ours = lists
    assert ours == list(DISABLED_FEATURES)
    assert set(playwrights) <= set(ours), set(playwrights) - set(ours)
