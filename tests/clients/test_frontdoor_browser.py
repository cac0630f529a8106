"""A real browser in front of the front doors: Debian's headless Chromium loads a page a function
serves through an HTTP API, the page `fetch`es a route of another API (another origin, with a custom
header, so the browser sends a CORS preflight), and the test reads what the page got. A third API
without CORS is refused by the browser itself. Chromium is driven over the Chrome DevTools Protocol's
websocket (websocket-client): launched with a fresh profile and stopped with its whole process group."""

import json
import os
import re
import signal
import shutil
import subprocess
import urllib.request

import pytest

from benchmarks.common import free_port, stop_process
from helpers import CapturedLog, write_function
from runtime_api import FunctionConfig, LambdaletThread, ServerConfig
from runtime_api.frontdoors.model import Api, Cors, Route

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")

PAGE = '''
import json, os

HTML = """<!doctype html><html><body><p id="result"></p><p id="blocked"></p><script>
(async () => {
  const shown = (id, text) => { document.getElementById(id).textContent = text; };
  try {
    const response = await fetch("%s/data?from=page", {headers: {"x-token": "t-1"}});
    shown("result", response.status + " " + JSON.stringify(await response.json()));
  } catch (error) { shown("result", "failed: " + error); }
  try {
    await fetch("%s/data");
    shown("blocked", "reached");
  } catch (error) { shown("blocked", "blocked by the browser"); }
})();
</script></body></html>"""


def page(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"},
            "body": HTML % (os.environ["DATA_URL"], os.environ["CLOSED_URL"])}


def data(event, context):
    return {"items": [1, 2, 3], "token": event["headers"].get("x-token"), "origin": event["headers"].get("origin")}
'''


class DevTools:
    """A page target of a Chromium, over its DevTools websocket."""

    def __init__(self, port: int) -> None:
        import websocket

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
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
        start_new_session=True)


def _devtools_port(process: subprocess.Popen) -> int:
    """The port Chromium says it listens on, in its `DevTools listening on ws://...` line."""
    for line in process.stderr:
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if found:
            return int(found[1])
    raise AssertionError(f"chromium exited without opening its DevTools port (status {process.wait()})")


def test_a_page_served_through_an_http_api_fetches_another_api_with_cors(tmp_path):
    code = write_function(tmp_path / "site", PAGE)
    site = Api(name="Site", routes=[Route(method="GET", path="/", function="page")])
    data = Api(name="Data", routes=[Route(method="GET", path="/data", function="data")],
               cors=Cors(allow_methods=["GET"], allow_headers=["x-token"]))
    closed = Api(name="Closed", routes=[Route(method="GET", path="/data", function="data")])
    port = free_port()  # known before the server starts: the page names the other APIs with it
    # A browser's Origin has the port; CORS compares it whole.
    data.cors.allow_origins = [f"http://{site.id}.execute-api.us-east-1.localhost:{port}"]
    env = {"DATA_URL": f"http://{data.id}.execute-api.us-east-1.localhost:{port}",
           "CLOSED_URL": f"http://{closed.id}.execute-api.us-east-1.localhost:{port}"}
    functions = [FunctionConfig(name="page", code=str(code), handler="app.page", env=env),
                 FunctionConfig(name="data", code=str(code), handler="app.data")]
    config = ServerConfig(port=0, front_door_port=port, function=functions, api=[site, data, closed])
    profile = tmp_path / "chromium-profile"
    with LambdaletThread(config, sink=CapturedLog()):
        browser = _launch(profile)
        try:
            devtools = DevTools(_devtools_port(browser))
            devtools.call("Page.navigate", url=f"http://{site.id}.execute-api.us-east-1.localhost:{port}/")
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
    assert json.loads(body) == {"items": [1, 2, 3], "token": "t-1",
                                "origin": f"http://{site.id}.execute-api.us-east-1.localhost:{port}"}
    assert blocked == "blocked by the browser"
