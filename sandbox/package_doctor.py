"""`lambdalet doctor --package`: will this deployment package import on Lambda?

    lambdalet doctor --package DIR|ZIP [--layer DIR|ZIP ...] --runtime python3.12 [--arch x86_64|arm64]
                     [--handler app.handler] [--json]

It reads the package (a directory, or the .zip you would upload) and its layers, never runs
anything, and says, each problem with its fix:

* every native extension and shared library (ELF, read with pyelftools): built for the function's
  architecture; the highest GLIBC_/GLIBCXX_/CXXABI_ symbol versions it needs against the runtime's
  operating system (Amazon Linux 2, glibc 2.26 and GCC 7's libstdc++, for python3.9-3.11 and
  nodejs18.x; Amazon Linux 2023, glibc 2.34 and GCC 11's, for python3.12+, nodejs20.x+ and
  provided.al2023: sandbox/runtimes.py); the CPython ABI tag in its file name
  (`.cpython-312-x86_64-linux-gnu.so`) against the runtime's Python and the architecture; the
  libraries it needs that neither the runtime's OS nor the package and its layers have (a warning:
  that list is approximate);
* wheel metadata (`*.dist-info/WHEEL`, `METADATA`): platform tags naming another system (macOS,
  Windows, musllinux), another architecture or a newer glibc (`manylinux_2_35_x86_64`), a CPython
  tag for another version, and `Requires-Python` against the runtime's;
* package limits: 250 MB unzipped (function and layers together; sizes as the files say, so a
  sparse file counts whole) and, for a .zip, 50 MB for a direct upload (larger ones go through S3);
* permissions: files and directories the runtime's user (not root, not the owner) cannot read;
* the handler (`--handler`, Python runtimes): whether its module is in the package or a layer, and
  defines the function.

Exit status 0 when it will import (warnings allowed), 1 when it will not, 2 when a path cannot be
read; `--json` prints the same as one object (`will_run`, `runtime`, `arch`, `unzipped_bytes`,
`zipped_bytes`, `files`, `native_files`, `findings: [{severity, check, path, message, fix}]`).

The server runs the same check on a function's code and layers when it starts, and says each
finding once, as a warning (sandbox/managed.py's caller, runtime_api/server.py).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec

from . import doctor
from .doctor import Severity
from .runtimes import Family, Runtime

UNZIPPED_LIMIT = 262_144_000  # 250 MB: function and layers, unzipped ("Lambda quotas")
ZIPPED_LIMIT = 52_428_800  # 50 MB: a .zip uploaded directly
ELF_MAGIC = b"\x7fELF"
MACHINE_TAGS = {"x86_64": "x86_64", "arm64": "aarch64"}
# Libraries beyond glibc's that the managed runtimes' images carry (approximate, like doctor's list
# for provided.al2023): what CPython and Node.js themselves link against.
RUNTIME_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1", "libresolv.so.2",
    "libcrypt.so.1", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1", "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1", "linux-vdso.so.1", "libffi.so.6", "libffi.so.8", "libexpat.so.1", "libbz2.so.1",
    "liblzma.so.5", "libsqlite3.so.0", "libssl.so.10", "libcrypto.so.10", "libssl.so.3", "libcrypto.so.3",
})
# The wheel platform tags' glibc: manylinux1 = 2.5, manylinux2010 = 2.12, manylinux2014 = 2.17 (PEP 600).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class Finding(msgspec.Struct, frozen=True):
    severity: Severity  # ERROR: it will not import; WARNING: it may not
    check: str  # native, glibc, abi, libraries, wheel, requires-python, size, permissions, handler
    path: str  # the file it is about, relative to the package or layer ("" for the whole)
    message: str
    fix: str = ""


class PackageDiagnosis(msgspec.Struct, frozen=True):
    package: str
    runtime: str
    arch: str
    unzipped_bytes: int
    zipped_bytes: int | None  # None for a directory
    files: int
    native_files: int
    findings: tuple[Finding, ...]

    @property
    def will_run(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a package or layer: its path inside it, its size, its mode (None when a zip
    does not say), and how to read it."""

    path: str
    size: int
    mode: int | None
    read: Callable[[], bytes]
    head: Callable[[], bytes]


