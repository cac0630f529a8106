"""A function's or layer's code as a directory on this machine, the way Lambda unpacks it.

* A directory is used as it is.
* A `.zip` (or `.jar`) is extracted once, with its files' modes and symbolic links, into the cache
  directory keyed by a hash of its bytes (`$XDG_CACHE_HOME/lambdalet/code/<sha256>`, else
  `~/.cache/lambdalet/...`): a changed archive is a new directory, an unchanged one costs a hash.
* Inline code (`InlineCode`, `Code.ZipFile`) is written once to the cache as Lambda names it:
  `index.py` for Python, `index.js` for Node.js, the only runtimes CloudFormation takes it for.

`missing_handler` says when a handler's module is not where the runtime will look for it, for the
runtimes whose rule is known (Python: the code and the layers' `python` directories; Node.js: the
code), so a wrong `Handler` is said when the template is read and not only at the first invoke.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

from .errors import Unresolved

_ARCHIVES = (".zip", ".jar")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lambdalet"


def local(path: Path, what: str, line: int | None) -> Path:
    """The directory `path` (`what`, as the template names it) stands for: itself, or where its
    archive is extracted."""
    if path.is_dir():
        return path
    if path.is_file() and path.suffix.lower() in _ARCHIVES:
        return extracted(path, what, line)
    if path.exists():
        raise Unresolved(f"{what} is neither a directory nor a .zip file ({path})", line)
    raise Unresolved(f"{what}: no such directory or .zip file ({path})", line)


def extracted(archive: Path, what: str, line: int | None) -> Path:
    try:
        with archive.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
        target = cache_dir() / "code" / digest
        if target.is_dir():
            return target
        with zipfile.ZipFile(archive) as bundle:
            return _publish(target, lambda staging: _extract(bundle, staging))
    except (OSError, zipfile.BadZipFile) as exc:
        raise Unresolved(f"{what} cannot be extracted ({archive}): {exc}", line) from None


def unpacked(data: bytes, digest: str) -> Path:
    """A zip held in memory (the deployment package an emulator such as moto keeps), extracted once
    into the same cache as an archive on disk, by its SHA-256 `digest` (hex); BadZipFile or OSError
    when it cannot be."""
    target = cache_dir() / "code" / digest
    if target.is_dir():
        return target
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        return _publish(target, lambda staging: _extract(bundle, staging))


def inline(source: str, runtime_id: str | None, line: int | None) -> Path:
    if runtime_id and runtime_id.startswith("python"):
        name = "index.py"
    elif runtime_id and runtime_id.startswith("nodejs"):
        name = "index.js"
    else:
        raise Unresolved(f"inline code (ZipFile) is taken for Node.js and Python runtimes only, not "
                         f"{runtime_id or 'a function without a Runtime'}", line)
    digest = hashlib.sha256(f"{name}\0{source}".encode()).hexdigest()
    target = cache_dir() / "inline" / digest
    if target.is_dir():
        return target
    try:
        return _publish(target, lambda staging: (staging / name).write_text(source))
    except OSError as exc:
        raise Unresolved(f"inline code cannot be written to {target}: {exc}", line) from None


def _publish(target: Path, fill) -> Path:
    """Fill a new directory and move it into place whole, so that a reader never sees it half
    written, and two processes filling the same one both end with it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        fill(staging)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(bundle: zipfile.ZipFile, root: Path) -> None:
    """Every entry under `root` (none outside it), with the mode and symbolic links the archive
    records, as Lambda extracts a deployment package."""
    for entry in bundle.infolist():
        parts = [part for part in entry.filename.replace("\\", "/").split("/") if part not in ("", ".")]
        if not parts or ".." in parts:
            continue
        path = root.joinpath(*parts)
        mode = entry.external_attr >> 16
        if entry.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(mode):
            os.symlink(bundle.read(entry).decode(), path)
            continue
        with bundle.open(entry) as source, path.open("wb") as destination:
            shutil.copyfileobj(source, destination)
        if mode & 0o777:
            path.chmod(mode & 0o777)


def missing_handler(handler: str, runtime_id: str | None, code: Path, layers: list[Path]) -> str | None:
    """Why the runtime will not find the handler's module (None: found, or a runtime not checked)."""
    language = next((name for name in ("python", "nodejs") if runtime_id and runtime_id.startswith(name)), None)
    if language is None:
        return None
    module, dot, _ = handler.rpartition(".")
    if not dot or not module:
        return f"Handler {handler!r} is not module.function: invoking it fails with Runtime.MalformedHandlerName"
    if language == "nodejs":
        if any((code / f"{module}{suffix}").is_file() for suffix in (".js", ".mjs", ".cjs")):
            return None
        return (f"Handler {handler}: no module {module}.js, .mjs or .cjs in {code}: invoking it fails with "
                "Runtime.ImportModuleError")
    module_path = module.replace(".", "/")
    version = runtime_id.removeprefix("python")
    roots = [code] + [root for layer in layers
                      for root in (layer / "python", layer / "python" / "lib" / f"python{version}" / "site-packages")]
    for root in roots:
        base = root / module_path
        if (base.with_name(base.name + ".py").is_file() or (base / "__init__.py").is_file()
                or base.with_name(base.name + ".pyc").is_file() or any(base.parent.glob(f"{base.name}.*.so"))):
            return None
    return (f"Handler {handler}: no module {module} ({module_path}.py) in {code}"
            + (" or its layers" if layers else "") + ": invoking it fails with Runtime.ImportModuleError")
