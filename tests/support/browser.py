"""Debian's Chromium, driven by Playwright (never a downloaded browser), and where the
browser tests save their screenshots. A page from `new_page` fails its test when the
browser meets a violation of a page's Content-Security-Policy (dataflow.web.headers), so
every browser test also proves the policy breaks nothing it went through."""

import contextlib
import re
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


# How Chromium reports a blocked script, style, worker, font, frame... on the console (of
# the page or of a frame in it): "... violates the following Content Security Policy directive".
CSP_VIOLATION = re.compile(r'Content[- ]Security[- ]Policy', re.IGNORECASE)


@contextlib.contextmanager
def new_page(browser):
    """A page in a browser context of its own. When the test's block ends without an error,
    any Content-Security-Policy violation the browser reported fails the test, naming it."""
    context = browser.new_context(viewport={'width': 1440, 'height': 900})
    violations = []

    def on_console(message):
        if message.type == 'error' and CSP_VIOLATION.search(message.text):
            violations.append(f'{page.url}: {message.text[:500]}')

    try:
        page = context.new_page()
        page.on('console', on_console)
        yield page
    finally:
        context.close()
    if violations:
        raise AssertionError('the browser met Content-Security-Policy violations:\n' + '\n'.join(violations))


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
