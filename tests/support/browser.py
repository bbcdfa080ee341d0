"""Debian's Chromium, driven by Playwright (never a downloaded browser), and where the
browser tests save their screenshots."""

import contextlib
import shutil
from pathlib import Path

from tests.support.checkout import ROOT

CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
# Kept after the run (gitignored), for people to look at the pages as the tests saw them.
SCREENSHOTS = ROOT / '.artifacts' / 'screenshots'


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    executable = shutil.which('chromium')
    if not executable:
        raise RuntimeError('Chromium is not installed: bin/test installs it (apt-get install chromium)')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser):
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page, name) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f'{name}.png'
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def explained(page, name):
    """On a failure, save a screenshot (`failed-<name>`) and add the text of every frame
    of the page to the error: what the browser showed, not only what was not found."""
    try:
        yield
    except Exception as exc:
        try:
            path = screenshot(page, f'failed-{name}')
            shown = '\n'.join(f'--- frame {frame.url}:\n{frame.locator("body").inner_text(timeout=5000)[:2000]}'
                              for frame in page.frames)
        except Exception as unexplained:  # noqa: BLE001 - the original failure matters more
            path, shown = None, f'(could not read the page: {unexplained})'
        raise AssertionError(f'{exc}\nscreenshot: {path}\n{shown}') from exc
