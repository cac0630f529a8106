"""The kernel's cgroup tables as lambdalet reads them (sandbox/cgroupfs.py): /proc/self/cgroup,
/proc/self/mountinfo, flat keyed files. Samples are the kernel's formats (proc(5), the kernel's
cgroup-v2.rst); what a real v2 kernel does with them is tests/vm/test_cgroup_v2.py's."""

from sandbox import cgroupfs
from sandbox.cgroups import CgroupSupport

HYBRID_MOUNTINFO = """\
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
39 35 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
41 35 0:36 /docker/abc /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
"""
HYBRID_PROC = """\
12:pids:/docker/abc/x
4:cpu,cpuacct:/user.slice
3:memory:/user.slice/session-1.scope
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
"""


def test_proc_self_cgroup_gives_each_v1_controller_and_the_v2_path():
    paths = cgroupfs.own_paths(HYBRID_PROC)

    assert paths["memory"] == "/user.slice/session-1.scope"
    assert (paths["cpu"], paths["cpuacct"], paths["pids"]) == ("/user.slice", "/user.slice", "/docker/abc/x")
    assert paths["name=systemd"] == "/user.slice/session-1.scope"
    assert paths[""] == "/user.slice/session-1.scope"


def test_mountinfo_gives_each_controllers_hierarchy_and_the_v2_mount():
    found = cgroupfs.mounts(HYBRID_MOUNTINFO)

    assert found.v2 == ("/sys/fs/cgroup/unified", "/")
    assert found.v1["memory"] == ("/sys/fs/cgroup/memory", "/")
    assert found.v1["cpu"] == found.v1["cpuacct"] == ("/sys/fs/cgroup/cpu,cpuacct", "/")


def test_a_cgroup_directory_is_the_mount_point_plus_the_path_below_the_mounted_root():
    found = cgroupfs.mounts(HYBRID_MOUNTINFO)

    assert found.directory("memory", "/user.slice/session-1.scope") == "/sys/fs/cgroup/memory/user.slice/session-1.scope"
    assert found.directory("", "/") == "/sys/fs/cgroup/unified"
    # A container's bind mount of the host's /docker/abc shows /docker/abc/x at <mount>/x.
    assert found.directory("pids", "/docker/abc/x") == "/sys/fs/cgroup/pids/x"
    assert found.directory("pids", "/elsewhere") is None
    assert found.directory("hugetlb", "/") is None


def test_a_v2_only_host():
    found = cgroupfs.mounts("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")

    assert (found.v1, found.v2) == ({}, ("/sys/fs/cgroup", "/"))
    assert found.directory("", "/system.slice/x.service") == "/sys/fs/cgroup/system.slice/x.service"


def test_a_mount_point_with_a_space_is_unescaped():
    found = cgroupfs.mounts("29 23 0:26 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n")

    assert found.v2 == ("/mnt/my cgroup", "/")


def test_flat_keyed_files():
    events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"

    assert cgroupfs.keyed(events)["oom_kill"] == 2
    assert cgroupfs.keyed("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}
    assert cgroupfs.keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")["oom_kill"] == 1  # v1 memory.oom_control
    assert cgroupfs.keyed("garbage\nkey notanumber\n\n") == {}


def test_malformed_tables_give_nothing_rather_than_an_error():
    assert cgroupfs.own_paths("not a cgroup line\n") == {}
    assert cgroupfs.mounts("short line\n1 2 3\n") == cgroupfs.Mounts()


def test_only_a_v2_memory_controller_with_nothing_writable_is_one_warning_naming_the_delegation():
    undelegated = CgroupSupport(v2_controllers=frozenset({"memory", "pids", "cpu"}), v2_problem="/x is not writable")

    [line] = undelegated.missing()
    assert "systemd-run --user --scope -p Delegate=yes" in line and "/x is not writable" in line
    assert [line.split(" (")[0] for line in CgroupSupport().missing()][:2] == [
        "no memory limit through cgroups", "no process limit"]
