"""`strict`'s seccomp deny-list, as a classic-BPF program (no libseccomp: built here with `struct`).

Sans-I/O: `deny_list(machine)` returns the program's bytes (an array of `struct sock_filter`);
sandbox/strict.py loads it, with no_new_privs, in the last process before the runtime's exec.

What it decides, for every system call of the runtime and everything it starts:

* the calls that reach into other processes, the kernel or the mount table (`DENIED`) fail with
  EPERM, as they would for an unprivileged process;
* `clone` with any CLONE_NEW* flag fails with EPERM (namespaces are how a process would leave the
  environment's view, or get the capabilities to change it); plain fork, vfork and threads work;
* `clone3` fails with ENOSYS: its flags sit behind a pointer a filter cannot read, and on ENOSYS
  glibc (>= 2.34, for threads, fork and posix_spawn) falls back to `clone`, which is checked;
* x86_64's x32 calls (bit 30 of the number; the same audit arch) fail with ENOSYS, as on a kernel
  built without x32, so the deny-list cannot be bypassed through their numbering;
* a call of any other architecture (i386 through `int 0x80` on x86_64, AArch32 on arm64) kills
  the process: the deny-list names only the two 64-bit ABIs' numbers, so allowing another ABI
  would allow everything; Lambda runs no 32-bit programs.

Everything else is allowed: a deny-list, so a runtime's ordinary system calls, new ones included,
need no list of their own.
"""

from __future__ import annotations

import errno
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7

# Numbers from the kernel's syscall tables: x86_64's own, and asm-generic's (arm64). The new mount
# API's numbers (428 and up) are the same on both.
_NUMBERS = {
    # name: (x86_64, aarch64)
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "unshare": (272, 97),
    "setns": (308, 268),
    "chroot": (161, 51),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "open_by_handle_at": (304, 265),
    "userfaultfd": (323, 282),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),  # the new mount API too (5.12)
    "open_tree_attr": (467, 467),  # open_tree with mount attributes (6.15)
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "reboot": (169, 142),
    "acct": (163, 89),
    "clone": (56, 220),
    "clone3": (435, 435),
}
DENIED = tuple(name for name in _NUMBERS if name not in ("clone", "clone3"))
ARCHES = {"x86_64": (AUDIT_ARCH_X86_64, 0), "aarch64": (AUDIT_ARCH_AARCH64, 1)}

# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. (CLONE_NEWTIME, 0x80, exists only
# for clone3 and unshare: in clone's flags that bit belongs to the exit signal.)
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # args[0]'s low half: both ABIs are little-endian

# Classic BPF opcodes (linux/bpf_common.h).
_LD_W_ABS = 0x20
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45
_RET_K = 0x06


def syscall_number(name: str, machine: str) -> int:
    """A system call's number on `machine` (platform.machine(): x86_64 or aarch64)."""
    return _NUMBERS[name][ARCHES[machine][1]]


def deny_list(machine: str) -> bytes:
    """The filter for a runtime on `machine`; KeyError if lambdalet has no table for it."""
    arch, column = ARCHES[machine]
    program = _Program()
    program.load(_ARCH)
    program.jump(_JEQ, arch, "native", None)
    program.ret(SECCOMP_RET_KILL_PROCESS)
    program.label("native")
    program.load(_NR)
    if machine == "x86_64":
        program.jump(_JGE, X32_SYSCALL_BIT, "enosys", None)
    program.jump(_JEQ, _NUMBERS["clone"][column], "clone", None)
    program.jump(_JEQ, _NUMBERS["clone3"][column], "enosys", None)
    for name in DENIED:
        program.jump(_JEQ, _NUMBERS[name][column], "eperm", None)
    program.ret(SECCOMP_RET_ALLOW)
    program.label("clone")
    program.load(_ARG0_LOW)
    program.jump(_JSET, CLONE_NEW_FLAGS, "eperm", None)
    program.ret(SECCOMP_RET_ALLOW)
    program.label("eperm")
    program.ret(SECCOMP_RET_ERRNO | errno.EPERM)
    program.label("enosys")
    program.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)
    return program.assemble()


class _Program:
    """A few instructions with forward jumps to labels, resolved to relative offsets."""

    def __init__(self) -> None:
        self._code: list[tuple[int, object, object, int]] = []  # (op, jt, jf, k)
        self._labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self._code.append((_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, k: int, if_true: str | None, if_false: str | None) -> None:
        """`None`: fall through to the next instruction."""
        self._code.append((op, if_true, if_false, k))

    def ret(self, action: int) -> None:
        self._code.append((_RET_K, 0, 0, action))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def assemble(self) -> bytes:
        out = []
        for index, (op, jt, jf, k) in enumerate(self._code):
            out.append(struct.pack("=HBBI", op, self._offset(index, jt), self._offset(index, jf), k))
        return b"".join(out)

    def _offset(self, index: int, target: object) -> int:
        if not isinstance(target, str):
            return 0
        offset = self._labels[target] - index - 1
        assert 0 <= offset <= 255, "classic BPF jumps go forward, at most 255 instructions"
        return offset
