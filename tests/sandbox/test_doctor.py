"""`lambdalet doctor` on real programs: this machine's /bin/ls, programs compiled here (static, against
glibc 2.36, against GCC 12's libstdc++, with a musl loader), AWS's arm64 RIE, and broken scripts.
Each test asserts what a user sees: the verdict, what the message says, the exit status."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.realparts import rie_binary
from helpers import REPO
from sandbox.doctor import Kind, Severity, diagnose, entrypoint_problem, render

ON_X86_64 = platform.machine() == "x86_64"
PYTHON_DIR = os.path.dirname(sys.executable)  # a PATH on which `python3` is found


def compile_program(tmp_path: Path, source: str, *flags: str, name: str = "bootstrap", cxx: bool = False) -> Path:
    compiler = shutil.which("g++" if cxx else "gcc")
    if compiler is None:
        pytest.skip("needs gcc/g++ to build a test program")
    src = tmp_path / f"{name}.{'cc' if cxx else 'c'}"
    src.write_text(source)
    out = tmp_path / name
    built = subprocess.run([compiler, *flags, "-o", str(out), str(src)], capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"cannot build {name} with {' '.join(flags) or 'no flags'}: {built.stderr.strip()[-300:]}")
    return out


def script(tmp_path: Path, text: bytes, mode: int = 0o755, name: str = "bootstrap") -> Path:
    path = tmp_path / name
    path.write_bytes(text)
    path.chmod(mode)
    return path


def errors(d) -> list[str]:
    return [f.message for f in d.findings if f.severity is Severity.ERROR]


def warnings(d) -> list[str]:
    return [f.message for f in d.findings if f.severity is Severity.WARNING]


def finding(d, check: str, severity: Severity):
    (found,) = [f for f in d.findings if f.check == check and f.severity is severity]
    return found


def doctor_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime_api.cli", "doctor", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


HELLO = "int main(void) { return 0; }\n"


# --- compiled programs ---------------------------------------------------------------------------


@pytest.mark.skipif(not ON_X86_64, reason="this machine's /bin/ls is an x86_64 program only on x86_64")
def test_the_machines_own_ls_runs_on_x86_64_and_is_refused_for_arm64():
    d = diagnose("/bin/ls")
    assert d.will_run, render(d)
    assert (d.kind, d.elf_class, d.machine, d.linkage) == (Kind.ELF, 64, "x86_64", "dynamic")
    assert d.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in d.needed
    assert "provided.al2023 has glibc 2.34" in finding(d, "glibc", Severity.OK).message
    assert render(d).startswith("/bin/ls: will run on provided.al2023 (x86_64)")

    arm = diagnose("/bin/ls", arch="arm64")
    assert not arm.will_run
    (message,) = errors(arm)
    assert "built for x86_64, but the function's architecture is arm64" in message
    assert "exec format error" in message
    assert "will NOT run on provided.al2023 (arm64)" in render(arm)


@pytest.mark.parametrize("flag", ["-static", "-static-pie"])
def test_a_static_program_needs_nothing_from_the_image(tmp_path, flag):
    program = compile_program(tmp_path, HELLO, flag)
    d = diagnose(program, arch=platform.machine().replace("aarch64", "arm64"))
    assert d.will_run, render(d)
    assert (d.linkage, d.interpreter, d.needed, d.glibc) == ("static", None, (), None)
    assert "statically linked" in finding(d, "linkage", Severity.OK).message
    assert not warnings(d)


def test_awss_arm64_rie_runs_on_arm64_only():
    rie = rie_binary("arm64")
    x86 = diagnose(rie, arch="x86_64")
    assert not x86.will_run
    assert (x86.machine, x86.linkage) == ("arm64", "static")
    machine = finding(x86, "machine", Severity.ERROR)
    assert "built for arm64, but the function's architecture is x86_64" in machine.message
    assert "make the function arm64" in machine.fix

    arm = diagnose(rie, arch="arm64")
    assert arm.will_run and not warnings(arm), render(arm)


def test_a_program_needing_glibc_2_36_is_refused_with_the_symbol_named(tmp_path):
    # arc4random first appeared in glibc 2.36, this machine's glibc (Debian 12); AL2023 has 2.34.
    program = compile_program(
        tmp_path, "#include <stdlib.h>\n#include <stdio.h>\nint main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n")
    if shutil.which("objdump"):  # an independent witness that the binary really binds GLIBC_2.36
        table = subprocess.run(["objdump", "-T", str(program)], capture_output=True, text=True, check=True).stdout
        assert any("GLIBC_2.36" in line and "arc4random" in line for line in table.splitlines()), table
    d = diagnose(program, arch=platform.machine().replace("aarch64", "arm64"))
    assert not d.will_run
    assert d.glibc == "GLIBC_2.36"
    glibc = finding(d, "glibc", Severity.ERROR)
    assert "GLIBC_2.36 (arc4random)" in glibc.message
    assert "provided.al2023 has glibc 2.34" in glibc.message
    assert "amazonlinux:2023" in glibc.fix and "statically" in glibc.fix
    # This machine has glibc 2.36, so it starts here: not a reason to refuse the launch.
    assert entrypoint_problem(str(program)) is None
    assert subprocess.run([program], capture_output=True).returncode == 0


CONDITION_VARIABLE = """
#include <condition_variable>
#include <mutex>
int main() {
    std::mutex m; std::condition_variable cv; bool ready = true;
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return ready; });
}
"""


def test_a_program_needing_a_newer_libstdcxx_is_refused_unless_it_ships_its_own(tmp_path):
    # GCC 12 binds std::condition_variable::wait to GLIBCXX_3.4.30; AL2023's GCC 11 stops at 3.4.29.
    program = compile_program(tmp_path, CONDITION_VARIABLE, cxx=True)
    d = diagnose(program, arch=platform.machine().replace("aarch64", "arm64"))
    if d.glibcxx is None or tuple(map(int, d.glibcxx.split("_")[1].split("."))) <= (3, 4, 29):
        pytest.skip(f"this g++ binds only {d.glibcxx}; the test needs GCC 12 or later")
    assert not d.will_run
    libstdcxx = finding(d, "glibcxx", Severity.ERROR)
    assert "condition_variable" in libstdcxx.message and "GLIBCXX_3.4.29 (GCC 11)" in libstdcxx.message
    assert "-static-libstdc++" in libstdcxx.fix

    # Shipping the newer libstdc++ in lib/ next to the bootstrap (/var/task/lib) is a fix.
    found = subprocess.run(["g++", "-print-file-name=libstdc++.so.6"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "lib").mkdir()
    shutil.copy(os.path.realpath(found), tmp_path / "lib" / "libstdc++.so.6")
    shipped = diagnose(program, arch=d.arch)
    assert shipped.will_run, render(shipped)
    assert "ships its own libstdc++.so.6" in finding(shipped, "glibcxx", Severity.OK).message


def test_a_musl_program_and_a_foreign_loader_are_refused(tmp_path):
    musl = compile_program(tmp_path, HELLO, "-Wl,--dynamic-linker=/lib/ld-musl-x86_64.so.1", name="musl")
    d = diagnose(musl, arch=platform.machine().replace("aarch64", "arm64"))
    interp = finding(d, "interpreter", Severity.ERROR)
    assert "musl" in interp.message and "link it statically" in interp.fix

    nix = compile_program(tmp_path, HELLO, "-Wl,--dynamic-linker=/nix/store/abc-glibc/lib/ld-linux-x86-64.so.2", name="nix")
    d = diagnose(nix, arch=platform.machine().replace("aarch64", "arm64"))
    interp = finding(d, "interpreter", Severity.ERROR)
    assert "/nix/store/abc-glibc" in interp.message and "patchelf --set-interpreter" in interp.fix


def test_a_shared_library_or_an_object_file_is_not_a_program(tmp_path):
    library = compile_program(tmp_path, "int f(void) { return 1; }\n", "-shared", "-fPIC", name="libf.so")
    assert any("shared library" in m for m in errors(diagnose(library, arch=platform.machine().replace("aarch64", "arm64"))))
    obj = compile_program(tmp_path, HELLO, "-c", name="main.o")
    assert any("object file" in m for m in errors(diagnose(obj, arch=platform.machine().replace("aarch64", "arm64"))))


def test_a_32_bit_program_is_refused(tmp_path):
    if not ON_X86_64:
        pytest.skip("builds an i386 program, which needs an x86 gcc")
    # Without libc or libgcc, so no 32-bit multilib packages are needed.
    program = compile_program(tmp_path, "void _start(void) { for (;;); }\n", "-m32", "-nostdlib", "-static", name="prog32")
    d = diagnose(program)
    assert d.elf_class == 32
    assert any("32-bit" in m and "64-bit" in m for m in errors(d))


def test_the_libraries_a_base_image_lacks_are_a_warning_unless_they_ship_alongside(tmp_path):
    if not ON_X86_64:
        pytest.skip("uses this machine's /bin/ls, an x86_64 program")
    d = diagnose("/bin/ls")
    libraries = finding(d, "libraries", Severity.WARNING)
    assert "libselinux.so.1" in libraries.message and "approximate" in libraries.message
    assert "/var/task/lib" in libraries.fix

    shutil.copy("/bin/ls", tmp_path / "bootstrap")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libselinux.so.1").write_bytes(b"")
    assert not warnings(diagnose(tmp_path / "bootstrap")), render(diagnose(tmp_path / "bootstrap"))


def test_a_replaced_file_is_judged_again(tmp_path):
    program = tmp_path / "bootstrap"
    shutil.copy(compile_program(tmp_path, HELLO, "-static", name="static"), program)
    assert diagnose(program, arch="arm64").machine == platform.machine().replace("aarch64", "arm64")
    shutil.copy(rie_binary("arm64"), program)
    assert diagnose(program, arch="arm64").machine == "arm64"


# --- scripts -----------------------------------------------------------------------------------


def test_a_sh_script_with_lf_endings_runs(tmp_path):
    d = diagnose(script(tmp_path, b"#!/bin/sh\necho hello\n"))
    assert d.will_run and not warnings(d), render(d)
    assert (d.kind, d.interpreter, d.crlf) == (Kind.SCRIPT, "/bin/sh", False)


def test_crlf_in_the_shebang_line_is_the_bad_interpreter_error(tmp_path):
    path = script(tmp_path, b"#!/bin/sh\r\necho hello\r\n")
    d = diagnose(path)
    assert not d.will_run and d.crlf
    crlf = finding(d, "crlf", Severity.ERROR)
    assert "/bin/sh^M: bad interpreter" in crlf.message
    assert "sed -i" in crlf.fix and "dos2unix" in crlf.fix
    with pytest.raises(FileNotFoundError):  # what the kernel really does with it
        subprocess.run([path])
    assert "bad interpreter" in entrypoint_problem(str(path))


def test_crlf_after_the_shebang_is_an_error_for_shell_and_a_warning_for_python(tmp_path):
    shell = diagnose(script(tmp_path, b"#!/bin/bash\necho hello\r\n", name="sh"))
    assert "command not found" in finding(shell, "crlf", Severity.ERROR).message

    python = diagnose(script(tmp_path, b"#!/usr/bin/env python3\nprint('hi')\r\n", name="py"), search_path=PYTHON_DIR)
    assert python.will_run
    assert "CRLF" in finding(python, "crlf", Severity.WARNING).message


def test_crlf_after_env_breaks_the_argument(tmp_path):
    d = diagnose(script(tmp_path, b"#!/usr/bin/env python3\r\nprint('hi')\r\n"), search_path=PYTHON_DIR)
    assert "'python3^M'" in finding(d, "crlf", Severity.ERROR).message


def test_a_missing_interpreter_is_an_error(tmp_path):
    path = script(tmp_path, b"#!/no/such/interp\necho hello\n")
    d = diagnose(path)
    assert not d.will_run
    assert d.interpreter == "/no/such/interp"
    missing = finding(d, "interpreter-missing", Severity.ERROR)
    assert "/no/such/interp" in missing.message and "does not exist" in missing.message
    assert not warnings(d)  # one clear error, not a pile
    with pytest.raises(FileNotFoundError):
        subprocess.run([path])
    result = doctor_cli(str(path))
    assert result.returncode == 1
    assert "will NOT run" in result.stdout and "/no/such/interp" in result.stdout


def test_a_name_env_cannot_find_is_an_error(tmp_path):
    d = diagnose(script(tmp_path, b"#!/usr/bin/env no-such-interpreter\n"), search_path=PYTHON_DIR)
    assert "'no-such-interpreter' is not on this machine's PATH" in finding(d, "interpreter-missing", Severity.ERROR).message


def test_python_is_a_warning_because_provided_al2023_ships_none(tmp_path):
    d = diagnose(script(tmp_path, b"#!/usr/bin/env python3\nprint('hi')\n"), search_path=PYTHON_DIR)
    assert d.will_run
    python = finding(d, "interpreter", Severity.WARNING)
    assert "provided.al2023 ships none" in python.message
    assert "dnf install -y python3.12" in python.fix and "/opt/bin" in python.fix
    assert entrypoint_problem(str(tmp_path / "bootstrap"), path=PYTHON_DIR) is None  # it starts here


def test_a_script_that_is_not_executable_says_chmod_755(tmp_path):
    path = script(tmp_path, b"#!/bin/sh\necho hello\n", mode=0o644)
    d = diagnose(path)
    assert not d.will_run
    executable = finding(d, "executable", Severity.ERROR)
    assert "not executable" in executable.message and "chmod 755" in executable.fix
    with pytest.raises(PermissionError):
        subprocess.run([path])
    assert "not executable" in entrypoint_problem(str(path))


def test_executable_by_its_owner_only_is_a_warning(tmp_path):
    d = diagnose(script(tmp_path, b"#!/bin/sh\necho hello\n", mode=0o700))
    assert d.will_run
    assert "non-root user" in finding(d, "permissions", Severity.WARNING).message


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"echo hello\n", "neither a compiled program"),
    (b"\xef\xbb\xbf#!/bin/sh\necho hello\n", "byte-order mark"),
    (b"#!\n", "names no interpreter"),
])
def test_files_exec_cannot_start(tmp_path, content, says):
    d = diagnose(script(tmp_path, content))
    assert not d.will_run
    assert any(says in m for m in errors(d)), render(d)


# --- the command line ----------------------------------------------------------------------------


def test_cli_exit_status_is_0_when_it_will_run_and_1_when_not(tmp_path):
    ok = doctor_cli(str(script(tmp_path, b"#!/bin/sh\necho hello\n", name="good")))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "will run on provided.al2023 (x86_64)" in ok.stdout

    bad = doctor_cli(str(rie_binary("arm64")))
    assert bad.returncode == 1
    assert "will NOT run on provided.al2023 (x86_64)" in bad.stdout
    assert "error" in bad.stdout and "fix:" in bad.stdout

    arm = doctor_cli(str(rie_binary("arm64")), "--arch", "arm64")
    assert arm.returncode == 0, arm.stdout


def test_cli_json_is_for_tools(tmp_path):
    result = doctor_cli(str(script(tmp_path, b"#!/bin/sh\r\necho hello\r\n")), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["will_run"] is False
    assert (report["kind"], report["crlf"], report["arch"]) == ("script", True, "x86_64")
    assert any(f["severity"] == "error" and f["check"] == "crlf" and "bad interpreter" in f["message"]
               for f in report["findings"])
    assert all(set(f) == {"severity", "check", "message", "fix"} for f in report["findings"])


def test_cli_checks_the_bootstrap_of_a_code_directory(tmp_path):
    script(tmp_path, b"#!/bin/sh\necho hello\n")
    result = doctor_cli(str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{tmp_path / 'bootstrap'}: will run")


def test_cli_exit_status_is_2_for_what_it_cannot_read_or_understand(tmp_path):
    missing = doctor_cli(str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr and "No such file" in missing.stderr
    empty_dir = doctor_cli(str(tmp_path))  # a directory without a bootstrap
    assert empty_dir.returncode == 2
    assert doctor_cli("/bin/sh", "--arch", "mips").returncode == 2


# --- entrypoint_problem: the server's check before it spawns ---------------------------------------


def test_entrypoint_problem_passes_what_starts_here():
    assert entrypoint_problem(sys.executable) is None
    assert entrypoint_problem("sh") is None  # a bare name is looked up on PATH, then judged


def test_entrypoint_problem_leaves_unknown_names_to_exec():
    assert entrypoint_problem("no-such-runtime-anywhere") is None


def test_entrypoint_problem_reasons_are_one_line(tmp_path):
    assert entrypoint_problem(str(tmp_path / "bootstrap")) == f"{tmp_path / 'bootstrap'}: no such file"
    assert "is a directory" in entrypoint_problem(str(tmp_path))
    script(tmp_path, b"#!/no/such/interp\n")
    reason = entrypoint_problem("./bootstrap", cwd=str(tmp_path))
    assert reason.startswith("./bootstrap: ") and "/no/such/interp" in reason and "\n" not in reason


@pytest.mark.skipif(not ON_X86_64, reason="an arm64 program is foreign only on an x86_64 machine")
def test_entrypoint_problem_refuses_another_architecture():
    reason = entrypoint_problem(str(rie_binary("arm64")))
    assert reason.endswith("is built for arm64, but this machine is x86_64: exec fails with 'exec format error'")