def entries(source: str, opened: contextlib.ExitStack) -> Iterator[Entry]:
    """The files (and directories, with their modes) of a package directory or .zip (kept open in
    `opened`, for reading its members later). OSError if it cannot be read."""
    if os.path.isdir(source):
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in (*dirs, *sorted(files)):
                full = os.path.join(root, name)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    continue
                relative = os.path.relpath(full, source)
                yield Entry(relative, 0 if stat.S_ISDIR(st.st_mode) else st.st_size, st.st_mode,
                            _reader(full), _reader(full, 4))
        return
    try:
        archive = opened.enter_context(zipfile.ZipFile(source))
    except zipfile.BadZipFile as exc:
        raise OSError(f"not a directory nor a .zip: {exc}") from None
    for info in archive.infolist():
        mode = info.external_attr >> 16 if info.create_system == 3 and info.external_attr >> 16 else None
        if info.is_dir() and mode is not None:
            mode |= stat.S_IFDIR
        yield Entry(info.filename.rstrip("/"), 0 if info.is_dir() else info.file_size, mode,
                    _member(archive, info), _member(archive, info, 4))


def _reader(path: str, limit: int = -1) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read(limit)
    return read


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int = -1) -> Callable[[], bytes]:
    def read() -> bytes:
        with archive.open(info) as f:
            return f.read(limit)
    return read


def diagnose_package(package: str, runtime: Runtime, *, arch: str = "x86_64", layers: tuple[str, ...] = (),
                     handler: str | None = None) -> PackageDiagnosis:
    """Judge `package` (and `layers`, in Lambda's order) for `runtime` on `arch`. Raises OSError
    when one cannot be read."""
    with contextlib.ExitStack() as opened:
        return _diagnose(package, runtime, arch, layers, handler, opened)


def _diagnose(package: str, runtime: Runtime, arch: str, layers: tuple[str, ...], handler: str | None,
              opened: contextlib.ExitStack) -> PackageDiagnosis:
    findings: list[Finding] = []
    sources = [("", package), *((f"layer {layer}: ", layer) for layer in layers)]
    all_entries = {label: list(entries(source, opened)) for label, source in sources}
    shipped = {os.path.basename(e.path) for found in all_entries.values() for e in found}
    unzipped = native = files = 0
    for label, found in all_entries.items():
        for entry in found:
            where = label + entry.path
            if entry.mode is not None and stat.S_ISDIR(entry.mode):
                _judge_mode(where, entry.mode, True, findings)
                continue
            files += 1
            unzipped += entry.size
            if entry.mode is not None:
                _judge_mode(where, entry.mode, False, findings)
            name = os.path.basename(entry.path)
            if entry.path.endswith(".dist-info/WHEEL"):
                _judge_wheel(where, entry.read().decode(errors="replace"), runtime, arch, findings)
            elif entry.path.endswith(".dist-info/METADATA") and runtime.family is Family.PYTHON:
                _judge_requires_python(where, entry.read().decode(errors="replace"), runtime, findings)
            elif _maybe_native(name, entry.size):
                if _EXTENSION.search(name):
                    _judge_abi_tag(where, name, runtime, arch, findings)
                if entry.head() == ELF_MAGIC:
                    native += 1
                    _judge_native(where, entry.read(), runtime, arch, shipped, findings)
    _judge_sizes(package, unzipped, layers, findings)
    if handler and runtime.family is Family.PYTHON:
        _judge_handler(handler, all_entries, findings)
    zipped = os.path.getsize(package) if not os.path.isdir(package) else None
    if zipped is not None and zipped > ZIPPED_LIMIT:
        findings.append(Finding(Severity.WARNING, "size", "", f"is {_mb(zipped)} zipped: over the {_mb(ZIPPED_LIMIT)} Lambda "
                                "takes in a direct upload", "upload it to S3 and point the function at it "
                                "(`aws lambda update-function-code --s3-bucket ... --s3-key ...`; SAM and CDK do)"))
    return PackageDiagnosis(package, runtime.id, arch, unzipped, zipped, files, native, tuple(findings))


def _maybe_native(name: str, size: int) -> bool:
    """Worth reading the first bytes of: shared objects and extension modules, and files without a
    suffix (programs)."""
    return size >= 64 and (".so" in name or "." not in name or bool(_EXTENSION.search(name)))


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"


