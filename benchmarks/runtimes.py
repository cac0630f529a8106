"""Benchmark (not a test): the trivial handler's cold start on the managed Python runtime (a clean
interpreter, `-S`, at /var/lang and /var/runtime) against the runtime as it was started before
issue 13: lambdalet's own interpreter with everything its `site` brings (its virtualenv's
site-packages, `.pth` files, an editable install's import hook).

    python -m benchmarks.runtimes [--samples 40] [--python PATH ...]

Each `--python` (default: this interpreter) is a Python with lambdalet installed (a virtualenv with
`pip install -e .`, as a developer has it); under each, one `lambdalet serve` serves the trivial
handler twice: `clean`, its default runtime (the python3.X of that interpreter's version), and
`today`, the same runtime client run by that interpreter itself (`python -c`, as BOOTSTRAP_COMMAND
was). Samples interleave the two, so the machine's noise falls on both alike; each is a new
environment (reaped right after its invocation), counted only if its REPORT line has an
`Init Duration`. Reported: invoke -> response, the platform's Init Duration, and `-X importtime`'s
total for `site` in each interpreter (what `-S` leaves out).

Results: benchmarks/results/runtimes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from . import common
from .coldstart import REAP_AFTER_S, invoke, sample_ours, summarise

HANDLER = "import os\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n"
VARIANTS = ("clean", "today")


def today_command(python: str) -> list[str]:
    """The runtime command functions had by default before issue 13 (runtime_api/config.py's
    BOOTSTRAP_COMMAND): the server's interpreter, its site and all, running lambdalet's client."""
    return [python, "-c", f"import sys; sys.path.append({str(common.REPO_ROOT)!r}); "
                          "from bootstrap.__main__ import main; sys.exit(main())"]


def server_config(root: Path, port: int, python: str) -> Path:
    code = root / "trivial"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(HANDLER)
    lines = [f'host = "{common.HOST}"', f"port = {port}", ""]
    for variant in VARIANTS:
        lines += ["[[function]]", f'name = "{variant}"', f'code = "{code}"', 'handler = "app.handler"',
                  "timeout = 60", "memory = 1024", f"idle_timeout = {REAP_AFTER_S}"]
        if variant == "today":
            lines.append(f"runtime = {json.dumps(today_command(python))}")
        lines.append("")
    path = root / "lambdalet.toml"
    path.write_text("\n".join(lines))
    return path


def site_import_ms(python: str) -> float:
    """`site`'s cumulative import time in `python`, from -X importtime (median of 5)."""
    times = []
    for _ in range(5):
        run = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True)
        found = re.search(r"\|\s*(\d+) \| site$", run.stderr, re.MULTILINE)
        times.append(int(found.group(1)) / 1000 if found else 0.0)
    return sorted(times)[len(times) // 2]


def run(python: str, samples: int, log) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lambdalet-bench-runtimes-"))
    port = common.free_port()
    config = server_config(root, port, python)
    server = common.Server("lambdalet", [python, "-m", "runtime_api.cli", "serve", "--config", str(config)],
                           root, port, log_dir=root)
    results: dict = {variant: [] for variant in VARIANTS}
    skipped = 0
    with server:
        for variant in VARIANTS:  # caches warmed: the runtime directory compiled, the SDK installed
            invoke(port, variant)
        for i in range(samples):
            order = VARIANTS if i % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                for _ in range(5):
                    sample = sample_ours(port, variant, "cold")
                    if sample is not None:
                        results[variant].append(sample)
                        break
                    skipped += 1
            if (i + 1) % 10 == 0:
                log(f"{python}: {i + 1}/{samples} rounds")
    entry = {variant: {"invoke": summarise([s["ms"] for s in results[variant]]),
                       "init_duration": summarise([s["platform_ms"] for s in results[variant]])}
             for variant in VARIANTS}
    entry["site_import_ms"] = site_import_ms(python)
    entry["python"] = common.python_version(python)
    entry["skipped_samples"] = skipped
    return entry


def render(data: dict, command: str) -> str:
    rows = []
    for entry in data["interpreters"]:
        clean, today = entry["clean"], entry["today"]
        ratio = clean["invoke"]["p50"] / today["invoke"]["p50"]
        rows.append([entry["python"], f"{today['invoke']['p50']:.2f} ms", f"{clean['invoke']['p50']:.2f} ms",
                     f"{ratio:.2f}", f"{today['init_duration']['p50']:.2f} ms",
                     f"{clean['init_duration']['p50']:.2f} ms", f"{entry['site_import_ms']:.1f} ms"])
    table = common.markdown_table(
        ["Python", "cold invoke, before (site, venv)", "cold invoke, clean runtime", "clean / before",
         "Init Duration, before", "Init Duration, clean", "`site` import (before only)"], rows)
    machine = data["machine"]
    return (f"# Cold start: the clean managed runtime against the runtime as started before\n\n"
            f"{machine['cpu_model']} ({machine['nproc']} CPUs), kernel {machine['kernel']}, {data['date']}, "
            f"{data['samples']} interleaved samples per cell (medians), revision {data['revision']}.\n\n{table}\n\n"
            f"`before`: lambdalet's runtime client run by the server's interpreter with its `site` (a virtualenv with "
            f"lambdalet installed editable: its `.pth` import hook); `clean`: the same client as the managed "
            f"runtime starts it (`python3.X -S /var/runtime/bootstrap.py`, isolation standard). "
            f"Reproduce: a virtualenv per Python with `pip install -e .` in it, then `{command}`.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="interleaved rounds (default 40)")
    parser.add_argument("--python", action="append", default=[],
                        help="a Python with lambdalet installed (repeatable; default: this one)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR, help="where to write the results")
    args = parser.parse_args(argv)
    common.become_subreaper()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    data = {"machine": common.machine_info(), "date": common.utc_now(), "samples": args.samples,
            "revision": common.git_revision()[0],
            "interpreters": [run(python, args.samples, log) for python in args.python or [common.PYTHON]]}
    command = "python -m benchmarks.runtimes " + " ".join(f"--python {p}" for p in args.python)
    common.write_results("runtimes", data, render(data, command.strip()), args.output)
    print(render(data, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
