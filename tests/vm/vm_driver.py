"""Boot the guest of vm_image.py under QEMU's software emulation (TCG: these machines' /dev/kvm
cannot run an ordinary guest kernel) and run one command in it, as root, in the host's tree.

The host's `/` is shared read-only; `results` (a host directory) is the guest's writable
RESULTS share, where the command leaves what it found and the guest's init its exit status. The
serial console is kept as `console.log` there. QEMU is killed on the way out, whatever happens.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vm_image import Image

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True, slots=True)
class Run:
    exit_status: int | None  # None: the guest never got to the end of the command
    console: str


def closed_ancestor(path: str) -> str | None:
    """The first directory on `path`'s way that others cannot enter, with its next component
    (what the guest's init shows an unprivileged user), or None."""
    parts = Path(path).resolve().parts
    for index in range(1, len(parts) - 1):
        directory = os.path.join(*parts[:index + 1])
        if not os.stat(directory).st_mode & 0o001:
            return os.path.join(directory, parts[index + 1])
    return None


def to_show(*paths: str) -> str | None:
    """The guest's `lambdalet_show` for `paths` (an interpreter, a checkout), or None: each one's
    closed ancestor's child, or the directory under /tmp holding it (the guest's /tmp is its own)."""
    found = {}
    for path in paths:
        resolved = Path(path).resolve()
        shown = closed_ancestor(str(resolved))
        if shown is None and resolved.parts[1:2] == ("tmp",) and len(resolved.parts) > 2:
            shown = os.path.join("/tmp", resolved.parts[2])
        if shown:
            found[shown] = None
    return ",".join(found) or None


def qemu_argv(image: Image, command: str, results: Path, *, memory_mb: int = 1024, cpus: int = 2,
              show: str | None = None) -> list[str]:
    cmdline = ["console=ttyS0", "panic=-1", "loglevel=4",
               "lambdalet_run=" + base64.b64encode(command.encode()).decode()]
    if show:
        cmdline.append(f"lambdalet_show={show}")
    return [QEMU, "-accel", "tcg", "-M", "q35", "-cpu", "max", "-smp", str(cpus), "-m", f"{memory_mb}M",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", " ".join(cmdline),
            "-fsdev", "local,id=host,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=host,mount_tag=host",
            "-fsdev", f"local,id=results,path={results},security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=results,mount_tag=results"]


def run(image: Image, command: str, results: Path, *, timeout: float, show: str | None = None) -> Run:
    """Boot, run `command` (a /bin/sh command line; RESULTS is where `results` is seen), power off.
    A guest still running after `timeout` seconds is killed (exit_status None)."""
    if shutil.which(QEMU) is None:
        raise FileNotFoundError(QEMU)
    console = results / "console.log"
    status_file = results / "exit-status"
    with open(console, "wb") as log:
        qemu = subprocess.Popen(qemu_argv(image, command, results, show=show), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if qemu.poll() is None:
                os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()
    text = console.read_text(errors="replace")
    try:
        status = int(status_file.read_text().strip())
    except (OSError, ValueError):
        status = None
    return Run(status, text)