def _judge_mode(where: str, mode: int, is_dir: bool, findings: list[Finding]) -> None:
    needed = 0o005 if is_dir else 0o004
    if mode & needed != needed:
        kind = "directory" if is_dir else "file"
        findings.append(Finding(
            Severity.ERROR, "permissions", where, f"the runtime's user cannot {'enter' if is_dir else 'read'} this {kind} "
            f"(mode {stat.S_IMODE(mode):04o}): Lambda runs the function as a user that is neither root nor its owner",
            f"`chmod {'755' if is_dir else '644'}` it before zipping (`chmod -R a+rX .`)"))


def _judge_native(where: str, data: bytes, runtime: Runtime, arch: str, shipped: set[str],
                  findings: list[Finding]) -> None:
    try:
        facts = doctor.elf_facts(io.BytesIO(data))
    except Exception as exc:  # pyelftools' many ways of saying "damaged"
        findings.append(Finding(Severity.ERROR, "native", where, f"is a damaged ELF file ({exc})", "rebuild or reinstall it"))
        return
    pip = _pip_fix(runtime, arch)
    if facts.elf_class != 64 or facts.machine != arch or facts.big_endian:
        findings.append(Finding(Severity.ERROR, "native", where, f"is built for {facts.machine} ({facts.elf_class}-bit), but the "
                                f"function's architecture is {arch}: importing it fails with 'wrong ELF class' or "
                                "'cannot open shared object file'", pip))
        return
    system = runtime.os
    for family, limit, what in (("GLIBC", system.glibc, f"glibc {doctor.dotted(system.glibc)}"),
                                ("GLIBCXX", system.glibcxx, f"libstdc++ GLIBCXX_{doctor.dotted(system.glibcxx)}"),
                                ("CXXABI", system.cxxabi, f"libstdc++ CXXABI_{doctor.dotted(system.cxxabi)}")):
        highest = doctor.highest_version(facts.versions, family)
        if highest is None or highest[0] <= limit:
            continue
        if family != "GLIBC" and "libstdc++.so.6" in shipped:
            continue  # the package brings its own libstdc++ (auditwheel puts it in <package>.libs)
        too_new = sorted({v for v in facts.versions if (h := doctor.highest_version((v,), family)) and h[0] > limit})
        symbols = doctor.symbols_needing(io.BytesIO(data), frozenset(too_new))
        named = [f"{version} ({', '.join(symbols.get(version, ())[:3])})" if symbols.get(version) else version
                 for version in too_new]
        findings.append(Finding(
            Severity.ERROR, "glibc", where, f"needs {'; '.join(named)}, but {runtime.id} runs on {system.name} with {what}: "
            f"importing it fails with \"version `{highest[1]}' not found\"",
            f"install a wheel built for glibc {doctor.dotted(system.glibc)} or older: {pip}; or build it on "
            f"{system.name}"))
    missing = [lib for lib in facts.needed if lib not in RUNTIME_LIBRARIES and lib not in shipped
               and not lib.startswith("libpython")]
    if missing:
        findings.append(Finding(Severity.WARNING, "libraries", where, f"needs {', '.join(missing)}, which neither {runtime.id}'s "
                                f"{system.name} nor the package and its layers seem to have (the list of the "
                                "runtime's libraries is approximate)",
                                "ship them in the package's lib/ or a layer's lib/ (on LD_LIBRARY_PATH), or use a "
                                "wheel that bundles them (manylinux wheels do)"))


_EXTENSION = re.compile(r"\.(so|pyd|dylib)$")  # a Python extension module, for some system
_ABI_TAG = re.compile(r"\.cpython-(\d)(\d+)[a-z]*-([a-z0-9_]+)-linux-(gnu|musl)\.so(?:\.|$)")


