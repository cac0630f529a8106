"""A function's layers, shown at /opt as Lambda shows them.

Lambda extracts a function's layers (at most 5) into /opt in the order they are listed, a later
layer's files replacing an earlier one's; /opt is read-only to the runtime. Its runtimes find what
layers bring through fixed paths: /opt/bin on PATH, /opt/lib on LD_LIBRARY_PATH, /opt/python (and
/opt/python/lib/python3.X/site-packages) on a Python runtime's sys.path, /opt/extensions for
external extensions, /opt/bootstrap for a custom runtime.

Here a layer is a host directory holding what its zip would extract. In a private mount namespace
(isolation standard and strict, sandbox/isolation.py) one layer is bound read-only at /opt, and
several make a read-only overlayfs, whose `lowerdir=` lists the top layer first (the reverse of
Lambda's order). Without one (isolation none) /opt cannot be shown: `search_paths` puts the
layers' own directories where /opt's would be, in the same precedence.

Every layer's `extensions/` is seen at /opt/extensions: each executable there is an external
extension, started with the runtime (`extensions` finds them; a later layer's file of the same name
hides an earlier one's). At isolation none they are started from the layers' directories.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

OPT = "/opt"
MAX_LAYERS = 5  # Lambda's limit per function


EXTENSIONS = "extensions"


@dataclass(frozen=True, slots=True)
class ExtensionFile:
    """An external extension: its name (its file name, under which it registers) and its path on
    the host."""

    name: str
    path: str


def extensions(roots: tuple[str, ...] | list[str]) -> tuple[ExtensionFile, ...]:
    """The external extensions of `roots` (layers in Lambda's order, or one /opt): every executable
    file in a root's extensions/ directory, by name, a later root's hiding an earlier one's."""
    found: dict[str, str] = {}
    for root in roots:
        directory = os.path.join(root, EXTENSIONS)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                found[name] = path
    return tuple(ExtensionFile(name, found[name]) for name in sorted(found))


def problem(layers: tuple[str, ...] | list[str]) -> str | None:
    """What is wrong with `layers` (absolute host paths, in Lambda's order), or None."""
    if len(layers) > MAX_LAYERS:
        return f"{len(layers)} layers: Lambda allows at most {MAX_LAYERS} per function"
    for layer in layers:
        if not os.path.isdir(layer):
            return f"layer {layer} is not a directory"
        # overlayfs separates lowerdir= entries with ':' and mount options with ','.
        if any(c in layer for c in ":,"):
            return f"layer {layer}: a layer's path cannot contain ':' or ','"
    return None


def opt_mount(layers: tuple[str, ...]) -> tuple[str, str, str, str] | None:
    """The fstab row that shows `layers` at /opt, read-only (None without layers). The mount point
    is made on the host if it is missing (an empty directory, as the probe makes /var/task)."""
    if not layers:
        return None
    if len(layers) == 1:
        return (layers[0], OPT, "none", "bind,ro,X-mount.mkdir")
    return ("overlay", OPT, "overlay", "ro,X-mount.mkdir,lowerdir=" + ":".join(reversed(layers)))


def host_path(layers: tuple[str, ...], path: str) -> str:
    """Where the file the runtime would see at `path` (under /opt) is on the host: in the last
    layer that has it, as Lambda's extraction order leaves it. Any other path is returned as is."""
    if path != OPT and not path.startswith(OPT + "/"):
        return path
    rest = path[len(OPT):]
    for layer in reversed(layers):
        if os.path.lexists(layer + rest):
            return layer + rest
    return path


def opt_path(layers: tuple[str, ...], path: str) -> str:
    """`host_path`'s inverse: a path inside one of `layers` as the runtime sees it, under /opt."""
    for layer in layers:
        root = layer.rstrip("/")
        if path == root or path.startswith(root + "/"):
            return OPT + path[len(root):]
    return path


def inside(layers: tuple[str, ...], path: str) -> bool:
    return opt_path(layers, path) != path


def search_paths(layers: tuple[str, ...], python: str | None = None) -> dict[str, list[str]]:
    """Without /opt (isolation none): the layers' directories that stand in for /opt/bin (PATH),
    /opt/lib (LD_LIBRARY_PATH) and /opt/python (PYTHONPATH, site-packages of Python `python`
    ("3.12"; default this interpreter's version) first, as the managed runtimes order them), each
    list later layers first so that a later layer's file is found first, as at /opt. Only
    directories that exist."""
    version = "python" + (python or "{}.{}".format(*sys.version_info[:2]))
    top_first = list(reversed(layers))

    def existing(*relative: str) -> list[str]:
        return [path for rel in relative for layer in top_first
                if os.path.isdir(path := os.path.join(layer, rel))]

    return {
        "PATH": existing("bin"),
        "LD_LIBRARY_PATH": existing("lib"),
        "PYTHONPATH": existing(f"python/lib/{version}/site-packages", "python"),
    }


def host_command(layers: tuple[str, ...], argv: list[str], path: str) -> list[str]:
    """The runtime command as the host must see it to check and start it: an /opt path (a custom
    runtime's /opt/bootstrap, a layer's /opt/bin/python) by the layer file it is, and a bare
    name found only in a layer's bin (PATH's /opt/bin) by that file. Shown at /opt again inside
    the mount namespace (PrivateFilesystem.present)."""
    if not layers or not argv:
        return list(argv)
    argv = [host_path(layers, arg) for arg in argv]
    if "/" not in argv[0] and shutil.which(argv[0], path=path) is None:
        for layer in reversed(layers):
            if shutil.which(argv[0], path=os.path.join(layer, "bin")):
                argv[0] = os.path.join(layer, "bin", argv[0])
                break
    return argv


def in_layers(layers: tuple[str, ...], path: str | None) -> bool:
    """Whether `path` (a script's #! interpreter: /opt/bin/python) lives in a layer: the host
    cannot judge it at that path."""
    return bool(layers and path) and host_path(layers, path) != path
