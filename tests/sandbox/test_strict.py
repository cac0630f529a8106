"""Isolation `strict` as a function sees it, through the embedding API with lambdalet's own runtime
client: everything `standard` gives, and a network namespace of the environment's own, where its
Runtime API is at 127.0.0.1:9001 and nothing else is reachable, and a seccomp deny-list with
no_new_privs. What the host cannot give is said, one line per protection, and never crashes.

Needs root (CI runs as root) for the namespaces; the deny-list's decisions are checked without."""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys

import pytest
import trio

from helpers import REPO, Gate, mountinfo, processes_in, running_server, without_user_namespaces, write_function
from runtime_api import FunctionConfig
from runtime_api.cli import build_parser, serve_config
from runtime_api.config import load_config
from sandbox import exec_helper, host, netns, seccomp
from sandbox.isolation import Isolation, PrivateFilesystem
from sandbox.process import OutputPipe, RuntimeSpec, launch_runtime, reap
from sandbox.strict import ElfHelper, PythonHelper, StrictExec

if os.geteuid() != 0:
    PROBLEM: str | None = "not root"
else:
    _found = host.strict_support()
    PROBLEM = host.mount_namespace_problem() or _found.netns_problem or _found.seccomp_problem
needs_root = pytest.mark.skipif(
    PROBLEM is not None, reason=f"needs root, namespaces and seccomp (CI runs as root): {PROBLEM}")

GATE = "gate.sock"  # a Unix socket in the code directory: reachable from any network namespace

HANDLERS = '''
import ctypes, errno, json, os, socket, subprocess, threading

def _netns():
    return os.stat("/proc/self/ns/net").st_ino

def _wait_at_gate(context):
    """Tell the test this invocation arrived, and wait for its reply (a Unix socket: the
    environment's network namespace reaches nothing on the host's loopback)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "gate.sock"))
    sock.sendall(context.aws_request_id.encode() + b"\\n")
    reply = b""
    while not reply.endswith(b"\\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        reply += chunk
    sock.close()
    return reply.decode().strip()

def _connect(host, port):
    try:
        socket.create_connection((host, port), timeout=10).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

def look(event, context):
    return {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "netns": _netns(), "cwd": os.getcwd(),
            "tmp": sorted(os.listdir("/tmp")),
            "status": {k: v.strip() for k, _, v in (line.partition(":") for line in open("/proc/self/status"))
                       if k in ("NoNewPrivs", "Seccomp")}}

def reach(event, context):
    return {f"{host}:{port}": _connect(host, port) for host, port in event["addresses"]}

def hold(event, context):
    other = _wait_at_gate(context)
    forged = None
    if other:  # answer the other environment's invocation, through "its" Runtime API
        sock = socket.create_connection(("127.0.0.1", 9001))
        body = b'{"forged": true}'
        sock.sendall(b"POST /2018-06-01/runtime/invocation/" + other.encode() + b"/response HTTP/1.1\\r\\n"
                     b"Host: 127.0.0.1\\r\\nContent-Length: " + str(len(body)).encode() + b"\\r\\n"
                     b"Connection: close\\r\\n\\r\\n" + body)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        sock.close()
        forged = int(answer.split()[1])
    return {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "netns": _netns(), "request_id": context.aws_request_id,
            "forged_status": forged}

def syscalls(event, context):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = event["numbers"]

    def outcome(result):
        return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]

    found = {}
    if event.get("dangerous"):  # each would succeed for root without the deny-list
        found["ptrace"] = outcome(libc.ptrace(0, 0, None, None))  # PTRACE_TRACEME
        found["mount"] = outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
        found["unshare"] = outcome(libc.unshare(0x10000000))  # CLONE_NEWUSER
        clone = libc.syscall(ctypes.c_long(nr["clone"]), ctypes.c_ulong(0x10000000 | 17), None, None, None, None)
        if clone == 0:
            os._exit(0)  # a child, had the filter let it through
        if clone > 0:
            os.waitpid(clone, 0)
        found["clone(CLONE_NEWUSER)"] = outcome(clone)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    found["setns"] = outcome(libc.setns(own, 0x40000000))  # into its own namespace: harmless
    os.close(own)
    found["bpf"] = outcome(libc.syscall(ctypes.c_long(nr["bpf"]), 5, None, 0))  # BPF_PROG_LOAD, no attributes
    found["clone3"] = outcome(libc.syscall(ctypes.c_long(nr["clone3"]), None, ctypes.c_size_t(0)))
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    found["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    found["subprocess"] = subprocess.run(["/bin/sh", "-c", "exit 9"]).returncode
    seen = []
    thread = threading.Thread(target=seen.append, args=("thread",))
    thread.start()
    thread.join()
    found["thread"] = seen
    return found
'''

