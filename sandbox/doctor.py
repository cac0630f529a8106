"""`lambdalet doctor`: will this bootstrap run on provided.al2023?

Usage:

    lambdalet doctor PATH [--arch x86_64|arm64] [--json]

PATH is the program Lambda starts: your `bootstrap` (a compiled program or a script), or a code
directory holding one. `--arch` is the function's architecture (default x86_64). doctor reads the
file, never runs it, and prints a verdict with one line per check, each problem with its fix:

    $ lambdalet doctor bootstrap
    bootstrap: will NOT run on provided.al2023 (x86_64): 1 problem
      ELF 64-bit x86_64, dynamically linked, interpreter /lib64/ld-linux-x86-64.so.2
      needs libc.so.6; highest versions required: GLIBC_2.36
      ok       is executable (mode 0755)
      ok       is built for x86_64, the function's architecture
      ok       uses glibc's loader /lib64/ld-linux-x86-64.so.2, which provided.al2023 has
      error    needs GLIBC_2.36 (arc4random), but provided.al2023 has glibc 2.34: the loader stops
               with "version `GLIBC_2.36' not found"
               fix: build it on provided.al2023 or amazonlinux:2023 (or any system with glibc <= 2.34),
               or target glibc 2.34 explicitly (`zig cc -target x86_64-linux-gnu.2.34`, ...), or link
               it statically (musl)
      ok       needs only libraries that provided.al2023 has or that ship with it

Exit status: 0 when it will run (warnings allowed), 1 when it will not, 2 when PATH cannot be read
or the command line is wrong, so `lambdalet doctor bootstrap` can gate a CI job. `--json` prints
the same facts and findings as one JSON object (`will_run`, `kind`, `machine`, `glibc`, ...,
`findings: [{severity, check, message, fix}]`).

What is checked:
* compiled programs (ELF): 64-bit, built for the function's architecture, a linked program (not a
  .o or a shared library), static or dynamic; for dynamic ones the loader (glibc's, not musl's or a
  Nix store path), the highest GLIBC_ symbol version required against AL2023's glibc 2.34, and
  GLIBCXX_/CXXABI_ against AL2023's libstdc++ (GCC 11: GLIBCXX_3.4.29, CXXABI_1.3.13), naming the
  symbols that need more; the libraries it needs that a base provided.al2023 lacks (a warning: the
  base list is approximate, and libraries shipped next to the bootstrap, in its lib/ or RUNPATH,
  count as present).
* scripts: the `#!` line (CRLF there makes exec fail with `/bin/sh^M: bad interpreter`), whether the
  interpreter exists on this machine (an error if not: lambdalet cannot start it either), and
  whether provided.al2023 has it. Only sh and bash (and /usr/bin/env) are in the image. Python,
  Node and friends are warnings, not errors: provided.al2023 ships none of them, but an image can
  `dnf install -y python3.12`, or a layer can put one in /opt/bin, and doctor cannot see either;
  the warning says so. CRLF in the body of a shell script is an error (`$'\\r': command not found`),
  in other languages a warning.
* every file: the executable bit (`chmod 755`); Lambda starts the bootstrap as a non-root user, so
  bits missing for "others" are a warning.

Cost: a first look at a program parses its headers and dynamic section with pyelftools, never the
whole file. Only a program that needs too new a glibc/libstdc++ has its dynamic symbol table read,
to name the symbols (the one step that grows with the program). Both are cached by (path, inode,
mtime, size), after which a call is a stat, a read of the first 64 KiB and the checks. A script is
judged from its first line and its bytes. Importing pyelftools costs more than any one check
(benchmarks/results/costs.md).

For the server: `entrypoint_problem(argv0)` gives the one-line reason a runtime command cannot be
started on this machine (the exec-level subset of these checks), or None.
"""

from __future__ import annotations

import array
import enum
import functools
import os
import platform
import re
import shutil
import stat
import sys

import msgspec
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .hostlimits import host_limit

IMAGE = "provided.al2023"
AL2023_GLIBC = (2, 34)
AL2023_GLIBCXX = (3, 4, 29)  # GCC 11's libstdc++
AL2023_CXXABI = (1, 3, 13)

ARCHES = ("x86_64", "arm64")
MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "arm64", "EM_386": "i386", "EM_ARM": "arm32",
            "EM_RISCV": "riscv", "EM_PPC64": "ppc64", "EM_S390": "s390x"}