def _judge_abi_tag(where: str, name: str, runtime: Runtime, arch: str, findings: list[Finding]) -> None:
    """The system an extension module's file name says it is built for."""
    pip = _pip_fix(runtime, arch)
    found = _ABI_TAG.search(name)
    if found is None:
        other = ("macOS" if re.search(r"-darwin\.so$|\.dylib$", name) else "Windows" if name.endswith(".pyd") else None)
        if other is not None:
            findings.append(Finding(Severity.ERROR, "abi", where, f"is a {other} extension module", pip))
        return
    major, minor, machine, libc = found.groups()
    if runtime.family is Family.PYTHON and (int(major), int(minor)) != runtime.version:
        findings.append(Finding(Severity.ERROR, "abi", where, f"is built for CPython {major}.{minor}, but the function runs "
                                f"Python {runtime.python}: it is not found by import (Runtime.ImportModuleError)", pip))
    if machine != MACHINE_TAGS[arch]:
        findings.append(Finding(Severity.ERROR, "abi", where, f"is built for {machine}, but the function's architecture is "
                                f"{arch}", pip))
    if libc == "musl":
        findings.append(Finding(Severity.ERROR, "abi", where, f"is built for musl (Alpine); {runtime.os.name} has glibc", pip))


def _pip_fix(runtime: Runtime, arch: str) -> str:
    machine = MACHINE_TAGS[arch]
    platform = "manylinux2014" if runtime.os.glibc < (2, 28) else "manylinux_2_28"
    python = f" --python-version {runtime.python}" if runtime.family is Family.PYTHON else ""
    return (f"`pip install --platform {platform}_{machine} --only-binary=:all:{python} --target <package> "
            "<requirement>`")


def _judge_wheel(where: str, text: str, runtime: Runtime, arch: str, findings: list[Finding]) -> None:
    pip = _pip_fix(runtime, arch)
    tags = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("Tag:")]
    problems: list[str] = []
    for tag in tags:
        python, _, platform = (tag.split("-") + ["", "", ""])[:3]
        if platform == "any":
            return  # a tag that runs anywhere
        problem = _platform_problem(platform, runtime, arch) or _python_problem(python, runtime)
        if problem is None:
            return  # one tag that fits is enough
        problems.append(problem)
    if problems:
        project = os.path.basename(os.path.dirname(where)).removesuffix(".dist-info")
        name, _, version = project.partition("-")
        requirement = f"{name}=={version}" if version else name
        findings.append(Finding(Severity.ERROR, "wheel", where, f"was installed from a wheel for {problems[0]}",
                                pip.replace("<requirement>", requirement)))


def _platform_problem(platform: str, runtime: Runtime, arch: str) -> str | None:
    machine = MACHINE_TAGS[arch]
    for prefix, system in (("macosx", "macOS"), ("win", "Windows"), ("musllinux", "musl libc (Alpine)")):
        if platform.startswith(prefix):
            return f"{system} ({platform}), not {runtime.os.name}"
    legacy = next((v for k, v in LEGACY_MANYLINUX.items() if platform.startswith(k + "_")), None)
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if legacy is not None:
        glibc, tag_machine = legacy, platform.split("_", 1)[1]
    elif found is not None:
        glibc, tag_machine = (int(found[1]), int(found[2])), found[3]
    elif platform.startswith("linux_"):
        glibc, tag_machine = None, platform[len("linux_"):]
    else:
        return f"the platform {platform}"
    if tag_machine != machine:
        return f"{tag_machine} ({platform}), not {arch}"
    if glibc is not None and glibc > runtime.os.glibc:
        return (f"glibc {glibc[0]}.{glibc[1]} ({platform}), newer than {runtime.os.name}'s "
                f"{runtime.os.glibc[0]}.{runtime.os.glibc[1]}")
    return None


def _python_problem(python: str, runtime: Runtime) -> str | None:
    if runtime.family is not Family.PYTHON:
        return None
    for part in python.split("."):
        found = re.fullmatch(r"(cp|py)(\d)(\d*)", part)
        if found is None:
            continue
        if found[1] == "py" or not found[3]:
            return None
        if (int(found[2]), int(found[3])) == runtime.version:
            return None
    return f"{python.replace('cp', 'CPython ')}, not Python {runtime.python}"


def _judge_requires_python(where: str, text: str, runtime: Runtime, findings: list[Finding]) -> None:
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        if line.lower().startswith("requires-python:"):
            spec = line.partition(":")[2].strip()
            if not _python_satisfies(runtime.version, spec):
                findings.append(Finding(Severity.ERROR, "requires-python", where, f"requires Python {spec}, and the function "
                                        f"runs Python {runtime.python}", _pip_fix(runtime, "x86_64").replace(
                                            "<requirement>", "a version of it that supports that Python")))
            return


