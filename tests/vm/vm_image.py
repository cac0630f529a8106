"""The guest the cgroup v2 tests boot: Debian's own kernel and a busybox initramfs, built once and
cached under the user's cache directory ($XDG_CACHE_HOME/lambdalet/vm/<kernel release>).

* kernel: `apt-get download linux-image-<release>` (the release `linux-image-amd64` depends on,
  unless LAMBDALET_VM_KERNEL names one) unpacked with `dpkg-deb -x`: its `vmlinuz` and the modules
  that reach the host's tree over virtio-9p (MODULES, in load order);
* initramfs (a newc cpio written here): busybox-static, those modules, and INIT, which mounts the
  host's `/` read-only over 9p, a writable 9p share for results, cgroup2 with every controller at
  /sys/fs/cgroup, and runs, chrooted into the host's tree, the command given on the kernel
  command line (base64, `lambdalet_run=`). Its exit status goes to the results share; then the
  guest powers off.

The guest sees the host's tree as it is: the host's Python and a checkout run unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULES = ("netfs", "fscache", "9pnet", "9p", "virtio_ring", "virtio", "virtio_pci_modern_dev",
           "virtio_pci_legacy_dev", "virtio_pci", "9pnet_virtio")
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
HOST = "/mnt/host"  # the host's tree, inside the guest, before the chroot
RESULTS = "/tmp/vm-results"  # the writable share, inside the chroot

# The guest's PID 1. `lambdalet_show`, if given, names directories (comma-separated) of the host's
# that the guest would not show an unprivileged user otherwise: under a parent others cannot enter
# (pyenv in root's 0700 home, a `mktemp -d` checkout), or under /tmp (the guest's own tmpfs). They
# are bound back over a 0755 tmpfs, so that user reaches the interpreter and the checkout. Nothing
# of the host changes.
INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in {" ".join(MODULES)}; do insmod /modules/$module.ko || echo "lambdalet-vm: insmod $module failed"; done
mkdir -p {HOST}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 host {HOST} || echo "lambdalet-vm: no host share"
mount -t proc proc {HOST}/proc
mount -t sysfs sysfs {HOST}/sys
mount -t cgroup2 cgroup2 {HOST}/sys/fs/cgroup
mount -t devtmpfs devtmpfs {HOST}/dev
shown=0
for path in $(echo "$lambdalet_show" | tr , ' '); do
    shown=$((shown + 1))
    mkdir -p /shown/$shown
    mount --bind {HOST}$path /shown/$shown
done
mount -t tmpfs -o mode=1777 tmpfs {HOST}/tmp
mount -t tmpfs -o mode=755 tmpfs {HOST}/run
mkdir -p {HOST}/dev/shm {HOST}{RESULTS}
mount -t tmpfs -o mode=1777 tmpfs {HOST}/dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results {HOST}{RESULTS} || echo "lambdalet-vm: no results share"
shown=0
for path in $(echo "$lambdalet_show" | tr , ' '); do
    shown=$((shown + 1))
    parent=$(dirname $path)
    mkdir -p {HOST}$parent
    grep -q " {HOST}$parent tmpfs " /proc/mounts || mount -t tmpfs -o mode=755 tmpfs {HOST}$parent
    mkdir -p {HOST}$path
    mount --move /shown/$shown {HOST}$path
done
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "$lambdalet_run" | base64 -d > /command
echo "lambdalet-vm: running the command"
chroot {HOST} /bin/sh -c "$(cat /command)"
echo $? > {HOST}{RESULTS}/exit-status
sync
echo "lambdalet-vm: done"
poweroff -f
"""


@dataclass(frozen=True, slots=True)
class Image:
    kernel: Path
    initrd: Path
    release: str


class Unavailable(Exception):
    """What the image needs cannot be had here (the reason is the message)."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lambdalet" / "vm"


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise Unavailable(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def kernel_package() -> str:
    """The Debian kernel package to boot: LAMBDALET_VM_KERNEL, or what linux-image-amd64 depends on."""
    named = os.environ.get("LAMBDALET_VM_KERNEL")
    if named:
        return named
    for line in _run(["apt-cache", "depends", "linux-image-amd64"]).splitlines():
        kind, _, package = line.strip().partition(": ")
        if kind == "Depends" and package.startswith("linux-image-"):
            return package
    raise Unavailable("apt-cache names no kernel for linux-image-amd64")


def busybox() -> bytes:
    """busybox-static's binary (a dynamically linked busybox cannot run in the initramfs)."""
    for path in BUSYBOX:
        if os.path.exists(path):
            binary = Path(path).read_bytes()
            if b"ld-linux" not in binary[:4096]:  # no program interpreter: static
                return binary
    raise Unavailable("no static busybox (apt-get install busybox-static)")


def build(root: Path | None = None) -> Image:
    """The cached image, built first if missing. Raises Unavailable with the reason."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise Unavailable("needs Debian's apt-get and dpkg-deb to fetch a kernel")
    package = kernel_package()
    release = package.removeprefix("linux-image-")
    # A new init or module list is a new image.
    recipe = hashlib.sha256((INIT + " ".join(MODULES)).encode()).hexdigest()[:12]
    directory = (root or cache_root()) / f"{release}-{recipe}"
    image = Image(directory / "vmlinuz", directory / "initrd.gz", release)
    if image.kernel.exists() and image.initrd.exists():
        return image
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lambdalet-vm-", dir=directory) as scratch:
        scratch_path = Path(scratch)
        os.chmod(scratch_path, 0o755)  # apt-get download's _apt user writes here when it can
        _run(["apt-get", "download", package], cwd=scratch_path)
        [deb] = scratch_path.glob("*.deb")
        unpacked = scratch_path / "x"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        [vmlinuz] = (unpacked / "boot").glob("vmlinuz-*")
        modules = {}
        for name in MODULES:
            found = list((unpacked / "lib" / "modules").glob(f"*/kernel/**/{name}.ko"))
            if not found:
                raise Unavailable(f"{package} has no module {name}.ko")
            modules[name] = found[0].read_bytes()
        initrd = _initramfs(busybox(), modules)
        shutil.copyfile(vmlinuz, directory / "vmlinuz.part")
        (directory / "initrd.gz.part").write_bytes(initrd)
    os.replace(directory / "vmlinuz.part", image.kernel)
    os.replace(directory / "initrd.gz.part", image.initrd)
    return image


def _initramfs(busybox_binary: bytes, modules: dict[str, bytes]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "proc", "sys", "mnt", "modules", "tmp"):
        archive.add(directory, 0o040755)
    archive.add("dev/console", 0o020600, rdev=(5, 1))
    archive.add("bin/busybox", 0o100755, busybox_binary)
    for name, data in modules.items():
        archive.add(f"modules/{name}.ko", 0o100644, data)
    archive.add("init", 0o100755, INIT.encode())
    return gzip.compress(archive.finish(), compresslevel=6)


class _Cpio:
    """The "newc" cpio format the kernel unpacks as its initramfs (the kernel's
    Documentation/driver-api/early-userspace/buffer-format.rst)."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.inode += 1
        self.out.write(b"070701" + b"".join(b"%08X" % value for value in fields) + encoded)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()