# The dynamic loader each architecture's glibc programs name in PT_INTERP; AL2023 merges /lib64 into
# /usr/lib64 (and /lib into /usr/lib), so the /usr spellings exist too.
LOADERS = {
    "x86_64": ("/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"),
    "arm64": ("/lib/ld-linux-aarch64.so.1", "/lib64/ld-linux-aarch64.so.1",
              "/usr/lib/ld-linux-aarch64.so.1", "/usr/lib64/ld-linux-aarch64.so.1"),
}
# Libraries a base provided.al2023 has. Approximate: glibc's own libraries for sure; libgcc_s,
# libstdc++ and zlib because the image's package manager (microdnf, C++) needs them.
BASE_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libanl.so.1", "libmvec.so.1", "libBrokenLocale.so.1", "libthread_db.so.1",
    "libc_malloc_debug.so.0", "libnss_files.so.2", "libnss_dns.so.2",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "linux-vdso.so.1",
    "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
})
# Programs a script may name in its #! line that provided.al2023 has.
IMAGE_INTERPRETERS = frozenset({"/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/env", "/bin/env"})
SHELLS = frozenset({"sh", "bash"})
# The checks whose failure means exec itself fails on this machine (see entrypoint_problem).
# ("class" is not one: an x86_64 host with IA-32 emulation may well start an i386 program.)
EXEC_CHECKS = frozenset({"file", "format", "machine", "executable", "shebang", "crlf", "interpreter-missing"})

HEAD_BYTES = 65536  # scripts are judged on their first 64 KiB; the kernel reads only 256 bytes
NAMED_SYMBOLS = 5
DF_1_PIE = 0x08000000

FIX_LF = ("convert the file to LF line endings: `sed -i 's/\\r$//' {path}` (or dos2unix); "
          "in git, `*.sh text eol=lf` or `bootstrap text eol=lf` in .gitattributes keeps them")


class Severity(enum.Enum):
    ERROR = "error"      # it will not run
    WARNING = "warning"  # it may not run, depending on what doctor cannot see
    OK = "ok"


class Kind(enum.Enum):
    ELF = "elf"
    SCRIPT = "script"
    OTHER = "other"


class Finding(msgspec.Struct, frozen=True):
    severity: Severity
    check: str  # "machine", "glibc", "shebang", ...: stable names for tools
    message: str
    fix: str = ""


class Diagnosis(msgspec.Struct, frozen=True):
    """What doctor found about one file, for one target architecture."""

    path: str
    arch: str
    kind: Kind
    mode: str  # the permission bits, e.g. "0755"
    elf_class: int | None = None  # 32 or 64
    machine: str | None = None  # x86_64, arm64, i386, ... or the raw e_machine
    linkage: str | None = None  # "static" or "dynamic"
    interpreter: str | None = None  # PT_INTERP, or the script's #! program
    needed: tuple[str, ...] = ()
    glibc: str | None = None  # the highest GLIBC_x.y any symbol requires
    glibcxx: str | None = None
    cxxabi: str | None = None
    shebang: str | None = None  # the #! line, without "#!" (and with any \r kept)
    crlf: bool = False
    findings: tuple[Finding, ...] = ()

    @property
    def will_run(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)


class ElfFacts(msgspec.Struct, frozen=True):
    """The parse of one ELF file: the expensive part, cached by (path, inode, mtime, size)."""

    elf_class: int
    machine: str
    big_endian: bool
    e_type: str
    interpreter: str | None
    has_dynamic: bool
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    versions: tuple[str, ...]  # every version name in .gnu.version_r (GLIBC_2.34, GLIBCXX_3.4.21, ...)
    has_sections: bool
    pie: bool  # DT_FLAGS_1 has DF_1_PIE: a position-independent program, not a library
    entry: int
    key: tuple  # (dev, inode, mtime_ns, size) of the file parsed