NUMBERS = {name: seccomp.syscall_number(name, platform.machine())
           for name in ("clone", "clone3", "bpf")} if platform.machine() in seccomp.ARCHES else {}


@pytest.fixture
def code(tmp_path):
    return write_function(tmp_path / "fn", HANDLERS)


def function(code, name, handler, **settings) -> FunctionConfig:
    settings.setdefault("isolation", "strict")
    return FunctionConfig(name=name, code=str(code), handler=f"app.{handler}", **settings)


async def call(server, name, event=None) -> dict:
    result = await server.invoke(name, json.dumps(event or {}).encode())
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


@needs_root
async def test_the_runtime_finds_its_runtime_api_at_9001_in_a_namespace_of_its_own(code):
    async with running_server(function(code, "strict", "look")) as server:
        first = await call(server, "strict")
        second = await call(server, "strict")  # the same warm environment, through the same API
        (env,) = server.functions["strict"].environments

        assert env.address == "127.0.0.1:9001"
        assert first["netns"] == second["netns"] == env.netns.inode != os.stat("/proc/self/ns/net").st_ino
    assert first["api"] == "127.0.0.1:9001"
    assert (first["cwd"], first["tmp"]) == ("/var/task", [])
    assert first["status"] == {"NoNewPrivs": "1", "Seccomp": "2"}


@needs_root
async def test_a_handler_reaches_nothing_on_the_hosts_loopback(code, tmp_path):
    with socket.socket() as outside:  # a server of the test's own, on the host's loopback
        outside.bind(("127.0.0.1", 0))
        outside.listen(8)
        outside.setblocking(False)
        port = outside.getsockname()[1]
        functions = (function(code, "strict", "reach"),
                     function(write_function(tmp_path / "std", HANDLERS), "std", "look", isolation="standard"))
        async with running_server(*functions) as server:
            await call(server, "std")  # a standard environment, its Runtime API on the host's loopback
            (standard,) = server.functions["std"].environments
            standard_port = int(standard.address.rsplit(":", 1)[1])
            addresses = [("127.0.0.1", port), ("127.0.0.1", server.port), ("127.0.0.1", standard_port),
                         ("192.0.2.1", 9)]  # and beyond the loopback (TEST-NET-1): no route at all
            seen = await call(server, "strict", {"addresses": addresses})

        assert seen == {f"127.0.0.1:{port}": "ECONNREFUSED", f"127.0.0.1:{server.port}": "ECONNREFUSED",
                        f"127.0.0.1:{standard_port}": "ECONNREFUSED", "192.0.2.1:9": "ENETUNREACH"}
        with pytest.raises(BlockingIOError):
            outside.accept()  # no connection ever arrived


@needs_root
async def test_two_environments_each_have_their_own_9001_and_cannot_reach_each_other(code, nursery):
    gate = await Gate(code / GATE).start(nursery)
    async with running_server(function(code, "pair", "hold", concurrency=2)) as server:
        results = {}

        async def invoke(slot):
            results[slot] = await call(server, "pair")

        async with trio.open_nursery() as callers:
            callers.start_soon(invoke, 0)
            callers.start_soon(invoke, 1)
            first, second = await gate.wait_arrivals(2)  # both environments are up, at once
            envs = list(server.functions["pair"].environments)
            assert [env.address for env in envs] == ["127.0.0.1:9001", "127.0.0.1:9001"]
            assert envs[0].netns.inode != envs[1].netns.inode
            # The first answers the second's invocation at 127.0.0.1:9001: its own Runtime API.
            await gate.answer(first, second.encode() + b"\n")
            await gate.answer(second, b"\n")

    by_id = {r["request_id"]: r for r in results.values()}
    assert by_id[first]["forged_status"] == 400  # InvalidRequestID: not an invocation of its environment
    assert by_id[second] == {"api": "127.0.0.1:9001", "netns": by_id[second]["netns"], "request_id": second,
                             "forged_status": None}
    assert by_id[first]["netns"] != by_id[second]["netns"]
    assert {r["netns"] for r in results.values()} == {env.netns.inode for env in envs}


