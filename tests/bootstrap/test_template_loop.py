"""The SnapStart template's loop (bootstrap/template.py) on its wire, with no server around it: a
template process serving a control socket, requests with the copy's output pipe and report
channel, and copies that report their pid there. What the server (runtime_api/snapstart.py) relies
on when a spare dies or cannot be forked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO

# The template: `_serve` on one end of a socket pair (its descriptor the first argument), with the
# spare forks numbered in the other arguments failing (2: the one after the first restore).
TEMPLATE = textwrap.dedent("""
    import os, socket, sys
    from bootstrap import template
    control = socket.socket(fileno=int(sys.argv[1]))
    real, forks = template._fork_spare, [0]
    def fork_spare(*args):
        forks[0] += 1
        if str(forks[0]) in sys.argv[2:]:
            raise OSError("the copy could not be forked")
        return real(*args)
    template._fork_spare = fork_spare
    template._serve(control, None, 64)
    os._exit(0)  # a copy, joined: nothing more to do here
""")


def restore(control: socket.socket) -> tuple[bytes, bytes]:
    """One restore request: the template's answer and what the copy reported."""
    out_r, out_w = os.pipe()
    report, copy_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        socket.send_fds(control, [json.dumps({"environ": {}}).encode()], [out_w, copy_end.fileno()])
        copy_end.close()
        os.close(out_w)
        report.settimeout(30)
        control.settimeout(30)
        return control.recv(64), report.recv(32)
    finally:
        report.close()
        copy_end.close()
        os.close(out_r)


@pytest.fixture
def start_template():
    started = []

    def start(*failing_forks: int) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen([sys.executable, "-c", TEMPLATE, str(theirs.fileno()), *map(str, failing_forks)],
                                cwd=REPO, pass_fds=[theirs.fileno()])
        theirs.close()
        started.append((proc, ours))
        ours.settimeout(30)
        assert ours.recv(16) == b"READY"
        return ours

    yield start
    for proc, ours in started:
        ours.close()  # the template exits when its server is gone
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_each_request_gets_a_copy_that_reports_its_pid(start_template):
    control = start_template()
    answers = [restore(control) for _ in range(3)]
    assert all(answer == reported and answer.isdigit() for answer, reported in answers)
    assert len({answer for answer, _ in answers}) == 3


def test_a_spare_that_could_not_be_forked_is_forked_by_the_next_request(start_template):
    """The fork after the first restore fails: the template goes on without a spare (before, the
    error ended it, and the server built a new template), and the next request forks one."""
    control = start_template(2)
    first, second = restore(control), restore(control)
    assert first[0] == first[1] and first[0].isdigit()
    assert second[0] == second[1] and second[0].isdigit() and second != first


def test_a_request_no_copy_can_be_made_for_is_answered_with_the_reason(start_template):
    """Neither the spare after the first restore nor the one forked for the second request can be
    made: the second request is answered with an error, and the third gets a copy again."""
    control = start_template(2, 3)
    first, second, third = restore(control), restore(control), restore(control)
    assert first[0].isdigit()
    assert second == (b"error: the copy could not be forked", b"")
    assert third[0] == third[1] and third[0].isdigit()
