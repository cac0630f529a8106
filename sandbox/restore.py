"""What a SnapStart copy (a fork of its function's template, bootstrap/template.py) does to join
its new environment's isolation, as data the copy carries out with plain syscalls before any user
code runs again: the cgroup `tasks` files to join, and the mounts that give it a private `/tmp`.

A copy is born in its template's mount namespace, whose /tmp is the template's own (with whatever
the runtime needs from the host's /tmp bound back into it: sandbox/isolation.py). In a namespace of
its own the copy builds a fresh tmpfs the way the exec shim does: mounted first on /var/task (over
the code), the kept paths bound into it read-only from the template's /tmp, then moved over /tmp,
which uncovers the code at /var/task again.
"""

from __future__ import annotations

from .cgroups import EnvironmentCgroup
from .isolation import TASK_ROOT, TMP, PrivateFilesystem, _kept_from_tmp

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE = 1, 32, 4096, 8192

# One step: ("mkdir", path) | ("touch", path) | ("mount", source, target, fstype, flags, data).
MountStep = tuple


def cgroup_tasks(cgroup: EnvironmentCgroup | None) -> list[str]:
    return cgroup.tasks_files() if cgroup is not None else []


def private_tmp(filesystem: PrivateFilesystem, argv: tuple[str, ...], env: dict[str, str],
                cwd: str | None) -> list[MountStep]:
    """The steps that give a copy its own empty /tmp of `filesystem.ephemeral_mb`. `argv`, `env`
    and `cwd` as the host sees the runtime (what the template's shim was planned from)."""
    data = f"size={filesystem.ephemeral_mb}m,mode=1777"
    kept = _kept_from_tmp(argv, env, cwd, filesystem.task_root, layers=filesystem.layers)
    if not kept:
        return [("mount", "tmpfs", TMP, "tmpfs", 0, data)]
    steps: list[MountStep] = [("mount", "tmpfs", TASK_ROOT, "tmpfs", 0, data)]
    for path, is_dir in kept:
        staged = TASK_ROOT + path[len(TMP):]
        steps.append(("mkdir" if is_dir else "touch", staged))
        steps.append(("mount", path, staged, None, MS_BIND, None))
        steps.append(("mount", None, staged, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None))
    steps.append(("mount", TASK_ROOT, TMP, None, MS_MOVE, None))
    return steps
