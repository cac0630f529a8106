"""`lambdalet doctor --package` on real wheels downloaded from PyPI (MarkupSafe 3.0.2, built for
several systems, and the pure-Python jmespath), on a library compiled here against a newer glibc,
and on packages made to break a rule (a sparse file over 250 MB, unreadable files, a missing
handler). Each test asserts what a user sees: the verdict, the message, the exit status; and the
server says the same findings once when it starts the function."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO, running_server, write_function
from runtime_api import FunctionConfig
from sandbox.doctor import Severity
from sandbox.package_doctor import _python_satisfies, diagnose_package
from sandbox.runtime_cache import cache_dir, locked
from sandbox.runtimes import RUNTIMES

MARKUPSAFE = "markupsafe==3.0.2"
PY312 = RUNTIMES["python3.12"]


def wheel(requirement: str, platform: str | None = None, python: str = "3.12") -> Path:
    """A wheel from PyPI, downloaded once into lambdalet's cache (skips where PyPI cannot be reached)."""
    target = cache_dir() / "test-wheels" / f"{requirement}-{platform or 'any'}-{python}"
    with locked("test-wheels"):
        found = sorted(target.glob("*.whl"))
        if not found:
            target.mkdir(parents=True, exist_ok=True)
            where = ["--platform", platform] if platform else []
            got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                                  *where, "--python-version", python, requirement, "-d", str(target)],
                                 capture_output=True, text=True, timeout=300)
            found = sorted(target.glob("*.whl"))
            if got.returncode != 0 or not found:
                pytest.skip(f"cannot download {requirement} for {platform} from PyPI: {got.stderr.strip()[-300:]}")
    return found[0]


def installed(whl: Path, package: Path) -> Path:
    """`whl` installed into `package` as `pip install --target` lays it out (a wheel is that tree)."""
    with zipfile.ZipFile(whl) as archive:
        archive.extractall(package)
    return package


def errors(d) -> list[str]:
    return [f"{f.check}: {f.path}: {f.message}" for f in d.findings if f.severity is Severity.ERROR]


def doctor_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime_api.cli", "doctor", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_a_manylinux2014_wheel_with_native_code_will_import(tmp_path):
    package = installed(wheel(MARKUPSAFE, "manylinux2014_x86_64"), tmp_path / "package")
    found = diagnose_package(str(package), PY312, arch="x86_64")

    assert found.will_run and found.findings == ()
    assert found.native_files == 1  # markupsafe/_speedups.cpython-312-x86_64-linux-gnu.so
    run = doctor_cli("--package", str(package), "--runtime", "python3.12", "--arch", "x86_64")
    assert run.returncode == 0, run.stdout
    assert run.stdout.startswith(f"{package}: will import on python3.12 (x86_64)")


def test_the_same_projects_macos_wheel_will_not(tmp_path):
    package = installed(wheel(MARKUPSAFE, "macosx_11_0_arm64"), tmp_path / "package")
    found = diagnose_package(str(package), PY312, arch="x86_64")

    assert not found.will_run
    problems = errors(found)
    assert any(p.startswith("wheel: ") and "macOS (macosx_11_0_arm64), not Amazon Linux 2023" in p for p in problems)
    assert any(p.startswith("abi: ") and "_speedups.cpython-312-darwin.so: is a macOS extension module" in p
               for p in problems)
    run = doctor_cli("--package", str(package), "--runtime", "python3.12")
    assert run.returncode == 1
    assert "fix: `pip install --platform manylinux_2_28_x86_64 --only-binary=:all: --python-version 3.12" in run.stdout


def test_its_aarch64_wheel_against_x86_64_will_not(tmp_path):
    package = installed(wheel(MARKUPSAFE, "manylinux2014_aarch64"), tmp_path / "package")
    found = diagnose_package(str(package), PY312, arch="x86_64")

    problems = errors(found)
    assert any(p.startswith("native: ") and "is built for arm64 (64-bit), but the function's architecture is x86_64"
               in p for p in problems)
    assert any(p.startswith("wheel: ") and "aarch64 (manylinux_2_17_aarch64), not x86_64" in p for p in problems)
    assert diagnose_package(str(package), PY312, arch="arm64").will_run  # the right function for it


