"""The user a runtime runs as, when it is not the host's: Lambda runs every runtime as a non-root
user (sbx_user1051, uid 993, gid 990), so a function that writes outside /tmp, or reads a file only
root may read, fails there; running it as such a user here shows that before deployment.

The runtime drops to the user at its last exec: util-linux's `setpriv --reuid --regid
--clear-groups` runs after everything that needs root (joining the cgroups, the mounts, strict's
network namespace, which the exec helper joins before exec'ing setpriv: the deny-list does not
deny setresuid) and execs the runtime, same process, same pid. One exec more, only for functions
that ask for it.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
from dataclasses import dataclass

# Lambda's runtime user: the uid and gid AWS's RIE gives the runtime in its Lambda Managed Instances
# mode (observed), and the name LocalStack gives it (its LOCALSTACK_USER). Used by that name even
# where the host has no such user.
LAMBDA_USER = "sbx_user1051"
LAMBDA_UID, LAMBDA_GID = 993, 990


@functools.cache
def setpriv() -> str | None:
    """util-linux's `setpriv`, by absolute path (the runtime's PATH is not ours)."""
    return shutil.which("setpriv")


@dataclass(frozen=True, slots=True)
class RuntimeUser:
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"

    def argv(self, runtime_argv: list[str] | tuple[str, ...]) -> list[str]:
        """The command line that execs `runtime_argv` as this user, with no supplementary groups."""
        return [setpriv() or "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--",
                *runtime_argv]

    def problem_reaching(self, path: str) -> str | None:
        """Why this user cannot exec or read `path` (a directory on the way without search
        permission, or the file without read and execute), or None. Lambda's rule: what the runtime
        needs must be readable by its user."""
        parts = os.path.abspath(path).split("/")[1:]
        current = ""
        for index, part in enumerate(parts):
            current += "/" + part
            try:
                st = os.stat(current)
            except OSError:
                return None  # missing: the exec's own error will say it
            last = index == len(parts) - 1
            needed = (4 | 1) if last and not stat.S_ISDIR(st.st_mode) else 1
            if not self._may(st, needed):
                what = "read and execute" if needed == 5 else "enter"
                return (f"uid {self.uid} may not {what} {current} ({stat.filemode(st.st_mode)}, "
                        f"owner uid {st.st_uid})")
        return None

    def _may(self, st: os.stat_result, needed: int) -> bool:
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid == self.gid:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        return bits & needed == needed


def parse(text: str) -> RuntimeUser:
    """`name`, `uid` or `uid:gid` (a name from the host's passwd; sbx_user1051, Lambda's, is known
    even where the host lacks it). A uid without a gid takes its passwd entry's group, else the
    number of the uid. ValueError if it names no user."""
    name, _, group = text.partition(":")
    if not name:
        raise ValueError(f"user {text!r}: expected a name, a uid or uid:gid")
    if name.isdigit():
        uid = int(name)
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    else:
        try:
            entry = pwd.getpwnam(name)
            uid, gid = entry.pw_uid, entry.pw_gid
        except KeyError:
            if name != LAMBDA_USER:
                raise ValueError(f"user {name!r} is not a user on this host (give a uid, or uid:gid)") from None
            uid, gid = LAMBDA_UID, LAMBDA_GID
    if group:
        if not group.isdigit():
            raise ValueError(f"user {text!r}: the group must be a number (uid:gid)")
        gid = int(group)
    return RuntimeUser(uid, gid)
