"""Lambda's limits on a cgroup-v2-only kernel, proven in a virtual machine the test boots itself:
Debian's kernel under QEMU's software emulation (vm_image.py, vm_driver.py), the host's tree
shared read-only, cgroup2 with every controller, and guest_scenarios.py run as root in it against
this checkout's `lambdalet serve`:

* a memory hog is `Runtime.OutOfMemory` (answer and REPORT) and the server serves on;
* `Max Memory Used` grows by what the handler allocated;
* a fork bomb is stopped by pids.max; a timeout kills a daemon that left the process group;
* `--cpu-model lambda` at 128 MB writes cpu.max and runs a CPU loop several times slower than
  unlimited (the ratio is printed; Lambda's share is 1769/128, about 14x; TCG is too noisy for more
  than "clearly limited");
* SnapStart copies land in cgroups of their own; nothing is left after a stop, and a stale cgroup
  of a crashed run is removed at start-up;
* as root of a container with its own cgroup namespace (unshare --cgroup), the same limits;
* as nobody in a delegated subtree (systemd's Delegate=yes, made by hand), the same limits; as
  nobody undelegated, the single warning naming the command that would delegate;
* `lambdalet doctor --host` says v2, and which controllers root and nobody may use.

The results come back in a shared file, one strict line per scenario; a guest that never ran them
fails every test. Needs qemu-system-x86_64, busybox-static and Debian's apt (.ci/run installs the
first two); skips, saying which is missing, without them. The first run downloads a kernel
package (about 70 MB) into ~/.cache/lambdalet/vm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

import vm_driver
import vm_image
from helpers import REPO

SCENARIOS = ("root_starts", "out_of_memory", "max_memory_used", "fork_bomb", "timeout_kills_daemon",
             "cpu_model_lambda", "snapstart_copies", "nothing_left_after_stop", "container_cgroup_namespace",
             "delegated_user", "undelegated_user", "doctor_host")
LINE = re.compile(r"LAMBDALET-VM-SCENARIO (\w+) (PASS|FAIL) (\{.*\})")
DONE = re.compile(r"LAMBDALET-VM-DONE (\d+)")
GUEST_TIMEOUT = 480.0  # seconds: the whole guest, boot to power-off (a hang fails, never blocks CI)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: QEMU's 9p share of the host's / must read every file"),
    pytest.mark.skipif(shutil.which(vm_driver.QEMU) is None,
                       reason="needs qemu-system-x86_64 (apt-get install qemu-system-x86; .ci/run does)"),
]


def parse(text: str) -> tuple[dict[str, tuple[bool, dict]], int | None]:
    """Each scenario's verdict and what it saw, and the count the guest said it ran (None: it never
    finished). A line that is neither is an error: nothing else may be in the file."""
    found: dict[str, tuple[bool, dict]] = {}
    done = None
    for line in text.splitlines():
        if match := LINE.fullmatch(line):
            assert match[1] not in found, f"scenario {match[1]} reported twice"
            found[match[1]] = (match[2] == "PASS", json.loads(match[3]))
        elif match := DONE.fullmatch(line):
            done = int(match[1])
        else:
            raise AssertionError(f"not a result line: {line!r}")
    return found, done


def offline_libraries(results: Path) -> str:
    """The guest has no network: the libraries lambdalet's managed Python runtime includes are
    fetched here (once, into the cache) and copied into the results share, where the guest's
    servers take them from (`VAR=value ` for the guest's command, or "")."""
    from sandbox import interpreters, runtime_cache, runtimes
    runtime, interpreter = runtimes.for_python(sys.version_info[:2]), interpreters.ask_python(sys.executable)
    if runtime is None or interpreter is None:
        return ""
    try:
        cached = runtime_cache.runtime_libraries(runtime, interpreter, sdk=False)
    except runtime_cache.LibrariesUnavailable:
        return ""
    shutil.copytree(cached, results / cached.name)
    return f"LAMBDALET_VM_LIBRARIES={vm_image.RESULTS}/{cached.name} "


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    try:
        image = vm_image.build()
    except vm_image.Unavailable as exc:
        pytest.skip(f"no guest image: {exc}")
    results = tmp_path_factory.mktemp("vm-results")
    os.chmod(results, 0o777)
    script = REPO / "tests" / "vm" / "guest_scenarios.py"
    command = f"cd {REPO} && {offline_libraries(results)}exec {sys.executable} {script} {vm_image.RESULTS}"
    run = vm_driver.run(image, command, results, timeout=GUEST_TIMEOUT,
                        show=vm_driver.to_show(sys.executable, str(REPO)))
    file = results / "scenarios.txt"
    text = file.read_text() if file.exists() else ""
    print(text)
    return run, text


def test_the_guest_ran_every_scenario_to_the_end(guest):
    run, text = guest
    found, done = parse(text)

    assert done == len(found) == len(SCENARIOS), run.console[-3000:]
    assert set(found) == set(SCENARIOS)
    assert run.exit_status == 0, run.console[-3000:]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(guest, scenario):
    run, text = guest
    found, _ = parse(text)

    assert scenario in found, f"the guest never reported {scenario}; console: {run.console[-3000:]}"
    passed, seen = found[scenario]
    assert passed, json.dumps(seen, indent=1)
