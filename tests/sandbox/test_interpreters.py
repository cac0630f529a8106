"""Finding a runtime's interpreter on this machine (sandbox/interpreters.py): a virtualenv's Python
stands for its base, pyenv's shims are looked through, the exact version or a clear message; and
what a runtime brings from the cache (sandbox/runtime_cache.py): the runtime directory holds only
lambdalet's runtime client, compiled for the interpreter that runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BASE_PYTHON
from sandbox import interpreters, runtime_cache
from sandbox.interpreters import InterpreterMissing, Places, ask_python, find_python, own_python, python_candidates

OWN = "{}.{}".format(*sys.version_info[:2])


def test_a_virtualenvs_python_is_its_base_interpreter(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    found = ask_python(str(venv / "bin" / "python"))

    assert found is not None
    assert found.executable == os.path.realpath(BASE_PYTHON)
    assert found.version[:2] == sys.version_info[:2]
    assert found.prefix is not None and not found.prefix.startswith(str(venv))
    assert own_python() == ask_python(BASE_PYTHON)


def test_the_exact_version_is_found_and_a_shim_is_looked_through(tmp_path):
    root = tmp_path / "pyenv"
    shims = root / "shims"
    shims.mkdir(parents=True)
    shim = shims / f"python{OWN}"
    shim.write_text("#!/bin/sh\necho a shim must not be run >&2; exit 3\n")
    shim.chmod(0o755)
    version = root / "versions" / f"{OWN}.99" / "bin"
    version.mkdir(parents=True)
    (version / f"python{OWN}").symlink_to(BASE_PYTHON)
    places = Places(f"{shims}:{os.defpath}", str(root), str(tmp_path / "uv"))

    candidates = python_candidates(OWN, places)
    assert str(shim) not in candidates
    assert str(version / f"python{OWN}") in candidates
    assert find_python(OWN, places=places).version[:2] == sys.version_info[:2]


def test_a_version_nowhere_to_be_found_says_where_it_looked(tmp_path):
    places = Places(str(tmp_path / "bin"), str(tmp_path / "no-pyenv"), str(tmp_path / "no-uv"))
    with pytest.raises(InterpreterMissing) as raised:
        find_python("3.7", places=places)
    message = str(raised.value)
    assert message.startswith("Python 3.7 is not on this machine: not on PATH (python3.7), not under pyenv "
                              f"({tmp_path / 'no-pyenv'}/versions), not under uv ({tmp_path / 'no-uv'})")
    assert "`pyenv install 3.7`, `uv python install 3.7`" in message


def test_the_runtime_directory_holds_only_the_runtime_client_compiled():
    interpreter = own_python()
    first = runtime_cache.python_runtime_dir(interpreter)
    again = runtime_cache.python_runtime_dir(interpreter)

    assert first == again
    assert sorted(path.name for path in first.iterdir() if path.name != "__pycache__") == ["bootstrap", "bootstrap.py"]
    tag = sys.implementation.cache_tag
    assert (first / "bootstrap" / "__pycache__" / f"runtime.{tag}.pyc").exists()
    assert (first / "bootstrap.py").read_text() == (Path(interpreters.__file__).parent.parent / "bootstrap" /
                                                    "managed.py").read_text()