def diagnose(path: str | os.PathLike, *, arch: str = "x86_64", search_path: str | None = None) -> Diagnosis:
    """Judge whether `path` will start as a bootstrap on provided.al2023 for `arch`.

    Reads the file (and looks up a script's interpreter on this machine, with `search_path` as PATH
    for `#!/usr/bin/env NAME`; None means the process's PATH, as shutil.which does). Raises OSError
    when `path` cannot be read (missing, a directory, no permission). ELF parses are cached by
    (path, inode, mtime, size), so calling this before every cold start costs a stat and a read.
    """
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHES)}")
    path = os.fspath(path)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        head = f.read(HEAD_BYTES)
    mode = stat.S_IMODE(st.st_mode)
    findings = _permission_findings(path, mode)
    base = dict(path=path, arch=arch, mode=f"{mode:04o}")
    if head.startswith(b"\x7fELF"):
        try:
            facts = _elf_facts(path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except (ELFError, ValueError, KeyError) as exc:  # pyelftools' ways of saying "corrupt"
            findings.insert(0, Finding(Severity.ERROR, "format", f"is a damaged ELF file ({exc})",
                                       "rebuild it; if it came out of a zip or a download, fetch it again"))
            return Diagnosis(kind=Kind.ELF, findings=tuple(findings), **base)
        return _judge_elf(path, arch, facts, findings, base)
    if head.startswith(b"#!") or head.startswith(b"\xef\xbb\xbf#!"):
        return _judge_script(path, head, findings, base, search_path)
    what = "is empty" if not head else "is neither a compiled program (ELF) nor a script with a #! line"
    findings.insert(0, Finding(Severity.ERROR, "format", f"{what}: exec fails with 'exec format error'",
                               "make it a program: a script whose first line is `#!/bin/sh` (or another "
                               "interpreter), or your compiled binary"))
    return Diagnosis(kind=Kind.OTHER, findings=tuple(findings), **base)


def entrypoint_problem(argv0: str, *, cwd: str | None = None, path: str | None = None) -> str | None:
    """The one-line reason the runtime command `argv0` cannot be started on this machine, or None.

    For the server, before it spawns a runtime: a non-None answer becomes Lambda's
    `Runtime.InvalidEntrypoint` (errorMessage: this text) instead of an opaque exec error.

    * `argv0` with a slash is a file path, relative to `cwd` (default: the current directory);
      a bare name is looked up with shutil.which on `path` (the PATH the runtime will get; None means
      this process's PATH), and None is returned when it is not found: doctor does not judge what it
      cannot see (the exec error will say it).
    * Only exec-level problems on this machine count: missing file, not executable, not a program,
      wrong architecture for this host (or 32-bit), a #! line broken by CRLF, a missing interpreter.
      The provided.al2023 questions (glibc > 2.34, libraries the image lacks, Python not in the
      image) are not reasons here: this host may well have what AL2023 lacks; `lambdalet doctor`
      reports those.
    * Never raises for a bad file; a host architecture doctor does not know gives None.
    """
    arch = host_arch()
    if arch is None:
        return None
    if "/" in argv0:
        file = os.path.join(cwd, argv0) if cwd else argv0
    else:
        file = shutil.which(argv0, path=path)
        if file is None:
            return None
    try:
        diagnosis = diagnose(file, arch=arch, search_path=path)
    except FileNotFoundError:
        return f"{argv0}: no such file"
    except IsADirectoryError:
        return f"{argv0}: is a directory, not a program"
    except OSError as exc:
        reached = host_limit(exc)
        if reached is not None:  # the host's state, not the file's (sandbox/hostlimits.py)
            raise reached from None
        return f"{argv0}: cannot read it ({exc.strerror or exc})"
    for finding in diagnosis.errors:
        if finding.check == "machine":
            return f"{argv0}: is built for {diagnosis.machine}, but this machine is {arch}: exec fails with 'exec format error'"
        if finding.check in EXEC_CHECKS:
            return f"{argv0}: {finding.message}"
    return None


def host_arch() -> str | None:
    """This machine's architecture in Lambda's words (x86_64, arm64), or None for any other."""
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())


def verdict(severities: list[Severity], verb: str, target: str) -> str:
    """`will run on provided.al2023 (x86_64)`, `will NOT import on python3.12 (x86_64): 2 problems`."""
    errors = severities.count(Severity.ERROR)
    warnings = severities.count(Severity.WARNING)
    if errors:
        return f"will NOT {verb} on {target}: {errors} problem{'s' * (errors > 1)}"
    if warnings:
        return f"will {verb} on {target}, with {warnings} warning{'s' * (warnings > 1)} to check"
    return f"will {verb} on {target}"


