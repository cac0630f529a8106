"""`strict`'s last step before the runtime's exec: join the environment's network namespace, set
no_new_privs and load the seccomp deny-list (sandbox/seccomp.py), then exec the runtime.

It must come after the shim's mounts (mount is denied) and cannot be a preexec_fn (the host is
threaded), so it is a small program of its own, the target of the shim's final `exec`, which then
execs the runtime: same process, same pid. Two implementations, the first that works here is used
(probed once by sandbox.host):

* `ElfHelper`: a static ELF of a few hundred bytes (sandbox/exec_helper.py), x86_64 and aarch64,
  exec'd from a sealed memfd: one exec more per spawn;
* `PythonHelper`: the same steps in Python through ctypes, anywhere else: an interpreter start-up
  per spawn (both costs are in benchmarks/results/strict.md). Its code travels inline
  (`-I -S -c`), so it needs nothing from lambdalet's package or virtualenv (which may live under
  the host's /tmp, hidden by the private /tmp), only the base interpreter, which the mount plan
  keeps reachable (`also`). It execs the runtime with the environment it was started with, read back from
  /proc/self/environ, because CPython's start-up may have added LC_CTYPE to its own (PEP 538
  locale coercion).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from . import exec_helper, userns

PYTHON_HELPER = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        sys.stderr.write("lambdalet strict: %s failed: %s\n" % (what, os.strerror(ctypes.get_errno())))
        os._exit(126)
netns, program, argv = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[4:]
with open("/proc/self/environ", "rb") as f:
    env = dict(os.fsdecode(item).partition("=")[::2] for item in f.read().split(b"\0") if b"=" in item)
if netns >= 0:
    check(libc.setns(netns, 0x40000000), "setns(CLONE_NEWNET)")
    os.close(netns)
if program:
    u = ctypes.c_ulong
    check(libc.prctl(38, u(1), u(0), u(0), u(0)), "prctl(PR_SET_NO_NEW_PRIVS)")
    code = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(program) // 8, ctypes.addressof(code)))
    check(libc.prctl(22, u(2), fprog, u(0), u(0)), "prctl(PR_SET_SECCOMP)")
try:
    os.execvpe(argv[0], argv, env)
except OSError as exc:
    sys.stderr.write("lambdalet strict: cannot exec %s: %s\n" % (argv[0], exc.strerror))
    os._exit(127 if exc.errno == 2 else 126)
"""


@dataclass(frozen=True, slots=True)
class ElfHelper:
    """The machine-code helper in the memfd `fd` (kept open by the host, passed to each spawn),
    its deny-list built in."""

    fd: int

    def argv(self, netns_fd: int | None, program: str, runtime_argv: list[str]) -> list[str]:
        return [f"/proc/self/fd/{self.fd}", "-" if netns_fd is None else str(netns_fd), str(self.fd), program,
                *runtime_argv]

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.fd,)

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True, slots=True)
class PythonHelper:
    """The portable helper: `python` running PYTHON_HELPER, loading `seccomp` (b"": none)."""

    seccomp: bytes = b""
    python: str = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)  # never a venv's

    def argv(self, netns_fd: int | None, program: str, runtime_argv: list[str]) -> list[str]:
        return [self.python, "-I", "-S", "-c", PYTHON_HELPER, str(-1 if netns_fd is None else netns_fd),
                self.seccomp.hex(), "--", *runtime_argv]

    @property
    def fds(self) -> tuple[int, ...]:
        return ()

    def close(self) -> None:
        pass


Helper = ElfHelper | PythonHelper


@dataclass(frozen=True, slots=True)
class StrictExec:
    """What the helper does for one runtime: join `netns_fd` (None: stay in the host's network
    namespace) and load the deny-list it carries (if any). With `userns_fd` (a host without
    privilege: sandbox/userns.py) the shim enters the namespaces first (`join_argv`), and the
    helper only loads the deny-list."""

    helper: Helper
    netns_fd: int | None = None
    userns_fd: int | None = None

    def argv(self, runtime_argv: tuple[str, ...] | list[str], program: str) -> list[str]:
        """`program`: the runtime's executable, as execve takes it (`program_path`)."""
        return self.helper.argv(self.netns_fd if self.userns_fd is None else None, program, list(runtime_argv))

    def join_argv(self) -> list[str]:
        """The shim's first exec, entering the user and network namespaces (none: [])."""
        if self.userns_fd is None or self.netns_fd is None:
            return []
        return userns.join_argv(self.userns_fd, self.netns_fd)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        if self.netns_fd is None or self.userns_fd is not None:
            return self.helper.fds
        return self.helper.fds + (self.netns_fd,)

    @property
    def interpreter(self) -> tuple[str, ...]:
        """What the helper itself needs to find in the runtime's mount namespace."""
        return (self.helper.python,) if isinstance(self.helper, PythonHelper) else ()


def program_path(argv0: str, env: dict[str, str]) -> str:
    """The runtime's executable as the shell's `exec` would find it: a name without a slash is
    looked up in the runtime's PATH (the machine-code helper does no lookup of its own)."""
    if "/" in argv0:
        return argv0
    return shutil.which(argv0, path=env.get("PATH", os.defpath)) or argv0


@dataclass(frozen=True, slots=True)
class StrictSupport:
    """What `strict` can add here, as probed once by sandbox.host: why each protection cannot be
    had (None: it can), and the helper that gives them (None: no helper runs here)."""

    netns_problem: str | None
    seccomp_problem: str | None
    helper: Helper | None = None

    @property
    def netns(self) -> bool:
        return self.netns_problem is None and self.helper is not None

    @property
    def any(self) -> bool:
        return self.netns or self.seccomp_problem is None


def find_helper(machine: str, seccomp: bytes) -> tuple[Helper | None, str | None]:
    """The first helper that runs here loading `seccomp` (b"": none), and why none does (None if
    one does): each candidate run once, for real."""
    candidates: list[Helper] = []
    try:
        candidates.append(ElfHelper(exec_helper.load(machine, seccomp)))
    except (KeyError, OSError):
        pass  # no machine code for this machine, or no memfd: the Python helper
    if sys.executable and os.access(sys.executable, os.X_OK):
        candidates.append(PythonHelper(seccomp))
    problem = "no Python interpreter to run lambdalet's exec helper"
    for helper in candidates:
        problem = _run_problem(helper)
        if problem is None:
            return helper, None
        helper.close()
    return None, problem


def _run_problem(helper: Helper) -> str | None:
    try:
        run = subprocess.run(StrictExec(helper).argv(["true"], "/bin/true"), pass_fds=helper.fds,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"lambdalet's exec helper did not run: {exc}"
    if run.returncode != 0:
        return (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
    return None