def test_a_wheel_for_another_cpython_minor_will_not(tmp_path):
    package = installed(wheel(MARKUPSAFE, "manylinux2014_x86_64", python="3.11"), tmp_path / "package")
    found = diagnose_package(str(package), PY312, arch="x86_64")

    problems = errors(found)
    assert any(p.startswith("abi: markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so: is built for CPython 3.11, "
                            "but the function runs Python 3.12") and "Runtime.ImportModuleError" in p for p in problems)
    assert any(p.startswith("wheel: ") and "CPython 311, not Python 3.12" in p for p in problems)
    assert diagnose_package(str(package), RUNTIMES["python3.11"], arch="x86_64").will_run


def test_a_library_needing_a_newer_glibc_than_the_runtimes_will_not(tmp_path):
    if os.uname().machine != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("needs gcc on x86_64 to build a test library")
    source = tmp_path / "newer.c"
    source.write_text("#include <stdlib.h>\nunsigned int draw(void) { return arc4random(); }\n")  # GLIBC_2.36
    package = tmp_path / "package"
    package.mkdir()
    built = subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(package / "libnewer.so"), str(source)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"this glibc has no arc4random (2.36): {built.stderr.strip()[-200:]}")
    found = diagnose_package(str(package), PY312, arch="x86_64")

    assert errors(found) == [
        "glibc: libnewer.so: needs GLIBC_2.36 (arc4random), but python3.12 runs on Amazon Linux 2023 with glibc "
        "2.34: importing it fails with \"version `GLIBC_2.36' not found\""]


def test_a_pure_python_package_will_import(tmp_path):
    package = installed(wheel("jmespath==1.0.1"), tmp_path / "package")
    found = diagnose_package(str(package), RUNTIMES["python3.9"], arch="arm64")

    assert found.will_run and found.findings == () and found.native_files == 0


def test_a_package_over_250_mb_unzipped_will_not(tmp_path):
    package = write_function(tmp_path / "package", "def handler(event, context):\n    return 1\n")
    with open(package / "model.bin", "wb") as f:
        f.truncate(251 * 1024 * 1024)  # sparse: nothing written, 251 MB as Lambda counts it
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    found = diagnose_package(str(package), PY312, layers=(str(layer),), handler="app.handler")

    assert errors(found) == ["size: : the function and its layers are 251.0 MB unzipped: over Lambda's 250.0 MB "
                             "(deployment is refused)"]


def test_what_the_runtimes_user_cannot_read_will_not_import(tmp_path):
    package = write_function(tmp_path / "package", "def handler(event, context):\n    return 1\n")
    (package / "app.py").chmod(0o600)
    (package / "private").mkdir(mode=0o700)
    found = diagnose_package(str(package), PY312, handler="app.handler")

    assert [f"{f.path}: {f.fix}" for f in found.findings if f.check == "permissions"] == [
        "private: `chmod 755` it before zipping (`chmod -R a+rX .`)",
        "app.py: `chmod 644` it before zipping (`chmod -R a+rX .`)"]


def test_a_zip_is_judged_as_uploaded_its_modes_included(tmp_path):
    package = installed(wheel(MARKUPSAFE, "manylinux2014_x86_64", python="3.11"), tmp_path / "package")
    archive = tmp_path / "function.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(package.rglob("*")):
            out.write(path, path.relative_to(package))
        hidden = zipfile.ZipInfo("secret.txt")
        hidden.create_system, hidden.external_attr = 3, 0o100600 << 16
        out.writestr(hidden, "only the owner")
    found = diagnose_package(str(archive), PY312, arch="x86_64")

    assert found.zipped_bytes == archive.stat().st_size and found.native_files == 1
    checks = {(f.check, f.path) for f in found.findings if f.severity is Severity.ERROR}
    assert ("permissions", "secret.txt") in checks
    assert ("abi", "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so") in checks