def finding_lines(findings: list[tuple[Severity, str, str]]) -> list[str]:
    """Each (severity, message, fix): its line, and its fix's."""
    lines = []
    for severity, message, fix in findings:
        lines.append(f"  {severity.value:<8} {message}")
        if fix:
            lines.append(f"  {'':<8} fix: {fix}")
    return lines


def render(d: Diagnosis) -> str:
    """The human-readable report `lambdalet doctor` prints."""
    lines = [f"{d.path}: {verdict([f.severity for f in d.findings], 'run', f'{IMAGE} ({d.arch})')}"]
    if d.kind is Kind.ELF and d.machine:
        desc = f"ELF {d.elf_class}-bit {d.machine}, {d.linkage or 'unknown'}ally linked"
        if d.interpreter:
            desc += f", interpreter {d.interpreter}"
        lines.append("  " + desc)
        versions = ", ".join(v for v in (d.glibc, d.glibcxx, d.cxxabi) if v)
        if d.needed or versions:
            lines.append("  needs " + (", ".join(d.needed) or "no libraries")
                         + (f"; highest versions required: {versions}" if versions else ""))
    elif d.kind is Kind.SCRIPT:
        lines.append(f"  script, #!{d.shebang.replace(chr(13), '^M')}")
    lines += finding_lines([(f.severity, f.message, f.fix) for f in d.findings])
    return "\n".join(lines)


def to_json(d) -> bytes:
    """The `--json` document of a Diagnosis (or a package's): `will_run` first, then every field."""
    return msgspec.json.encode({"will_run": d.will_run, **msgspec.to_builtins(d)})


# --- permissions -----------------------------------------------------------------------------


def _permission_findings(path: str, mode: int) -> list[Finding]:
    if not mode & 0o111:
        return [Finding(Severity.ERROR, "executable",
                        f"is not executable (mode {mode:04o}): exec fails with 'permission denied'",
                        f"`chmod 755 {path}`; zip keeps the mode, so fix it before zipping (on Windows, "
                        "set it in the build, e.g. in a Dockerfile `RUN chmod 755`)")]
    if mode & 0o555 != 0o555:
        return [Finding(Severity.WARNING, "permissions",
                        f"mode {mode:04o} is not readable and executable by everyone; Lambda starts the "
                        "bootstrap as a non-root user, who gets 'permission denied'",
                        f"`chmod 755 {path}`")]
    return [Finding(Severity.OK, "executable", f"is executable (mode {mode:04o})")]


# --- ELF ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _elf_facts(path: str, dev: int, ino: int, mtime_ns: int, size: int) -> ElfFacts:
    with open(path, "rb") as f:
        return elf_facts(f, (dev, ino, mtime_ns, size))


def elf_facts(stream, key: tuple = ()) -> ElfFacts:
    """The facts doctor judges, read from an ELF file open in `stream` (a file, a zip member read
    into memory). Raises ELFError, ValueError or KeyError for a damaged one."""
    elf = ELFFile(stream)
    interpreter, dynamic = None, None
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_INTERP":
            interpreter = segment.get_interp_name()
        elif segment["p_type"] == "PT_DYNAMIC":
            dynamic = segment
    needed, runpath, pie = [], [], False
    if dynamic is not None:
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag == "DT_FLAGS_1":
                pie = bool(tag.entry.d_val & DF_1_PIE)
            elif tag.entry.d_tag == "DT_NEEDED":
                needed.append(tag.needed)
            elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                runpath.extend(p for p in getattr(tag, tag.entry.d_tag[3:].lower()).split(":") if p)
    versions = []
    for section in elf.iter_sections():
        if section["sh_type"] == "SHT_GNU_verneed":
            for _, auxiliaries in section.iter_versions():
                versions.extend(aux.name for aux in auxiliaries)
    return ElfFacts(
        elf_class=elf.elfclass, machine=MACHINES.get(elf["e_machine"], str(elf["e_machine"])),
        big_endian=not elf.little_endian, e_type=elf["e_type"], interpreter=interpreter,
        has_dynamic=dynamic is not None, needed=tuple(needed), runpath=tuple(runpath),
        versions=tuple(dict.fromkeys(versions)), has_sections=elf.num_sections() > 0,
        pie=pie, entry=elf["e_entry"], key=key,
    )


