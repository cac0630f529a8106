"""A PostgreSQL server of the machine's own (Debian's postgresql package), started for a test or a
benchmark: a new cluster in a temporary directory (`initdb`), listening on a free loopback port
(`pg_ctl`), stopped and removed afterwards, even when what used it failed.

    with running_postgres() as url:     # postgresql://postgres@127.0.0.1:PORT/postgres
        ...

PostgreSQL refuses to run as root; as root, the cluster belongs to the `postgres` user the
package creates, and its commands run as that user (util-linux's `setpriv`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import free_port


class PostgresMissing(Exception):
    """No PostgreSQL server here; the message says what to install."""


def server_binaries() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(path.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(os.path.realpath(pg_ctl)).parent
    raise PostgresMissing("no PostgreSQL server (initdb, pg_ctl): apt-get install postgresql")


@contextmanager
def running_postgres() -> Iterator[str]:
    binaries = server_binaries()
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresMissing("PostgreSQL runs as the user postgres, and there is none: apt-get install "
                                  "postgresql") from None
        as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]
    directory = Path(tempfile.mkdtemp(prefix="lambdalet-pg-"))
    data = directory / "data"
    port = free_port()
    try:
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c max_connections=200 -c fsync=on"
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-o",
                        options, "-w", "-t", "60", "start"], check=True, capture_output=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{exc.cmd[len(as_user)]} failed: {exc.stderr.decode(errors='replace')}") from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)
