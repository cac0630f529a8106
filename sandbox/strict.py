"""`strict`'s last step before the runtime's exec: join the environment's network namespace, set
no_new_privs and load the seccomp deny-list (sandbox/seccomp.py), then exec the runtime.

It must come after the shim's mounts (mount is denied) and cannot be a preexec_fn (the host is
threaded), so it is a small program of its own, run as `<python> -I -S -c <EXEC_HELPER> <netns fd>
<filter hex> -- <runtime argv>` by the shim's final `exec`: the code travels inline, so it needs
nothing from lambdalet's package (which may live under the host's /tmp, hidden by the private /tmp),
only the interpreter, which the mount plan keeps reachable. Isolated mode (-I -S) keeps the
runtime's PYTHON* variables and site-packages out of it. It execs the runtime with the environment
it was itself started with, read back from /proc/self/environ, because CPython's start-up may have
added LC_CTYPE (PEP 538 locale coercion) to its own.

Measured cost per spawn (benchmarks in the report of the change that added it): about 10 ms of
interpreter start-up on this machine kind, the rest (setns, prctl) well under a millisecond.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

EXEC_HELPER = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def fail(what, err):
    sys.stderr.write("lambdalet strict: %s: %s\n" % (what, os.strerror(err)))
    os._exit(126)
def check(result, what):
    if result != 0:
        fail(what, ctypes.get_errno())
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
    sys.stderr.write("lambdalet strict: exec %s: %s\n" % (argv[0], exc.strerror))
    os._exit(127 if exc.errno == 2 else 126)
"""


@dataclass(frozen=True, slots=True)
class StrictExec:
    """What the helper does for one runtime: join `netns_fd` (None: stay in the host's network
    namespace), load `seccomp` (a BPF program; empty: none)."""

    netns_fd: int | None = None
    seccomp: bytes = b""
    python: str = sys.executable

    def argv(self, runtime_argv: tuple[str, ...] | list[str]) -> list[str]:
        fd = -1 if self.netns_fd is None else self.netns_fd
        return [self.python, "-I", "-S", "-c", EXEC_HELPER, str(fd), self.seccomp.hex(), "--", *runtime_argv]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return () if self.netns_fd is None else (self.netns_fd,)


@dataclass(frozen=True, slots=True)
class StrictSupport:
    """What `strict` can add here, as probed once by sandbox.host: why each protection cannot be
    had (None: it can), and the deny-list to load."""

    netns_problem: str | None
    seccomp_problem: str | None
    seccomp: bytes = b""

    @property
    def netns(self) -> bool:
        return self.netns_problem is None

    @property
    def any(self) -> bool:
        return self.netns_problem is None or self.seccomp_problem is None


def seccomp_problem(program: bytes, python: str = sys.executable) -> str | None:
    """Why the deny-list cannot be loaded here, or None: the helper run once, for real (tens of ms)."""
    if not python or not os.access(python, os.X_OK):
        return "no Python interpreter to run lambdalet's exec helper"
    try:
        run = subprocess.run(StrictExec(seccomp=program, python=python).argv(["/bin/true"]),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"lambdalet's exec helper did not run: {exc}"
    if run.returncode != 0:
        return (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
    return None
