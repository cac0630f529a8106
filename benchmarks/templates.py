"""Benchmark (not a test): serving a SAM template, and reloading it while serving.

    python -m benchmarks.templates [--samples 11] [--functions 50] [--lambdalet "CMD ..."]

* **start-up**: `lambdalet serve --template T --port 0` (lazy) until it announces its Invoke API,
  for a template of `--functions` functions and, interleaved with it sample by sample, the same
  command for a template of one function (the peer: what the other 49 add).
* **a change made visible**: with the 50-function template served, the time from a file write to
  the first invocation that runs the new code, the client invoking over and over meanwhile on one
  keep-alive connection (the reload's debounce, reading the template again, the new version's cold
  start). Two kinds of write, interleaved: a handler's source file, and the template itself (an
  environment variable of the function).

`--lambdalet` is the command run as `lambdalet` (default: this checkout's `python -m runtime_api.cli`).
Results: benchmarks/results/templates.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

HANDLER = "import os\nVERSION = {version!r}\n\ndef handler(event, context):\n    return [VERSION, os.environ.get('MARK')]\n"


def write_code(root: Path, functions: int) -> None:
    for i in range(functions):
        (root / f"fn{i:02d}").mkdir(parents=True)
        (root / f"fn{i:02d}" / "app.py").write_text(HANDLER.format(version="0"))


def write_template(root: Path, functions: int, mark: str = "0") -> Path:
    """Function07's MARK is `mark`; the others' stay as they are."""
    resources = {f"Function{i:02d}": {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": f"fn{i:02d}", "Handler": "app.handler", "Runtime": "python3.12", "MemorySize": 128,
        "Environment": {"Variables": {"MARK": mark if i == 7 else "0"}}}} for i in range(functions)}
    path = root / "template.yaml"
    path.write_text(json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Transform": "AWS::Serverless-2016-10-31",
                                "Resources": resources}, indent=1))
    return path


class Served:
    def __init__(self, command: list[str], template: Path) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen([*command, "serve", "--template", str(template), "--port", "0"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        text=True, cwd=template.parent)
        for line in self.process.stderr:
            found = re.match(r"lambdalet: Invoke API on http://([\d.]+):(\d+)", line)
            if found:
                self.listening = time.perf_counter()
                self.port = int(found[2])
                break
        else:
            raise RuntimeError("lambdalet serve did not start")
        # The rest of its stderr (the listing, reload lines) is read off so it never blocks.
        self.drain = subprocess.Popen(["cat"], stdin=self.process.stderr, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        common.stop_process(self.process, 10)
        self.drain.wait(10)


def startup_seconds(command: list[str], template: Path) -> float:
    served = Served(command, template)
    try:
        return served.listening - served.started
    finally:
        served.stop()


def visible_after_write(conn: http.client.HTTPConnection, write, wanted) -> float:
    """Seconds from `write()` to the first answer that is `wanted`."""
    started = time.perf_counter()
    write()
    while True:
        conn.request("POST", "/2015-03-31/functions/Function07/invocations", body=b"{}")
        body = conn.getresponse().read()
        if json.loads(body) == wanted:
            return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=11)
    parser.add_argument("--functions", type=int, default=50)
    parser.add_argument("--lambdalet", default=f"{shlex.quote(common.PYTHON)} -m runtime_api.cli",
                        help="the command run as lambdalet")
    args = parser.parse_args(argv)
    command = shlex.split(args.lambdalet)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_code(root / "many", args.functions)
        write_code(root / "one", 1)
        many = write_template(root / "many", args.functions)
        one = write_template(root / "one", 1)
        startup = {"many": [], "one": []}
        for _ in range(args.samples):
            startup["many"].append(startup_seconds(command, many))
            startup["one"].append(startup_seconds(command, one))

        visible = {"code": [], "template": []}
        served = Served(command, many)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            source = root / "many" / "fn07" / "app.py"
            version, mark = "0", "0"
            for n in range(1, args.samples + 1):
                version = f"code {n}"
                visible["code"].append(visible_after_write(
                    conn, lambda: source.write_text(HANDLER.format(version=version)), [version, mark]))
                mark = f"template {n}"
                visible["template"].append(visible_after_write(
                    conn, lambda: write_template(root / "many", args.functions, mark), [version, mark]))
            conn.close()
        finally:
            served.stop()

    def ms(values: list[float], q: float) -> str:
        return f"{common.percentile(sorted(values), q) * 1000:.0f} ms"

    rows = [
        [f"start-up to listening, {args.functions} functions (lazy)", ms(startup["many"], 50), ms(startup["many"], 90)],
        ["start-up to listening, 1 function (the peer)", ms(startup["one"], 50), ms(startup["one"], 90)],
        ["write of a handler's file -> first invocation running it", ms(visible["code"], 50), ms(visible["code"], 90)],
        ["write of the template -> first invocation with its change", ms(visible["template"], 50),
         ms(visible["template"], 90)],
    ]
    revision, dirty = common.git_revision()
    machine = common.machine_info()
    markdown = "\n\n".join([
        "# Serving a template, and reloading it while serving",
        f"Recorded {common.utc_now()} at commit {revision} on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}: {args.samples} samples each, interleaved; "
        f"`{common.command_line('benchmarks.templates', argv if argv is not None else sys.argv[1:])}`.",
        common.markdown_table(["measure", "p50", "p90"], rows),
        f"Targets on this machine: start-up under 1 s; a change visible within 300 ms p50 of the write. The "
        f"start-up of {args.functions} functions over one: "
        f"{common.median(startup['many']) / common.median(startup['one']):.2f}x.",
        "A change is seen after inotify reports it, the files have been quiet for 50 ms (an editor's save is several "
        "writes), the template is read again, the changed function's new version starts, and its first invocation "
        "cold-starts a new environment; the client invokes all along.",
    ])
    data = {"machine": machine, "revision": revision, "dirty": dirty, "command": args.lambdalet,
            "startup_seconds": startup, "visible_seconds": visible}
    common.write_results("templates", data, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
