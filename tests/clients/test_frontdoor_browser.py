"""A real browser in front of a SAM web application served by `lambdalet serve` (frontdoor_site/: a
page, and the API its script calls across origins, written for this test): Debian's headless
Chromium loads the page a function serves through an HTTP API, the page `fetch`es a route of
another API (another origin, with a custom header, so the browser sends a CORS preflight), and the
test reads what the page got. A third API without CORS is refused by the browser itself. The page
knows the other APIs' addresses from `!Sub http://${Data}.execute-api...`, as it would on AWS.

Chromium is driven over the Chrome DevTools Protocol's websocket (websocket-client): launched with a
fresh profile and stopped with its whole process group."""

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from benchmarks.common import free_port, stop_process
from helpers import lambdalet_serve

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
TEMPLATE = Path(__file__).parent / "frontdoor_site" / "template.yaml"


class DevTools:
    """A page target of a Chromium, over its DevTools websocket."""

    def __init__(self, port: int) -> None:
        import websocket

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def wait_text(self, element: str) -> str:
        """The element's text once the page has set it: the page's own event, awaited in the page."""
        expression = f"""new Promise(resolve => {{
            const check = () => {{
                const text = document.getElementById({json.dumps(element)})?.textContent;
                if (text) resolve(text); else requestAnimationFrame(check);
            }};
            check();
        }})"""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result["result"]["value"]


def _launch(user_data_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_data_dir}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True,
        # Chromium's own temporary files (org.chromium.Chromium.*) go with the profile, not in /tmp.
        env={**os.environ, "TMPDIR": str(user_data_dir.parent)})


def _devtools_port(process: subprocess.Popen) -> int:
    """The port Chromium says it listens on, in its `DevTools listening on ws://...` line."""
    for line in process.stderr:
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if found:
            return int(found[1])
    raise AssertionError(f"chromium exited without opening its DevTools port (status {process.wait()})")


def test_a_page_served_through_an_http_api_fetches_another_api_with_cors(tmp_path):
    port = free_port()  # the template's Port: its page names the other APIs with it
    with lambdalet_serve("--template", str(TEMPLATE), "--api-port", str(port), "--sdk", "none",
                         "--parameter-overrides", f"Port={port}", log_dir=tmp_path) as serve:
        serve.wait_announced()
        serve.wait_line(r"lambdalet: front doors on ")
        site = f"http://site.execute-api.us-east-1.localhost:{port}"
        browser = _launch(tmp_path / "chromium-profile")
        try:
            devtools = DevTools(_devtools_port(browser))
            devtools.call("Page.navigate", url=f"{site}/")
            result = devtools.wait_text("result")
            blocked = devtools.wait_text("blocked")
            devtools.socket.close()
        finally:
            stop_process(browser, 10, group=True)
            try:  # its renderers and zygotes, which outlive the browser process by a moment
                os.killpg(browser.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    status, _, body = result.partition(" ")
    assert status == "200", result
    assert json.loads(body) == {"items": [1, 2, 3], "token": "t-1", "origin": site}
    assert blocked == "blocked by the browser"