def test_the_handler_must_be_in_the_package(tmp_path):
    package = write_function(tmp_path / "package", "def other(event, context):\n    return 1\n")
    layer = tmp_path / "layer"
    write_function(layer / "python" / "shared", "def handler(event, context):\n    return 1\n", module="tools")

    missing = diagnose_package(str(package), PY312, handler="main.handler")
    undefined = diagnose_package(str(package), PY312, handler="app.handler")
    in_layer = diagnose_package(str(package), PY312, layers=(str(layer),), handler="shared.tools.handler")

    assert [f.message for f in missing.findings] == [
        "handler main.handler: no module main in the package or its layers' python/ (Runtime.ImportModuleError: "
        "No module named 'main')"]
    assert [(f.severity, f.message) for f in undefined.findings] == [
        (Severity.WARNING, "handler app.handler: handler is not defined at the top of the module (Runtime.HandlerNotFound, "
                    "unless it is made some other way)")]
    assert in_layer.findings == ()


def test_requires_python_is_checked_against_the_runtime(tmp_path):
    package = tmp_path / "package"
    metadata = package / "newish-1.0.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: newish\nVersion: 1.0\nRequires-Python: >=3.13\n\nbody\n")
    found = diagnose_package(str(package), PY312)

    assert errors(found) == ["requires-python: newish-1.0.dist-info/METADATA: requires Python >=3.13, and the "
                             "function runs Python 3.12"]
    assert diagnose_package(str(package), RUNTIMES["python3.13"]).will_run
    for spec, verdict in ((">=3.9", True), (">=3.9,<3.12", False), ("~=3.10", True), ("~=3.12.1", True),
                          ("==3.11.*", False), ("!=3.12.*", False), (">3.12", False), ("<4", True)):
        assert _python_satisfies((3, 12), spec) is verdict, spec


def test_json_and_the_exit_status_for_what_cannot_be_read(tmp_path):
    package = installed(wheel(MARKUPSAFE, "macosx_11_0_arm64"), tmp_path / "package")
    run = doctor_cli("--package", str(package), "--runtime", "python3.12", "--json")
    found = json.loads(run.stdout)

    assert run.returncode == 1 and found["will_run"] is False and found["runtime"] == "python3.12"
    assert {f["check"] for f in found["findings"]} >= {"wheel", "abi"}
    assert doctor_cli("--package", str(tmp_path / "missing"), "--runtime", "python3.12").returncode == 2
    no_runtime = doctor_cli("--package", str(package))
    assert no_runtime.returncode == 2 and "--package needs --runtime" in no_runtime.stderr


async def test_the_server_says_what_would_not_import_once_at_start_up(tmp_path, caplog):
    own = "{}.{}".format(*sys.version_info[:2])
    other = "3.12" if own != "3.12" else "3.11"
    code = installed(wheel(MARKUPSAFE, "manylinux2014_x86_64", python=other), tmp_path / "code")
    (code / "app.py").write_text("def handler(event, context):\n    return 1\n")
    async with running_server(FunctionConfig(name="f", code=str(code))) as server:
        assert (await server.invoke("f", b"{}")).function_error is None  # it starts all the same
        assert (await server.invoke("f", b"{}")).function_error is None

    said = [r.getMessage() for r in caplog.records if "_speedups" in r.getMessage()]
    tag = other.replace(".", "")
    assert len(said) == 1, said
    assert said[0].startswith(f"lambdalet: WARNING: function f: markupsafe/_speedups.cpython-{tag}-x86_64-linux-gnu.so: "
                              f"is built for CPython {other}, but the function runs Python {own}")
    assert "(fix: `pip install --platform" in said[0]
