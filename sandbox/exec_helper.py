"""`strict`'s exec helper as a static ELF of under a kilobyte, for x86_64 and aarch64.

The helper (sandbox/strict.py says what it does and why it exists) is the last program before the
runtime's exec, once per spawn. Written in Python it costs an interpreter start-up; this one, a few
hundred bytes of machine code making six system calls, costs little more than exec'ing the runtime
directly (both measured in benchmarks/results/strict.md). Its sources are
sandbox/asm/<machine>.S; the bytes below are their `.text`, regenerated with

    as --64 -o x.o sandbox/asm/x86_64.S && objcopy -O binary -j .text x.o x86_64.bin
    aarch64-linux-gnu-as -o a.o sandbox/asm/aarch64.S && aarch64-linux-gnu-objcopy -O binary -j .text a.o aarch64.bin

(tests/sandbox/test_strict.py checks they match where those assemblers are installed).

`build` lays the ELF out (one loadable segment at a fixed address, a non-executable stack) with the
deny-list appended and the code's `struct sock_fprog` (its last 16 bytes) pointing at it; `load`
puts it in a sealed memfd, which the shim execs through /proc/self/fd (no file on disk, nothing
to clean up, visible inside any mount namespace).
"""

from __future__ import annotations

import fcntl
import os
import struct

# machine: (e_machine, the code)
CODE = {
    "x86_64": (62, bytes.fromhex(
        "488b1c24488d6c2408488d355201000031c04883fb050f82e1000000488b7d08e8110100004989c4488b7d10e8050100"
        "004885c0780a4889c7b8030000000f054d85e478294c89e7be00000040b8340100000f05488d354a0100004885c00f85"
        "990000004c89e7b8030000000f054c8d35eb0100006641833e00744bbf26000000be0100000031d24531d24531c0b89d"
        "0000000f05488d35370100004885c0755cbf16000000be020000004c89f24531d24531c0b89d0000000f05488d354601"
        "00004885c07536488b7d18488d7520488d54dd08b83b0000000f054989c7488d3553010000e832000000488b7518e829"
        "000000488d355d0100004c89f84989c7e817000000bf7e0000004983fffe7505bf7f000000b8e70000000f0531d2803c"
        "1600740548ffc2ebf5bf02000000b8010000000f05c348c7c0ffffffff0fb60f83e93083f909771931c00fb60f83e930"
        "83f909770c486bc00a4801c848ffc7ebe9c36c616d6264616c6574207374726963743a2075736167653a2068656c7065"
        "72204e45544e535f46442053454c465f46442050524f4752414d2041524756302e2e2e0a006c616d6264616c65742073"
        "74726963743a207365746e7328434c4f4e455f4e45574e455429206661696c65640a006c616d6264616c657420737472"
        "6963743a20707263746c2850525f5345545f4e4f5f4e45575f505249565329206661696c65640a006c616d6264616c65"
        "74207374726963743a20707263746c2850525f5345545f534543434f4d5029206661696c65640a006c616d6264616c65"
        "74207374726963743a2063616e6e6f74206578656320000a000f1f800000000000000000000000000000000000000000"
    )),
    "aarch64": (183, bytes.fromhex(
        "f30340f9f4230091010b0010000080d27f1600f1a3060054800640f944000094f50300aa800a40f9410000946000f8b7"
        "280780d2010000d45501f8b7e00315aa0100a8d2882180d2010000d4e10a0070c00400b5e00315aa280780d2010000d4"
        "16100010c002407960020034c00480d2210080d2020080d2030080d2040080d2e81480d2010000d4810a0030e00200b5"
        "c00280d2410080d2e20316aa030080d2040080d2e81480d2010000d4010b0050c00100b5800e40f981820091820e138b"
        "42200091a81b80d2010000d4f70300aa610b00500d000094810e40f90b000094e10b0030e00317aaf70300aa07000094"
        "c00f80d2ff0a00b141000054e00f80d2c80b80d2010000d4020080d2236862386300003442040091fdffff17400080d2"
        "080880d2010000d4c0035fd6e10300aa000080922200403942c000515f24007128010054000080d2430180d222144038"
        "42c000515f240071680000540008039bfbffff17c0035fd66c616d6264616c6574207374726963743a2075736167653a"
        "2068656c706572204e45544e535f46442053454c465f46442050524f4752414d2041524756302e2e2e0a006c616d6264"
        "616c6574207374726963743a207365746e7328434c4f4e455f4e45574e455429206661696c65640a006c616d6264616c"
        "6574207374726963743a20707263746c2850525f5345545f4e4f5f4e45575f505249565329206661696c65640a006c61"
        "6d6264616c6574207374726963743a20707263746c2850525f5345545f534543434f4d5029206661696c65640a006c61"
        "6d6264616c6574207374726963743a2063616e6e6f74206578656320000a000000000000000000000000000000000000"
    )),
}

_BASE = 0x400000
_HEADERS = 64 + 2 * 56  # the ELF header, PT_LOAD and PT_GNU_STACK
_MFD_CLOEXEC, _MFD_ALLOW_SEALING, _MFD_EXEC = 0x1, 0x2, 0x10
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def build(machine: str, program: bytes) -> bytes:
    """The helper for `machine`, loading `program` (a seccomp BPF program; b"": none).
    KeyError if there is no code for `machine`."""
    e_machine, code = CODE[machine]
    filter_at = _BASE + _HEADERS + len(code)
    count = len(program) // 8
    code = code[:-16] + struct.pack("<HxxxxxxQ", count, filter_at if count else 0)
    size = _HEADERS + len(code) + len(program)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, e_machine, 1, _BASE + _HEADERS, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, RW
    return header + load + stack + code + program


def load(machine: str, program: bytes) -> int:
    """A sealed, close-on-exec memfd holding the helper; OSError if none can be made, KeyError
    if there is no code for `machine`."""
    image = build(machine, program)
    try:
        fd = os.memfd_create("lambdalet-strict", _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError:  # a kernel before 6.3 knows no MFD_EXEC (and makes memfds executable anyway)
        fd = os.memfd_create("lambdalet-strict", _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    try:
        os.write(fd, image)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd
