"""The runtime's user (issue 4, strict's "optionally a separate uid"): a function configured with
`user` runs its runtime as that uid and gid, as Lambda runs every runtime as sbx_user1051 (uid
993): a handler sees that uid, cannot read a file only root may read, and still writes its /tmp.

The runtime here is lambdalet's bootstrap on the system interpreter, from a copy of its package in
a directory any user may enter: Lambda's rule holds, the user must be able to reach the runtime,
the test suite's own interpreter lives in root's closed home, and the checkout may too (CI clones
into a 0700 `mktemp -d` directory). Needs root (to switch users, and for the private mount
namespace), as CI has."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import REPO, running_server, write_function
from runtime_api import FunctionConfig
from runtime_api.cli import build_parser, serve_config
from runtime_api.config import ConfigError
from sandbox import host
from sandbox.isolation import Isolation
from sandbox.runtime_user import LAMBDA_GID, LAMBDA_UID, RuntimeUser, parse

SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
PROBLEM = host.mount_namespace_problem() if os.geteuid() == 0 else "not root"
needs_root = pytest.mark.skipif(
    PROBLEM is not None or SYSTEM_PYTHON is None or shutil.which("setpriv") is None,
    reason=f"needs root, mount namespaces, util-linux's setpriv and an interpreter any user may run: {PROBLEM}")

HANDLER = '''
import errno, os

def handler(event, context):
    try:
        open(event["secret"]).read()
        secret = "read"
    except OSError as exc:
        secret = errno.errorcode[exc.errno]
    with open(event.get("mine", "/tmp/mine"), "w") as f:  # its own /tmp, where it has one
        f.write("x")
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "secret": secret,
            "tmp": os.listdir("/tmp"), "task": sorted(os.listdir(os.environ["LAMBDA_TASK_ROOT"]))}
'''


def function(code: Path, isolation: Isolation, user: str, home: Path | None = None) -> FunctionConfig:
    """With `home`, lambdalet's bootstrap from `home` on an interpreter outside root's home (at
    isolation none the user reaches what is at its host path); without, the managed Python runtime,
    whose interpreter, runtime client and SDK it reaches at /var/lang and /var/runtime wherever they
    are on the host."""
    if home is None:
        return FunctionConfig(name="f", code=str(code), isolation=isolation, user=user)
    return FunctionConfig(name="f", code=str(code), isolation=isolation, user=user,
                          runtime=[SYSTEM_PYTHON, "-c", "import sys; from bootstrap.__main__ import main; "
                                                        "sys.exit(main())"],
                          env={"PYTHONPATH": str(home)})


@pytest.fixture
def open_dir():
    """A directory any user may enter (pytest's tmp_path sits in root's 0700 /tmp/pytest-of-root)."""
    path = Path(tempfile.mkdtemp(prefix="lambdalet-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def runtime_home(open_dir):
    """This checkout's bootstrap package, copied where any user may read it: at isolation none the
    runtime's user sees the host's directories as they are, and no mount namespace can open the
    checkout's to it."""
    package = open_dir / "runtime" / "bootstrap"
    shutil.copytree(REPO / "bootstrap", package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (package.parent, package, *package.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return package.parent


@needs_root
@pytest.mark.parametrize("isolation", [Isolation.STANDARD, Isolation.STRICT])
async def test_the_runtime_runs_as_the_configured_user(tmp_path, isolation):
    code = write_function(tmp_path / "code", HANDLER)
    code.chmod(0o755)  # Lambda's rule: the runtime's user reads the code
    (code / "app.py").chmod(0o644)
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    async with running_server(function(code, isolation, "sbx_user1051")) as server:
        result = await server.invoke("f", json.dumps({"secret": str(secret)}).encode())
    assert result.function_error is None, result.payload
    seen = json.loads(result.payload)
    assert (seen["uid"], seen["gid"], seen["groups"]) == (LAMBDA_UID, LAMBDA_GID, [])
    assert seen["secret"] in ("EACCES", "ENOENT")  # ENOENT: the host's /tmp is not even there
    assert "mine" in seen["tmp"]  # its own /tmp is writable
    assert "app.py" in seen["task"]


@needs_root
async def test_a_root_only_file_on_the_host_is_out_of_reach(open_dir, runtime_home):
    """Seen at its host path (isolation none: no private /tmp hides it), and a uid by number."""
    code = write_function(open_dir / "code", HANDLER)
    code.chmod(0o755)
    (code / "app.py").chmod(0o644)
    secret = open_dir / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    writable = open_dir / "writable"  # at isolation none /tmp is the host's: not written there
    writable.mkdir()
    writable.chmod(0o777)
    async with running_server(function(code, Isolation.NONE, "65534", runtime_home)) as server:
        result = await server.invoke("f", json.dumps({"secret": str(secret), "mine": str(writable / "mine")}).encode())
    assert result.function_error is None, result.payload
    seen = json.loads(result.payload)
    assert seen["uid"] == 65534 and seen["secret"] == "EACCES"


def test_user_names_and_numbers():
    assert parse("sbx_user1051") == RuntimeUser(LAMBDA_UID, LAMBDA_GID)
    assert parse("1234:99") == RuntimeUser(1234, 99)
    assert parse("root") == RuntimeUser(0, 0)
    with pytest.raises(ValueError, match="not a user on this host"):
        parse("no-such-user-here")
    with pytest.raises(ConfigError, match="function f: user 'nobody-at-all'"):
        FunctionConfig(name="f", user="nobody-at-all")
    args = build_parser().parse_args(["serve", "--user", "993:990"])
    assert serve_config(args).function[0].run_as == RuntimeUser(993, 990)


@needs_root
async def test_with_snapstart_a_function_with_a_user_keeps_to_the_contract(tmp_path, caplog):
    """A forked copy could not join its own cgroups and mounts without root: no template."""
    code = write_function(tmp_path / "code", HANDLER)
    config = FunctionConfig(name="f", code=str(code), isolation=Isolation.STANDARD, user="sbx_user1051",
                            snapstart=True)
    async with running_server(config) as server:
        assert server.functions["f"].template is None
    assert any("SnapStart's contract only" in r.getMessage() and "as user 993:990" in r.getMessage()
               for r in caplog.records)