@needs_root
async def test_denied_system_calls_fail_with_eperm_while_fork_and_subprocess_work(code):
    async with running_server(function(code, "calls", "syscalls")) as server:
        seen = await call(server, "calls", {"numbers": NUMBERS, "dangerous": True})

    assert seen == {
        "ptrace": "EPERM", "mount": "EPERM", "unshare": "EPERM", "clone(CLONE_NEWUSER)": "EPERM",
        "setns": "EPERM", "bpf": "EPERM", "clone3": "ENOSYS",
        "fork": 7, "subprocess": 9, "thread": ["thread"],
    }


@needs_root
async def test_standard_has_no_deny_list(code):
    async with running_server(function(code, "calls", "syscalls", isolation="standard")) as server:
        seen = await call(server, "calls", {"numbers": NUMBERS})

    assert seen["setns"] == "ok" and seen["bpf"] not in ("EPERM", "ENOSYS") and seen["clone3"] != "ENOSYS"


def _netns_fds() -> set[int]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("net:"):
                found.add(os.stat(f"/proc/self/fd/{fd}").st_ino)
        except OSError:
            continue
    return found


@needs_root
async def test_nothing_is_left_once_the_server_stops(code):
    mounts, fds = mountinfo(), _netns_fds()
    async with running_server(function(code, "gone", "look", concurrency=2)) as server:
        seen = await call(server, "gone")
        (env,) = server.functions["gone"].environments
        pid, inode = env.pid, env.netns.inode
        cgroups = [path for path in env.cgroup.directories()] if env.cgroup is not None else []
        assert processes_in({("net", inode)}) == [pid] and inode in _netns_fds()

    assert seen["netns"] == inode
    assert processes_in({("net", inode)}) == []
    assert _netns_fds() == fds
    assert not os.path.exists(f"/proc/{pid}")
    assert cgroups and not any(os.path.exists(path) for path in cgroups)
    assert mountinfo() == mounts


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None, reason="needs util-linux's setpriv to drop capabilities")
def test_without_privilege_strict_says_what_it_lacks_and_still_runs(code):
    """No mount nor network namespace (said once each), the deny-list still loaded (it needs no
    privilege: no_new_privs), and the function invoked. Root is made unprivileged by an empty
    capability bounding set (it keeps reaching the interpreter in its 0700 home); such a root
    cannot have user namespaces either: mapping uid 0 into one takes CAP_SETFCAP."""
    script = (
        "import json, trio\n"
        "from runtime_api import FunctionConfig\n"
        "from tests.helpers import running_server\n"
        "async def main():\n"
        f"    config = FunctionConfig(name='f', code={str(code)!r}, handler='app.look', isolation='strict',\n"
        f"                            env={{'PYTHONPATH': {str(REPO)!r}}})\n"
        "    async with running_server(config) as server:\n"
        "        print(json.dumps(json.loads((await server.invoke('f', b'{}')).payload)))\n"
        "trio.run(main)\n"
    )
    drop = [SETPRIV, "--bounding-set=-all", "--inh-caps=-all", "--"] if os.geteuid() == 0 else []
    run = subprocess.run([*drop, sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                         timeout=120)

    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["api"].startswith("127.0.0.1:") and seen["api"] != "127.0.0.1:9001"
    assert seen["status"] == {"NoNewPrivs": "1", "Seccomp": "2"}
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    reason = "unshare --user --map-root-user failed: " if os.geteuid() == 0 else "user namespaces "
    assert sum(f"function f: isolation strict without a network namespace of its own ({reason}" in line
               for line in warnings) == 1
    assert sum(f"no private /tmp nor read-only /var/task ({reason}" in line for line in warnings) == 1
    assert not any("seccomp" in line for line in warnings)


@pytest.mark.parametrize("user_namespaces", [True, False], ids=["user namespaces", "none allowed"])
def test_unprivileged_each_missing_protection_is_said_once(user_namespaces):
    """As nobody: strict through user namespaces where they are allowed (nothing of it said);
    where they are not (only root can refuse them to a process without touching the host: the
    test's own namespace), each missing protection said once, with that reason."""
    if os.geteuid() != 0 and not user_namespaces:
        pytest.skip("needs root, to refuse user namespaces to nobody")
    script = (
        "import os; from sandbox import host; from sandbox.isolation import Isolation\n"
        "try:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "except PermissionError:\n"
        "    pass  # unprivileged already\n"
        "import ctypes; ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable, as a program the user started\n"
        "level, private = host.isolation(Isolation.STRICT, function='f')\n"
        "host.isolation(Isolation.STRICT, function='f')\n"
        "print(level, private, host.strict_support().netns)\n"
    )
    argv = [sys.executable, "-c", script]
    run = subprocess.run(argv if user_namespaces else without_user_namespaces(argv), capture_output=True,
                         text=True, cwd=REPO, timeout=60)

    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    if user_namespaces:
        assert run.stdout.split() == ["strict", "True", "True"]
        assert not any("namespace" in line or "/tmp" in line or "seccomp" in line for line in warnings)
        return
    reason = "user namespaces are not allowed to this user: user.max_user_namespaces is 0"
    assert run.stdout.split()[1:] == ["False", "False"]
    assert sum(f"function f: isolation strict without a network namespace of its own ({reason}): the Runtime "
               "API is on the host's loopback" in line for line in warnings) == 1
    assert sum(f"no private /tmp nor read-only /var/task ({reason})" in line for line in warnings) == 1
    # The deny-list needs no privilege: said only where the interpreter is out of nobody's reach.
    assert run.stdout.split()[0] == ("standard" if any("seccomp deny-list" in line for line in warnings)
                                     else "strict")


def test_strict_from_the_command_line_and_the_config_file(tmp_path):
    args = build_parser().parse_args(["serve", "--isolation", "strict"])
    assert serve_config(args).function[0].isolation is Isolation.STRICT
    config = tmp_path / "functions.toml"
    config.write_text('[[function]]\nname = "a"\nisolation = "strict"\n')
    assert load_config(config).function[0].isolation is Isolation.STRICT


# -- the deny-list's decisions, run through a classic-BPF interpreter (no kernel involved) ----------

def _run_filter(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = [struct.unpack_from("=HBBI", program, offset) for offset in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += jt if taken else jf
        pc += 1


@pytest.mark.parametrize("machine", sorted(seccomp.ARCHES))
def test_the_deny_list_decides_as_documented(machine):
    program = seccomp.deny_list(machine)
    arch = seccomp.ARCHES[machine][0]
    eperm, enosys = seccomp.SECCOMP_RET_ERRNO | errno.EPERM, seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS

    def decide(name_or_nr, arg0=0, on=arch):
        nr = name_or_nr if isinstance(name_or_nr, int) else seccomp.syscall_number(name_or_nr, machine)
        return _run_filter(program, nr, on, arg0)

    assert {name: decide(name) for name in seccomp.DENIED} == {name: eperm for name in seccomp.DENIED}
    assert decide("clone3") == enosys
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert decide("clone", flag | 17) == eperm
    assert decide("clone", 0x01200011) == seccomp.SECCOMP_RET_ALLOW  # fork's flags
    assert decide("clone", 0x003D0F00) == seccomp.SECCOMP_RET_ALLOW  # pthread_create's flags
    assert decide(0) == decide(63) == seccomp.SECCOMP_RET_ALLOW  # read, uname on x86_64
    assert decide(0, on=0x40000003) == seccomp.SECCOMP_RET_KILL_PROCESS  # i386
    if machine == "x86_64":
        assert decide(0x40000000 | 101) == enosys  # x32's ptrace


# -- the exec helpers, as programs (no namespaces: no root needed) -----------------------------------

MACHINE = platform.machine()
needs_table = pytest.mark.skipif(MACHINE not in seccomp.ARCHES, reason=f"no deny-list for {MACHINE}")


def _helpers() -> list:
    return [pytest.param("elf", marks=needs_table), pytest.param("python", marks=needs_table)]


@pytest.fixture
def helper(request):
    program = seccomp.deny_list(MACHINE)
    made = ElfHelper(exec_helper.load(MACHINE, program)) if request.param == "elf" else PythonHelper(program)
    yield made
    made.close()


@pytest.mark.parametrize("helper", _helpers(), indirect=True)
def test_a_helper_loads_the_deny_list_and_execs_with_the_environment_it_got(helper):
    env = {"PATH": "/usr/bin:/bin", "ODD": "a=b c"}  # no LANG: CPython would coerce the locale
    script = ("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; unshare --user true 2>/dev/null; "
              "echo unshare=$?; ls /proc/self/fd | wc -l; env")
    strict = StrictExec(helper)
    run = subprocess.run(strict.argv(["sh", "-c", script], "/bin/sh"), pass_fds=strict.pass_fds, env=env,
                         capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:3] == ["NoNewPrivs:\t1", "Seccomp:\t2", "unshare=1"]
    assert lines[3] == "4"  # 0, 1, 2 and ls's own: the helper's descriptor is closed
    assert dict(line.split("=", 1) for line in lines[4:] if line.split("=", 1)[0] in env or "LC_" in line) == env


@pytest.mark.parametrize("helper", _helpers(), indirect=True)
def test_a_helper_that_cannot_exec_says_so_as_a_shell_would(helper):
    run = subprocess.run(StrictExec(helper).argv(["lambdalet-missing"], "/nonexistent/lambdalet-missing"),
                         pass_fds=helper.fds, capture_output=True, text=True, timeout=60)

    assert run.returncode == 127
    assert run.stderr.startswith("lambdalet strict: cannot exec ")


@pytest.mark.parametrize("machine, assembler", [
    ("x86_64", ["as", "--64"]), ("aarch64", ["aarch64-linux-gnu-as"])])
def test_the_machine_code_is_its_assembly_source(machine, assembler, tmp_path):
    objcopy = "objcopy" if machine == "x86_64" else "aarch64-linux-gnu-objcopy"
    if shutil.which(assembler[0]) is None or shutil.which(objcopy) is None:
        pytest.skip(f"needs {assembler[0]} and {objcopy} (binutils) to assemble sandbox/asm/{machine}.S")
    subprocess.run([*assembler, "-o", str(tmp_path / "helper.o"), str(REPO / "sandbox" / "asm" / f"{machine}.S")],
                   check=True)
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(tmp_path / "helper.o"), str(tmp_path / "helper.bin")],
                   check=True)

    assert (tmp_path / "helper.bin").read_bytes() == exec_helper.CODE[machine][1]


@needs_root
@pytest.mark.parametrize("helper", _helpers(), indirect=True)
async def test_either_helper_starts_the_runtime_after_the_mounts_in_its_namespace(helper, code):
    namespace = await netns.open_namespace()
    output = OutputPipe()
    spec = RuntimeSpec(("sh", "-c", "grep Seccomp: /proc/self/status; readlink /proc/self/ns/net; pwd; ls /tmp"),
                       {"PATH": "/usr/bin:/bin"}, str(code))
    seen: list[bytes] = []
    try:
        process = await launch_runtime(spec, output, filesystem=PrivateFilesystem(task_root=str(code)),
                                       strict=StrictExec(helper, namespace.fd))
        try:
            await output.pump(seen.append)
        finally:
            status = await reap(process)
    finally:
        output.close()
        await namespace.listener.aclose()
        namespace.close()

    assert status == 0, seen
    # The private /tmp is empty, wherever lambdalet and its virtualenv live (the Python helper runs
    # on the virtualenv's base interpreter).
    assert b"".join(seen).decode().splitlines() == ["Seccomp:\t2", f"net:[{namespace.inode}]", "/var/task"]
