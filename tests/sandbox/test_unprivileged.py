"""`lambdalet serve` run by an unprivileged user, where the kernel lets it have user namespaces
(sandbox/userns.py): `standard` and `strict` as root gives them, one user namespace further in.
Each environment has a private /tmp the others cannot see and its code read-only at /var/task, as
the user's own uid (not root); `strict` adds a network namespace where its Runtime API is
127.0.0.1:9001 and nothing on the host's loopback is reachable, and the deny-list. What is still
missing (cgroups) is said once, one line each: RLIMIT_DATA is the memory guard (a memory hog fails
with MemoryError), a timeout kills the environment's whole process tree (its process group), the
server keeps serving, and once it stops nothing of its environments is left. Where user namespaces
are refused (user.max_user_namespaces is 0 in the server's user namespace, set there by a root of
the test's own), it degrades as before and names the reason.

The test runs as root (as CI does) and starts the real `lambdalet serve` as `nobody` through
setpriv. Everything that user needs must be reachable: the code (PYTHONPATH), a directory of its
own for the functions, and the interpreter. An interpreter under a directory closed to others
(pyenv in root's 0700 home), or a checkout there (a `mktemp -d` clone), is shown to the
unprivileged server through a private mount namespace that root makes around it (a 0755 tmpfs over
the closed directory with the interpreter's prefix and the checkout bound back): nothing changes on
the host, and the server itself holds no privilege. The functions run on the managed Python runtime
of the server's own version, whose interpreter and runtime client (this checkout's, copied into the
server's cache) are shown at /var/lang and /var/runtime: their private /tmp is empty wherever the
checkout, its virtualenv or the interpreter lie."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchmarks.common import shown_to_others
from helpers import REPO, mountinfo, processes_in, without_user_namespaces
from sandbox.isolation import MOUNT_POINTS
from serve_process import ServeProcess

NOBODY = 65534
SETPRIV = shutil.which("setpriv")
DROP = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
BOUND = 120.0  # seconds: only so that a broken server fails the test instead of hanging the suite

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to start the server as an unprivileged user"),
    pytest.mark.skipif(SETPRIV is None, reason="needs util-linux's setpriv to drop to an unprivileged user"),
]

HANDLERS = '''
import ctypes, errno, json, os, resource, socket, subprocess, time

libc = ctypes.CDLL(None, use_errno=True)

def _outcome(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]

def _ns(kind):
    return os.stat(f"/proc/self/ns/{kind}").st_ino

def whoami(event, context):
    return {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "pid": os.getpid(),
            "api": os.environ["AWS_LAMBDA_RUNTIME_API"], "task_root": os.environ["LAMBDA_TASK_ROOT"],
            "rlimit_data": resource.getrlimit(resource.RLIMIT_DATA)[0],
            "ns": {kind: _ns(kind) for kind in ("mnt", "net", "user")},
            "status": {k: v.strip() for k, _, v in (line.partition(":") for line in open("/proc/self/status"))
                       if k in ("NoNewPrivs", "Seccomp", "CapEff")}}

def tmp(event, context):
    before = sorted(os.listdir("/tmp"))
    with open(f"/tmp/{event['mark']}", "w") as f:
        f.write(context.aws_request_id)
    return {"before": before, "after": sorted(os.listdir("/tmp"))}

def code(event, context):
    found = {"cwd": os.getcwd(), "reads": open("/var/task/app.py").read(64) == open("app.py").read(64)}
    try:
        open("/var/task/written", "w").close()
        found["write"] = "ok"
    except OSError as exc:
        found["write"] = errno.errorcode[exc.errno]
    # What root of the namespace that owns the mounts could do, and the runtime must not.
    found["umount /tmp"] = _outcome(libc.umount2(b"/tmp", 2))  # MNT_DETACH
    found["remount /var/task rw"] = _outcome(libc.mount(None, b"/var/task", None, 32 | 4096, None))
    return found

def reach(event, context):
    found = {}
    for host, port in event["addresses"]:
        try:
            socket.create_connection((host, port), timeout=10).close()
            found[f"{host}:{port}"] = "connected"
        except OSError as exc:
            found[f"{host}:{port}"] = errno.errorcode.get(exc.errno, str(exc))
    return found

def syscalls(event, context):
    return {"ptrace": _outcome(libc.ptrace(0, 0, None, None)),  # PTRACE_TRACEME
            "mount": _outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
            "unshare": _outcome(libc.unshare(0x10000000)),  # CLONE_NEWUSER
            "fork": subprocess.run(["/bin/sh", "-c", "exit 9"]).returncode}

def hog(event, context):
    chunks = []
    for _ in range(event.get("mb", 1024) // 8):
        chunks.append(b"x" * (8 << 20))
    return {"allocated_mb": 8 * len(chunks)}

def tree_and_hang(event, context):
    \"\"\"A child and an orphaned grandchild (both in the runtime's process group), then hang.\"\"\"
    child = subprocess.Popen(["sleep", "1000"])
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        second = os.fork()
        if second == 0:
            os.execvp("sleep", ["sleep", "1000"])
        os.write(write_end, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    grandchild = int(os.read(read_end, 32))
    pids = {"runtime": os.getpid(), "child": child.pid, "grandchild": grandchild}
    with socket.create_connection(("127.0.0.1", int(os.environ["REPORT_PORT"]))) as report:
        report.sendall(json.dumps(pids).encode())
    while True:
        time.sleep(1000)
'''

def interpreter_reachable(env: dict[str, str]) -> bool:
    """Whether the user runs lambdalet, and its base interpreter (the runtimes' Python) as a child."""
    probe = subprocess.run([*DROP, sys.executable, "-c", "import os, sys, trio, msgspec, h11, runtime_api, bootstrap; "
                            "sys.exit(not os.access(os.path.realpath(sys._base_executable), os.X_OK))"],
                           env=env, cwd="/", capture_output=True, timeout=60)
    return probe.returncode == 0


def as_nobody(argv: list[str], env: dict[str, str], stage: Path) -> list[str]:
    """`argv` run as nobody; with the interpreter (and its virtualenv) and this checkout shown
    through a private mount namespace where the user could not reach them otherwise (pyenv in
    root's home, a checkout in a `mktemp -d` directory)."""
    if interpreter_reachable(env):
        return [*DROP, *argv]
    needed = [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), str(REPO.resolve())]
    prefix, _ = shown_to_others(needed, stage)
    if not prefix:
        pytest.skip(f"the interpreter {sys.executable} cannot be run by an unprivileged user here")
    return [*prefix, *DROP, *argv]