def _python_satisfies(version: tuple[int, ...], spec: str) -> bool:
    """Whether Python `version` (3, 12) meets a Requires-Python specifier, in PEP 440's forms that
    name a Python: the runtime's micro version moves with its updates, so only major.minor count."""
    have = tuple(version[:2])
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        found = re.fullmatch(r"(~=|===|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?", clause)
        if found is None:
            continue  # a form this reading does not know: not held against the package
        operator, number, wildcard = found.groups()
        full = tuple(int(part) for part in number.split("."))
        wanted = (full + (0,))[:2]
        if wildcard:
            ok = (have[:len(full)] == full) == (operator == "==")
        elif operator == "~=":  # compatible release: >= it, and the same up to its last component
            ok = have >= wanted and have[:len(full) - 1] == full[:len(full) - 1]
        else:
            ok = {"==": have == wanted, "===": have == wanted, "!=": have != wanted, "<=": have <= wanted,
                  ">=": have >= wanted, "<": have < wanted, ">": have > wanted}[operator]
        if not ok:
            return False
    return True


def _judge_sizes(package: str, unzipped: int, layers: tuple[str, ...], findings: list[Finding]) -> None:
    if unzipped > UNZIPPED_LIMIT:
        what = "the function and its layers are" if layers else "it is"
        findings.append(Finding(Severity.ERROR, "size", "", f"{what} {_mb(unzipped)} unzipped: over Lambda's {_mb(UNZIPPED_LIMIT)} "
                                "(deployment is refused)", "leave out what the function does not import (tests, "
                                "caches, the SDK Lambda bundles), strip debug symbols (`strip` on .so files), or "
                                "ship it as a container image (10 GB)"))


def _judge_handler(handler: str, all_entries: dict[str, list[Entry]], findings: list[Finding]) -> None:
    module, _, function = handler.rpartition(".")
    if not module or not function:
        findings.append(Finding(Severity.ERROR, "handler", "", f"handler {handler!r} is not module.function",
                                "name it as file.function, e.g. app.handler for app.py's handler"))
        return
    relative = module.replace(".", "/")
    places = [("", ""), *((label, "python/") for label in all_entries if label)]
    for label, root in places:
        for entry in all_entries[label]:
            path = entry.path
            if not path.startswith(root):
                continue
            inside = path[len(root):]
            if inside in (f"{relative}.py", f"{relative}/__init__.py"):
                return _judge_defines(label + path, entry.read(), function, handler, findings)
            if inside.startswith(relative + ".") and inside.endswith(".so"):
                return None  # a compiled module: its functions cannot be read here
    findings.append(Finding(Severity.ERROR, "handler", "", f"handler {handler}: no module {module} in the package or its "
                            f"layers' python/ (Runtime.ImportModuleError: No module named '{module}')",
                            f"put {relative}.py at the top of the package (not in a subdirectory of the zip)"))


def _judge_defines(where: str, source: bytes, function: str, handler: str, findings: list[Finding]) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        findings.append(Finding(Severity.ERROR, "handler", where, f"cannot be imported: {exc.msg} (line {exc.lineno}) "
                                "(Runtime.UserCodeSyntaxError)", "fix the syntax error"))
        return
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        if function in names:
            return
    findings.append(Finding(Severity.WARNING, "handler", where, f"handler {handler}: {function} is not defined at the top of "
                            f"the module (Runtime.HandlerNotFound, unless it is made some other way)",
                            f"define `def {function}(event, context):` in it"))


def render(d: PackageDiagnosis) -> str:
    """The report `lambdalet doctor --package` prints."""
    zipped = f", {_mb(d.zipped_bytes)} zipped" if d.zipped_bytes is not None else ""
    return "\n".join([
        f"{d.package}: {doctor.verdict([f.severity for f in d.findings], 'import', f'{d.runtime} ({d.arch})')}",
        f"  {d.files} files, {d.native_files} native, {_mb(d.unzipped_bytes)} unzipped{zipped}",
        *doctor.finding_lines([(f.severity, f"{f.path}: {f.message}" if f.path else f.message, f.fix)
                               for f in d.findings])])
