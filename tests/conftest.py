"""What every test shares: the `gate` fixture, and the check that no test module leaves a process behind."""

import os
import signal

import pytest

from helpers import Gate


@pytest.fixture
async def gate(nursery):
    """A Gate serving in the test's nursery: handlers that wait at it block until the test releases them."""
    return await Gate().start(nursery)


@pytest.fixture(autouse=True, scope="session")
def own_state_dir(tmp_path_factory):
    """The `lambdalet serve` processes the tests start queue their Event invocations in a state
    directory of the test session's ($XDG_STATE_HOME), never in the user's own."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(autouse=True, scope="module")
def no_leftover_processes():
    """Every test module leaves no child process behind: what it started, it stopped."""
    before = _children()
    yield
    leftover = _children() - before
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftover, f"processes left running after the test: {sorted(leftover)}"


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(entry))
    return found