class UnprivilegedServer(ServeProcess):
    """`lambdalet serve --config` run as nobody; its start-up warnings and Invoke API."""

    def __init__(self, root: Path, config: Path, wrap: list[str] | None = None) -> None:
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(root), "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8"}
        stage = root / "stage"
        stage.mkdir()
        argv = as_nobody([sys.executable, "-m", "runtime_api.cli", "serve", "--config", str(config), "--port", "0"],
                         env, stage)
        self.stdout = open(root / "stdout.log", "wb")
        try:
            super().__init__([*(wrap or []), *argv], env, str(root), self.stdout, BOUND)
        finally:
            self.stdout.close()  # the server holds its own copy


@pytest.fixture(scope="module")
def report_listener():
    """Where the hanging handler reports its process tree (an event, not a sleep); also a server
    on the host's loopback that strict's environments must not reach."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(BOUND)
        yield listener


@contextlib.contextmanager
def serving(functions: str, wrap: list[str] | None = None):
    """The real `lambdalet serve` as nobody, with `functions` (TOML), in a directory of its own;
    stopped and removed whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="lambdalet-unprivileged-"))
    try:
        code = root / "fn"
        code.mkdir()
        (code / "app.py").write_text(HANDLERS)
        config = root / "functions.toml"
        config.write_text(functions)
        for path in (root, code, *root.iterdir(), *code.iterdir()):
            os.chown(path, NOBODY, NOBODY)
        running = UnprivilegedServer(root, config, wrap)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def function(name: str, handler: str, env: dict[str, str] | None = None, **settings) -> str:
    """A function's TOML. Without the bundled SDK: `nobody`'s cache (in the server's own directory)
    starts empty, and the handlers import nothing of it."""
    settings.setdefault("sdk", '"none"')
    lines = [f'name = "{name}"', 'code = "fn"', f'handler = "app.{handler}"', f"env = {_toml_table(env or {})}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "[[function]]\n" + "\n".join(lines) + "\n\n"


def _toml_table(values: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items()) + " }"


@pytest.fixture(scope="module")
def mount_point():
    """/var/task, /var/lang and /var/runtime, which only root can create (the server, unprivileged,
    cannot): made here if this host lacks them, as an administrator would once, and removed
    afterwards."""
    made = [point for point in MOUNT_POINTS if not os.path.isdir(point)]
    for point in made:
        os.mkdir(point, 0o755)
    try:
        yield "/var/task"
    finally:
        for point in made:
            os.rmdir(point)


@pytest.fixture(scope="module")
def host_mounts():
    return mountinfo()


@pytest.fixture(scope="module")
def server(report_listener, mount_point, host_mounts):
    report_port = report_listener.getsockname()[1]
    functions = (
        function("plain", "whoami")
        + function("ok", "whoami", isolation='"standard"', cpu_model='"lambda"')
        + function("tmp_a", "tmp", isolation='"standard"')
        + function("tmp_b", "tmp", isolation='"standard"')
        + function("code", "code", isolation='"standard"')
        + function("strict", "whoami", isolation='"strict"')
        + function("strict_other", "whoami", isolation='"strict"')
        + function("strict_reach", "reach", isolation='"strict"')
        + function("strict_calls", "syscalls", isolation='"strict"')
        + function("snap_tmp", "tmp", isolation='"standard"', snapstart="true")
        + function("snap_code", "code", isolation='"standard"', snapstart="true")
        + function("hog", "hog", isolation='"standard"', timeout="60.0")
        + function("hang", "tree_and_hang", isolation='"standard"', timeout="1.0",
                   env={"REPORT_PORT": str(report_port)})
    )
    with serving(functions) as running:
        yield running


def test_it_says_once_which_protection_is_missing_one_line_each(server):
    # Namespaces work: only the cgroups, which the kernel gives no unprivileged user here, are missing.
    assert server.warnings == [
        "lambdalet: WARNING: no memory limit through cgroups (cgroup v1 memory controller not writable): "
        "RLIMIT_DATA is the memory guard, an out-of-memory kill is not detected and Max Memory Used is the "
        "runtime's own peak, not its children's",
        "lambdalet: WARNING: no process limit (cgroup v1 pids controller not writable): a fork bomb is not contained",
        "lambdalet: WARNING: no cgroup at all: environments are killed by process group, so a process that "
        "leaves it (setsid) outlives its environment",
        "lambdalet: WARNING: no CPU limit for cpu model lambda (cgroup v1 cpu controller not writable): "
        "environments use the host's CPUs",
    ]


def test_standard_runs_as_the_users_own_uid_with_its_code_at_var_task(server):
    error, answer = server.invoke("ok")

    assert error is None
    assert (answer["uid"], answer["gid"]) == (NOBODY, NOBODY)  # not root of its user namespace
    assert answer["status"]["CapEff"] == "0000000000000000"
    assert (answer["cwd"], answer["task_root"]) == ("/var/task", "/var/task")
    assert answer["ns"]["mnt"] != os.stat("/proc/self/ns/mnt").st_ino
    assert answer["rlimit_data"] == 128 << 20  # the memory guard: the function's memory
    assert "Memory Size: 128 MB" in server.last_log
    # The default isolation is standard here too, now that it is permitted.
    assert server.invoke("plain")[1]["cwd"] == "/var/task"


def test_two_environments_cannot_see_each_others_tmp(server):
    first = server.invoke("tmp_a", {"mark": "from-a"})
    second = server.invoke("tmp_b", {"mark": "from-b"})
    again = server.invoke("tmp_a", {"mark": "again-a"})  # the same warm environment

    assert first == (None, {"before": [], "after": ["from-a"]})
    assert second == (None, {"before": [], "after": ["from-b"]})
    assert again == (None, {"before": ["from-a"], "after": ["again-a", "from-a"]})
    assert not os.path.exists("/tmp/from-a") and not os.path.exists("/tmp/from-b")


def test_the_code_is_read_only_and_the_mounts_cannot_be_undone(server):
    error, answer = server.invoke("code")

    assert error is None
    assert answer == {"cwd": "/var/task", "reads": True, "write": "EROFS",
                      "umount /tmp": "EPERM", "remount /var/task rw": "EPERM"}


def test_a_snapstart_copy_gets_a_private_tmp_it_cannot_undo(server):
    """A copy is forked from its template, with no exec to drop privilege at: it makes its mount
    namespace in a user namespace of its own and gives up the capabilities it had there."""
    assert server.invoke("snap_tmp", {"mark": "copy"}) == (None, {"before": [], "after": ["copy"]})
    assert server.invoke("snap_code") == (None, {"cwd": "/var/task", "reads": True, "write": "EROFS",
                                                 "umount /tmp": "EPERM", "remount /var/task rw": "EPERM"})
    assert not os.path.exists("/tmp/copy")


def test_strict_has_its_own_9001_and_reaches_nothing_on_the_hosts_loopback(server, report_listener):
    _, standard = server.invoke("ok")
    error, strict = server.invoke("strict")
    assert error is None
    assert strict["api"] == "127.0.0.1:9001"
    assert strict["uid"] == NOBODY and strict["cwd"] == "/var/task"
    assert strict["status"] == {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000"}
    assert strict["ns"]["net"] not in (standard["ns"]["net"], os.stat("/proc/self/ns/net").st_ino)
    _, other = server.invoke("strict_other")  # another environment: its own 9001, in its own namespace
    assert other["api"] == "127.0.0.1:9001" and other["ns"]["net"] != strict["ns"]["net"]

    outside = report_listener.getsockname()[1]
    standard_api = int(standard["api"].rsplit(":", 1)[1])  # a standard environment's, on the host's loopback
    addresses = [["127.0.0.1", outside], ["127.0.0.1", server.port], ["127.0.0.1", standard_api],
                 ["127.0.0.1", 9001], ["192.0.2.1", 9]]
    error, seen = server.invoke("strict_reach", {"addresses": addresses})

    assert error is None
    assert seen == {f"127.0.0.1:{outside}": "ECONNREFUSED", f"127.0.0.1:{server.port}": "ECONNREFUSED",
                    f"127.0.0.1:{standard_api}": "ECONNREFUSED",
                    "127.0.0.1:9001": "connected",  # its own Runtime API, in its own namespace
                    "192.0.2.1:9": "ENETUNREACH"}


def test_strict_denies_its_system_calls(server):
    assert server.invoke("strict_calls") == (None, {"ptrace": "EPERM", "mount": "EPERM", "unshare": "EPERM",
                                                    "fork": 9})


def test_a_memory_hog_fails_with_memory_error_and_its_environment_carries_on(server):
    error, answer = server.invoke("hog", {"mb": 1024})

    assert error == "Unhandled"
    assert answer["errorType"] == "MemoryError"
    assert server.invoke("hog", {"mb": 16}) == (None, {"allocated_mb": 16})


def test_a_timeout_kills_the_environments_whole_process_tree(server, report_listener):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(server.invoke, "hang")
        connection, _ = report_listener.accept()
        with connection:
            pids = json.loads(connection.makefile("rb").read())
        pidfds = {name: os.pidfd_open(pid) for name, pid in pids.items()}
        try:
            error, answer = call.result(BOUND)

            assert error == "Unhandled"
            assert answer["errorType"] == "Sandbox.Timedout"
            assert _exited(pidfds) == {"runtime": True, "child": True, "grandchild": True}
        finally:
            for fd in pidfds.values():
                os.close(fd)


def test_the_server_keeps_serving_and_nothing_is_left_once_it_stops(server, host_mounts):
    runtimes = [server.invoke(name)[1] for name in ("ok", "plain", "strict")]
    assert [answer["uid"] for answer in runtimes] == [NOBODY] * 3
    namespaces = {(kind, answer["ns"][kind]) for answer in runtimes for kind in ("mnt", "net", "user")}
    namespaces -= {(kind, os.stat(f"/proc/self/ns/{kind}").st_ino) for kind in ("mnt", "net", "user")}
    pidfds = {answer["pid"]: os.pidfd_open(answer["pid"]) for answer in runtimes}
    try:
        assert server.stop() == 0
        assert not [line for line in server.lines if "Traceback" in line]
        assert all(_exited(pidfds).values())  # the runtimes, reaped by the server before it exited
    finally:
        for fd in pidfds.values():
            os.close(fd)
    # Nothing is left in the environments' namespaces (so their mounts are gone with them), and
    # nothing was ever mounted on the host.
    assert processes_in(namespaces) == []
    assert mountinfo() == host_mounts


def test_without_user_namespaces_it_degrades_and_says_why(mount_point):
    functions = function("plain", "whoami") + function("strict", "whoami", isolation='"strict"')
    with serving(functions, wrap=without_user_namespaces([])) as degraded:
        reason = "user namespaces are not allowed to this user: user.max_user_namespaces is 0"
        assert degraded.warnings[:3] == [
            f"lambdalet: WARNING: isolation standard is not permitted here ({reason}): environments run at "
            "none, sharing the host's /tmp, without memory or process limits",
            f"lambdalet: WARNING: function strict: isolation strict without a network namespace of its own "
            f"({reason}): the Runtime API is on the host's loopback, and the host's network is reachable",
            f"lambdalet: WARNING: no private /tmp nor read-only /var/task ({reason}): environments share the "
            "host's /tmp and see their code at its own path",
        ]
        assert len(set(degraded.warnings)) == len(degraded.warnings)
        plain, strict = degraded.invoke("plain"), degraded.invoke("strict")

        assert plain[0] is None and plain[1]["cwd"].endswith("/fn") and plain[1]["uid"] == NOBODY
        assert strict[0] is None and strict[1]["cwd"].endswith("/fn")
        assert strict[1]["api"] != "127.0.0.1:9001"
        assert strict[1]["status"]["Seccomp"] == "2"  # the deny-list needs no namespace
        assert degraded.stop() == 0


def _exited(pidfds: dict) -> dict:
    """Which of the processes behind `pidfds` have exited, waiting up to BOUND for all of them."""
    poller = select.poll()
    for fd in pidfds.values():
        poller.register(fd, select.POLLIN)  # readable once the process has exited
    exited: set[int] = set()
    deadline = time.monotonic() + BOUND
    while len(exited) < len(pidfds) and time.monotonic() < deadline:
        exited.update(fd for fd, _ in poller.poll(1000))
    return {name: fd in exited for name, fd in pidfds.items()}
