"""What a SnapStart copy (a fork of its function's template, bootstrap/template.py) does to join
its new environment's isolation, as data the copy carries out with plain syscalls before any user
code runs again: the cgroup `tasks` files to join, and the mounts that give it a private `/tmp`.

A copy is born in its template's mount namespace, whose /tmp is the template's own (with whatever
a runtime command of the user's own needs from the host's /tmp bound back into it:
sandbox/isolation.py; lambdalet's own runtime needs nothing there). In a namespace of
its own the copy builds a fresh tmpfs the way the exec shim does: mounted first on /var/task (over
the code), the kept paths bound into it read-only from the template's /tmp, then moved over /tmp,
which uncovers the code at /var/task again. The steps are bootstrap/mountplan.py's, which the
template decodes and its copies make (bootstrap/namespaces.py).
"""

from __future__ import annotations

from bootstrap.mountplan import BindReadOnly, MakeDirectory, MakeFile, Move, Step, Tmpfs

from .cgroups import EnvironmentCgroup
from .isolation import TASK_ROOT, TMP, PrivateFilesystem, kept_from_tmp


def cgroup_tasks(cgroup: EnvironmentCgroup | None) -> list[str]:
    return cgroup.tasks_files() if cgroup is not None else []


def private_tmp(filesystem: PrivateFilesystem, argv: tuple[str, ...], env: dict[str, str],
                cwd: str | None) -> list[Step]:
    """The steps that give a copy its own empty /tmp of `filesystem.ephemeral_mb`. `argv`, `env`
    and `cwd` as the host sees the runtime (what the template's shim was planned from)."""
    kept = kept_from_tmp(argv, env, cwd, filesystem.task_root, elsewhere=filesystem.elsewhere)
    if not kept:
        return [Tmpfs(TMP, filesystem.ephemeral_mb)]
    steps: list[Step] = [Tmpfs(TASK_ROOT, filesystem.ephemeral_mb)]
    for path, is_dir in kept:
        staged = TASK_ROOT + path[len(TMP):]
        steps.append(MakeDirectory(staged) if is_dir else MakeFile(staged))
        steps.append(BindReadOnly(path, staged))
    steps.append(Move(TASK_ROOT, TMP))
    return steps
