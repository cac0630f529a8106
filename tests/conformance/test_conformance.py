"""Differential conformance: every scenario of scenarios.py against the real RIE and lambdalet-rie.

RIE's run must reproduce its recorded transcript in data/ exactly (those are the observed facts);
lambdalet-rie's run must reproduce the same transcript after its named deviations (deviations.py).

    python -m pytest -q tests/conformance -k rie         # the recorded facts still hold
    python -m pytest -q tests/conformance -k lambdalet   # lambdalet-rie conforms
    CONFORMANCE_RECORD=1 python -m pytest -q tests/conformance -k rie   # re-record, then review
"""

from __future__ import annotations

import difflib
import json
import os
import time

import pytest
from client_functions import Rendezvous
from helpers import extension_layer

from benchmarks.common import private_opt_unavailable

from .deviations import expected_for_lambdalet, observed_for_lambdalet
from .harness import SAFETY_S, Session, launch
from .normalise import Normaliser, transcript
from .scenarios import FILES, SCENARIOS, TRACE

DATA = os.path.join(os.path.dirname(__file__), "data")


def run(scenario, target, workdir) -> list[dict]:
    env = {"AWS_LAMBDA_FUNCTION_TIMEOUT": str(scenario.timeout_s), **scenario.env}
    opt, names, gate = None, (), None
    if scenario.extension:
        # Both targets read the fixed /opt/extensions: each run gets a private /opt holding the
        # scenario's extension (one of tests/runtime_api/extension_programs/).
        reason = private_opt_unavailable()
        if reason:
            pytest.skip(f"an external extension needs a private /opt: {reason}")
        name, program = scenario.extension
        opt, names, gate = extension_layer(workdir / "opt", name, program), (name,), Rendezvous(SAFETY_S)
        env["GATE_PORT"] = str(gate.port)
    try:
        with launch(target, workdir, list(scenario.args), env, files=FILES[scenario.files],
                    expect_exit=scenario.expect_exit, opt=opt) as server:
            session = Session(server, scenario.timeout_s, gate)
            scenario.steps(session)
    finally:
        if gate is not None:
            gate.close()
    norm = Normaliser(fndir=str(workdir), inv=server.inv, rapi=server.rapi, timeout_s=scenario.timeout_s,
                      sent_trace_ids=(TRACE,), run=(server.started_at, server.stopping_at, time.time()))
    return transcript(session.record, server.stdout_path.read_text(errors="replace"),
                      server.exit_code, norm, names)


def dump(t) -> list[str]:
    """One line per recorded entry (platform log lines one per line), so a diff shows whole
    exchanges side by side."""
    lines = []
    for entry in t:
        if entry.get("label") == "platform log":
            lines += [f"platform log: {line!r}" for line in entry["note"]]
        else:
            lines.append(json.dumps(entry, ensure_ascii=False))
    return lines


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda sc: sc.name)
def test_scenario(scenario, target, tmp_path):
    got = run(scenario, target, tmp_path)
    path = os.path.join(DATA, f"{scenario.name}.json")
    if target.name == "rie" and os.environ.get("CONFORMANCE_RECORD"):
        with open(path, "w") as f:
            json.dump({"scenario": scenario.name, "doc": scenario.doc, "transcript": got}, f,
                      indent=1, ensure_ascii=False)
            f.write("\n")
    with open(path) as f:
        recorded = json.load(f)["transcript"]
    if target.name != "rie":
        expected = expected_for_lambdalet(recorded, scenario)
        got = observed_for_lambdalet(got)
    else:
        expected = recorded
    if got != expected:
        diff = "\n".join(difflib.unified_diff(dump(expected), dump(got), f"expected ({target.name})",
                                              f"{target.name} did", lineterm="", n=1))
        pytest.fail(f"{scenario.name}: {scenario.doc}\n{diff}", pytrace=False)
