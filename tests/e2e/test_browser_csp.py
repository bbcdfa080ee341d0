"""tests.support.browser.new_page fails a test on a Content-Security-Policy violation, in the
page or in a frame of it, and passes one without: what lets every browser test stand as
proof that dataflow.web.headers' policy breaks nothing. Pages from a tiny server on 127.0.0.1."""

import contextlib
import http.server
import threading

import pytest

from tests.support.browser import new_page

STRICT = "default-src 'self'; script-src 'self'"
PAGES = {
    '/inline': '<p id="p">before</p><script>document.getElementById("p").textContent = "ran"</script>',
    '/framed': '<iframe src="/inline"></iframe>',
    '/clean': '<p id="p">clean</p>',
}


@contextlib.contextmanager
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in PAGES:  # the browser's /favicon.ico
                self.send_error(404)
                return
            body = PAGES[self.path].encode()
            self.send_response(200)
            self.send_header('Content-Type', 'text/html')
            self.send_header('Content-Security-Policy', STRICT)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{httpd.server_port}'
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize('path', ['/inline', '/framed'])
def test_a_violation_fails_the_test(browser, path):
    with server() as base:
        with pytest.raises(AssertionError, match='(?s)Content-Security-Policy violations:.*inline script'):
            with new_page(browser) as page:
                page.goto(base + path)
                page.wait_for_timeout(500)  # console messages arrive after the load


def test_a_page_without_one_passes(browser):
    with server() as base, new_page(browser) as page:
        page.goto(base + '/clean')
        page.wait_for_timeout(500)
        assert page.inner_text('#p') == 'clean'