@functools.lru_cache(maxsize=64)
def _symbols_needing(path: str, key: tuple, versions: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Undefined dynamic symbols bound to each of `versions` (only asked when a version is too new;
    `key` is the file's (dev, inode, mtime, size), for the cache)."""
    with open(path, "rb") as f:
        return symbols_needing(f, versions)


def symbols_needing(stream, versions: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """The undefined dynamic symbols of the ELF file in `stream` bound to each of `versions`."""
    found: dict[str, list[str]] = {v: [] for v in versions}
    elf = ELFFile(stream)
    by_index, versym, dynsym = {}, None, None
    for section in elf.iter_sections():
        kind = section["sh_type"]
        if kind == "SHT_GNU_verneed":
            for _, auxiliaries in section.iter_versions():
                by_index.update((aux["vna_other"], aux.name) for aux in auxiliaries)
        elif kind == "SHT_GNU_versym":
            versym = section
        elif kind == "SHT_DYNSYM":
            dynsym = section
    if versym is not None and dynsym is not None:
        # .gnu.version is one 16-bit index per .dynsym entry; read it whole rather than per symbol.
        indices = array.array("H", versym.data())
        if elf.little_endian != (sys.byteorder == "little"):
            indices.byteswap()
        for index, symbol in zip(indices, dynsym.iter_symbols()):
            name = by_index.get(index & 0x7FFF)
            if name in found and symbol["st_shndx"] == "SHN_UNDEF":
                found[name].append(symbol.name)
    return {v: tuple(names) for v, names in found.items()}


_VERSION = re.compile(r"(GLIBCXX|GLIBC|CXXABI)_(\d+(?:\.\d+)*)$")


def highest_version(versions: tuple[str, ...], family: str) -> tuple[tuple[int, ...], str] | None:
    best = None
    for name in versions:
        if name == "GLIBC_ABI_DT_RELR" and family == "GLIBC":  # glibc 2.36's packed relocations
            key = ((2, 36), name)
        elif (m := _VERSION.match(name)) and m.group(1) == family:
            key = (tuple(int(p) for p in m.group(2).split(".")), name)
        else:
            continue
        best = key if best is None or key[0] > best[0] else best
    return best


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _judge_elf(path: str, arch: str, facts: ElfFacts, findings: list[Finding], base: dict) -> Diagnosis:
    static = facts.interpreter is None and not facts.needed
    glibc, glibcxx, cxxabi = (highest_version(facts.versions, fam) for fam in ("GLIBC", "GLIBCXX", "CXXABI"))
    diagnosis = dict(
        kind=Kind.ELF, elf_class=facts.elf_class, machine=facts.machine,
        linkage="static" if static else "dynamic", interpreter=facts.interpreter, needed=facts.needed,
        glibc=glibc and glibc[1], glibcxx=glibcxx and glibcxx[1], cxxabi=cxxabi and cxxabi[1], **base,
    )
    out: list[Finding] = []

    def add(severity: Severity, check: str, message: str, fix: str = "") -> None:
        out.append(Finding(severity, check, message, fix))

    if facts.elf_class != 64:
        add(Severity.ERROR, "class", f"is a {facts.elf_class}-bit {facts.machine} program; Lambda runs only "
            "64-bit programs (x86_64 or arm64)", f"build it as a 64-bit {arch} program")
    elif facts.machine != arch or facts.big_endian:
        built = facts.machine + (" (big-endian)" if facts.big_endian else "")
        other = "arm64" if arch == "x86_64" else "x86_64"
        fix = f"rebuild it for {arch} (e.g. GOARCH={'amd64' if arch == 'x86_64' else 'arm64'})"
        if facts.machine == other and not facts.big_endian:
            fix += f", or make the function {other} (Architectures: [{other}]; `--arch {other}` here)"
        add(Severity.ERROR, "machine", f"is built for {built}, but the function's architecture is {arch}: "
            "exec fails with 'exec format error'", fix)
    elif facts.elf_class == 64:
        add(Severity.OK, "machine", f"is built for {arch}, the function's architecture")
    if any(f.severity is Severity.ERROR for f in out):
        # Built for another machine: its loader and library versions would all change with a rebuild.
        return Diagnosis(findings=tuple(findings + out), **diagnosis)

    if facts.e_type == "ET_REL":
        add(Severity.ERROR, "format", "is an object file (.o), not a linked program", "link it into an executable")
    elif facts.e_type == "ET_CORE":
        add(Severity.ERROR, "format", "is a core dump, not a program", "point the function at your program")
    elif facts.e_type == "ET_DYN" and facts.interpreter is None and (facts.needed or (not facts.pie and not facts.entry)):
        # No loader named, yet libraries needed or no entry point: a .so (a static-pie says DF_1_PIE).
        add(Severity.ERROR, "format", "is a shared library (.so), not a program: it has no program "
            "interpreter, so exec does not load the libraries it needs", "point the function at the executable")

    if any(f.check == "format" for f in out):
        pass
    elif static:
        add(Severity.OK, "linkage", "is statically linked: it needs nothing from the image")
    elif facts.interpreter is not None:
        _judge_loader(arch, facts.interpreter, add)

    if not static:
        _judge_versions(path, facts, glibc, glibcxx, cxxabi, add)
        _judge_libraries(path, facts, add)
    return Diagnosis(findings=tuple(findings + out), **diagnosis)


def _judge_loader(arch: str, interpreter: str, add) -> None:
    if interpreter in LOADERS[arch]:
        # Only this machine's own architecture can be checked for the loader's presence.
        if arch != host_arch() or os.path.exists(interpreter):
            add(Severity.OK, "interpreter", f"uses glibc's loader {interpreter}, which {IMAGE} has")
        else:
            add(Severity.ERROR, "interpreter-missing", f"needs the loader {interpreter}, which this machine "
                "lacks: exec fails with 'No such file or directory'", f"run it on {arch} with glibc installed")
        return
    if "musl" in interpreter:
        add(Severity.ERROR, "interpreter", f"is linked against musl libc (Alpine's loader {interpreter}); "
            f"{IMAGE} has only glibc: exec fails with 'No such file or directory'",
            "link it statically (static musl programs run anywhere: e.g. `--target x86_64-unknown-linux-musl`"
            " with static linking), or build it against glibc on amazonlinux:2023")
        return
    add(Severity.ERROR, "interpreter", f"expects its loader at {interpreter}, which {IMAGE} does not have "
        f"(it has {LOADERS[arch][0]}): exec fails with 'No such file or directory'",
        f"relink with the standard loader (`patchelf --set-interpreter {LOADERS[arch][0]}`), or link statically")


def _judge_versions(path, facts, glibc, glibcxx, cxxabi, add) -> None:
    if not facts.has_sections:
        add(Severity.WARNING, "glibc", "has no section headers (stripped with sstrip, or packed), so the glibc "
            "versions it needs could not be read", f"check it by running it on {IMAGE}")
        return
    limits = (("GLIBC", glibc, AL2023_GLIBC, f"glibc {dotted(AL2023_GLIBC)}"),
              ("GLIBCXX", glibcxx, AL2023_GLIBCXX, f"libstdc++ GLIBCXX_{dotted(AL2023_GLIBCXX)} (GCC 11)"),
              ("CXXABI", cxxabi, AL2023_CXXABI, f"libstdc++ CXXABI_{dotted(AL2023_CXXABI)} (GCC 11)"))
    too_new: dict[str, list[str]] = {}
    for family, highest, limit, _ in limits:
        if highest and highest[0] > limit:
            too_new[family] = sorted(
                (v for v in facts.versions if (h := highest_version((v,), family)) and h[0] > limit),
                key=lambda v: highest_version((v,), family)[0])
    wanted = frozenset(v for vs in too_new.values() for v in vs)
    symbols = _symbols_needing(path, facts.key, wanted) if too_new else {}
    bundled_cxx = _bundled(path, facts.runpath, "libstdc++.so.6")
    for family, highest, limit, have in limits:
        if not highest:
            continue
        if family not in too_new:
            add(Severity.OK, family.lower(), f"needs {highest[1]} at most; {IMAGE} has {have}")
            continue
        names = []
        for version in too_new[family]:
            syms = symbols.get(version, [])
            more = len(syms) - NAMED_SYMBOLS
            shown = ", ".join(syms[:NAMED_SYMBOLS]) + (f" and {more} more" if more > 0 else "")
            names.append(f"{version} ({shown})" if shown else version)
        message = f"needs {'; '.join(names)}, but {IMAGE} has {have}: the loader stops with \"version `{highest[1]}' not found\""
        if family == "GLIBC":
            add(Severity.ERROR, "glibc", message,
                "build it on provided.al2023 or amazonlinux:2023 (or any system with glibc <= 2.34), or target "
                "glibc 2.34 explicitly (`zig cc -target x86_64-linux-gnu.2.34`, `cargo zigbuild --target "
                "x86_64-unknown-linux-gnu.2.34`), or link it statically (musl)")
        elif bundled_cxx:
            add(Severity.OK, family.lower(), f"needs {highest[1]}, newer than {IMAGE}'s libstdc++, but ships its "
                f"own libstdc++.so.6 ({bundled_cxx})")
        else:
            add(Severity.ERROR, family.lower(), message,
                "build it with GCC 11 (amazonlinux:2023's), link libstdc++ statically (`-static-libstdc++`), "
                "or ship the newer libstdc++.so.6 in lib/ next to the bootstrap (/var/task/lib is on LD_LIBRARY_PATH)")
    if "GLIBC_PRIVATE" in facts.versions:
        add(Severity.WARNING, "glibc", "uses GLIBC_PRIVATE symbols, which only the exact glibc build it was "
            "linked against provides", "build it on amazonlinux:2023")


def _bundled(path: str, runpath: tuple[str, ...], library: str) -> str | None:
    """Where `library` ships with the program (next to it, in its lib/, or in its $ORIGIN RUNPATH)."""
    origin = os.path.dirname(os.path.abspath(path))
    dirs = [origin, os.path.join(origin, "lib")]
    dirs += [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for p in runpath if "ORIGIN" in p]
    for directory in dirs:
        candidate = os.path.join(directory, library)
        if os.path.exists(candidate):
            return candidate
    return None


def _judge_libraries(path: str, facts: ElfFacts, add) -> None:
    missing = [lib for lib in facts.needed if lib not in BASE_LIBRARIES and not _bundled(path, facts.runpath, lib)]
    if missing:
        add(Severity.WARNING, "libraries", f"needs {', '.join(missing)}, which a base {IMAGE} does not have "
            "(doctor's list of base libraries is approximate)",
            "install them in your image (`dnf install -y ...`), or ship them in lib/ next to the bootstrap "
            "(/var/task/lib) or in a layer's /opt/lib")
    else:
        add(Severity.OK, "libraries", f"needs only libraries that {IMAGE} has or that ship with it")


# --- scripts -----------------------------------------------------------------------------------


def _judge_script(path: str, head: bytes, findings: list[Finding], base: dict, search_path: str | None) -> Diagnosis:
    out: list[Finding] = []

    def add(severity: Severity, check: str, message: str, fix: str = "") -> None:
        out.append(Finding(severity, check, message, fix))

    if head.startswith(b"\xef\xbb\xbf"):
        add(Severity.ERROR, "shebang", "starts with a UTF-8 byte-order mark before #!, so the kernel does not "
            "see the #! line: exec fails with 'exec format error'",
            "save the file as UTF-8 without BOM")
        head = head[3:]
    first, newline, body = head.partition(b"\n")
    line = first[2:].decode("utf-8", "replace")
    # As the kernel does: skip blanks after #!, the program ends at a blank, the rest is one argument;
    # trailing blanks are dropped, but a \r is not a blank.
    words = line.lstrip(" \t").rstrip(" \t")
    program, _, argument = words.replace("\t", " ").partition(" ")
    argument = argument.strip(" ")
    crlf = b"\r\n" in head
    diagnosis = dict(kind=Kind.SCRIPT, shebang=line, crlf=crlf, **base)

    if not program:
        add(Severity.ERROR, "shebang", "has a #! line that names no interpreter: exec fails with 'exec format error'",
            "name the interpreter, e.g. `#!/bin/sh`")
        return Diagnosis(interpreter=None, findings=tuple(findings + out), **diagnosis)
    if not newline and len(head) >= 256:
        add(Severity.ERROR, "shebang", "has a #! line longer than the kernel reads (255 bytes)",
            "shorten it; use `#!/usr/bin/env NAME`")
    if "\r" in line:
        if "\r" in program:
            shown = program.replace("\r", "^M")
            how = f"exec fails with `{shown}: bad interpreter: No such file or directory`"
        else:
            shown = argument.replace("\r", "^M")
            how = (f"{program} is given '{shown}' as its argument and fails "
                   f"(e.g. `env: '{shown.split()[-1]}': No such file or directory`)")
        add(Severity.ERROR, "crlf", f"has Windows (CRLF) line endings: the #! line ends in \\r, so {how}",
            FIX_LF.format(path=path))
    program, argument = program.rstrip("\r"), argument.rstrip("\r")

    name, resolved = _script_program(program, argument, search_path)
    if not program.startswith("/"):
        add(Severity.ERROR, "interpreter-missing", f"names the interpreter '{program}' by a relative path; the "
            "kernel resolves it against the current directory", f"use an absolute path, e.g. `#!/usr/bin/env {program}`")
    elif not _is_executable(program):
        add(Severity.ERROR, "interpreter-missing", f"needs the interpreter {program}, which does not exist on this "
            "machine: exec fails with 'No such file or directory'",
            "install it, or fix the #! line (`#!/bin/sh`, `#!/usr/bin/env python3.12`, ...)")
    elif name is not None and resolved is None:
        add(Severity.ERROR, "interpreter-missing", f"runs '{name}' through {program}, but '{name}' is not on this "
            f"machine's PATH: env fails with '{name}: No such file or directory'",
            f"install {name}, or name an interpreter that exists")
    else:  # it starts here; does provided.al2023 have it too?
        _judge_image_interpreter(program, name, add)

    if crlf and "\r" not in line:
        shell = (name or os.path.basename(program)) in SHELLS
        if shell:
            add(Severity.ERROR, "crlf", "is a shell script with Windows (CRLF) line endings: the shell reads \\r as "
                "part of each command (`$'\\r': command not found`)", FIX_LF.format(path=path))
        else:
            add(Severity.WARNING, "crlf", "has Windows (CRLF) line endings after the #! line; most interpreters "
                "cope, but convert it anyway", FIX_LF.format(path=path))
    interpreter = program + (f" {argument}" if argument else "")
    return Diagnosis(interpreter=interpreter, findings=tuple(findings + out), **diagnosis)


def _script_program(program: str, argument: str, search_path: str | None) -> tuple[str | None, str | None]:
    """For `#!/usr/bin/env NAME`: NAME and where this machine's PATH finds it; else (None, None)."""
    if os.path.basename(program) != "env" or not argument:
        return None, None
    words = argument.split()
    if words[0] == "-S":  # `env -S python3 -u`: the split-string form
        words = words[1:]
    words = [w for w in words if "=" not in w and not w.startswith("-")]
    if not words:
        return None, None
    return words[0], shutil.which(words[0], path=search_path)


def _is_executable(program: str) -> bool:
    return os.path.isfile(program) and os.access(program, os.X_OK)


def _judge_image_interpreter(program: str, name: str | None, add) -> None:
    command = name or os.path.basename(program)
    if program in IMAGE_INTERPRETERS and (name is None or name in SHELLS):
        add(Severity.OK, "interpreter", f"runs with {program}{f' {name}' if name else ''}, which {IMAGE} has")
        return
    if name is None and program.startswith("/var/lang/"):
        add(Severity.WARNING, "interpreter", f"runs with {program}, which exists in AWS's language base images "
            f"(public.ecr.aws/lambda/python, ...), not in {IMAGE}",
            "use that language's base image instead, or install the interpreter in yours and point #! at it")
        return
    where = f"`{command}` on its PATH" if name else program
    if re.fullmatch(r"python(\d+(\.\d+)?)?", command):
        add(Severity.WARNING, "interpreter", f"needs Python, and {IMAGE} ships none, so it needs {where} from your "
            "image or a layer",
            "in an image, `RUN dnf install -y python3.12` (gives /usr/bin/python3.12; plain `python3` is AL2023's "
            "3.9); for a .zip function, a layer with the interpreter in /opt/bin")
        return
    add(Severity.WARNING, "interpreter", f"runs with {command}, which {IMAGE} does not ship, so it needs {where} "
        "from your image or a layer", f"install {command} in your image (`dnf install -y ...`), or ship it in a "
        "layer (/opt/bin is on the PATH)")
