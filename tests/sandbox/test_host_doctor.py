"""`lambdalet doctor --host`: the cgroup mode and each controller, as this machine has them, and
what each isolation level gets. Its v2 answers are shown in the guest of tests/vm/test_cgroup_v2.py."""

import json
import subprocess
import sys

from helpers import REPO
from sandbox import cgroupfs
from sandbox.host_doctor import cgroup_mode

from test_cgroupfs import HYBRID_MOUNTINFO


def test_the_mode_is_named_from_the_mounts():
    assert cgroup_mode(cgroupfs.mounts(HYBRID_MOUNTINFO)) == "hybrid"
    assert cgroup_mode(cgroupfs.mounts("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")) == "v2"
    assert cgroup_mode(cgroupfs.mounts("39 35 0:34 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")) == "v1"
    assert cgroup_mode(cgroupfs.mounts("")) == "none"


def test_doctor_host_says_what_this_machine_gives_in_the_same_terms_as_serve():
    run = subprocess.run([sys.executable, "-m", "runtime_api.cli", "doctor", "--host", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    check = subprocess.run([sys.executable, "-c", "from sandbox import cgroups; s = cgroups.detect(); "
                            "print(s.memory is not None, s.pids is not None, s.cpu is not None)"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["cgroup_mode"] in ("v1", "v2", "hybrid", "none")
    assert [c["name"] for c in report["controllers"]] == ["memory", "pids", "cpu"]
    assert " ".join(str(c["usable"]) for c in report["controllers"]) == check.stdout.strip()
    for controller in report["controllers"]:
        assert controller["usable"] == (controller["problem"] is None)
    levels = {level["isolation"]: level for level in report["levels"]}
    assert set(levels) == {"none", "standard", "strict"}
    memory_usable = report["controllers"][0]["usable"]
    assert any(item.startswith("memory limit through cgroup") for item in levels["standard"]["gets"]) == memory_usable


def test_doctor_host_as_text():
    run = subprocess.run([sys.executable, "-m", "runtime_api.cli", "doctor", "--host"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    first, *rest = run.stdout.splitlines()
    assert first.startswith("cgroups: ")
    assert [line.split()[0] for line in rest[:3]] == ["memory", "pids", "cpu"]
    assert "isolation standard:" in rest
