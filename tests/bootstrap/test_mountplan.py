"""A SnapStart copy's private /tmp: the mount plan as the host makes it (sandbox.restore), its JSON
form in `_LAMBDALET_TEMPLATE` (bootstrap.mountplan), and a forked process making it
(bootstrap.namespaces)."""

from __future__ import annotations

import json
import os
import uuid

import msgspec
import pytest

from bootstrap import mountplan
from bootstrap.mountplan import BindReadOnly, MakeDirectory, MakeFile, Move, Tmpfs
from runtime_api.snapstart import TemplateSettings
from sandbox import host, restore
from sandbox.isolation import TASK_ROOT, TMP, PrivateFilesystem

EVERY_KIND = [Tmpfs(TASK_ROOT, 512), MakeDirectory("/var/task/venv"), MakeFile("/var/task/run.sh"),
              BindReadOnly("/tmp/venv", "/var/task/venv"), Move(TASK_ROOT, TMP)]


def test_a_plan_goes_through_the_templates_settings_and_comes_back_the_same():
    settings = msgspec.json.encode(TemplateSettings("lambdalet/1/f/abc", mountplan.encode(EVERY_KIND)))

    assert mountplan.decode(json.loads(settings)["mounts"]) == tuple(EVERY_KIND)


def test_each_step_reads_as_what_it_does_in_json():
    assert mountplan.encode([Tmpfs(TMP, 600), BindReadOnly("/tmp/a", "/var/task/a")]) == [
        {"step": "tmpfs", "target": "/tmp", "size_mb": 600},
        {"step": "bind_read_only", "source": "/tmp/a", "target": "/var/task/a"}]
    assert Tmpfs(TMP, 600).options == "size=600m,mode=1777"


@pytest.mark.parametrize("wrong", [
    None, {"step": "tmpfs", "target": "/tmp", "size_mb": 512},  # not a list
    [["mount", "tmpfs", "/tmp", "tmpfs", 0, "size=512m"]],  # a bare tuple
    [{"step": "umount", "target": "/tmp"}],
    [{"step": "tmpfs", "target": "/tmp"}],
    [{"step": "tmpfs", "target": "/tmp", "size_mb": 512, "flags": 0}],
    [{"step": "tmpfs", "target": "/tmp", "size_mb": "512"}],
    [{"step": "tmpfs", "target": "/tmp", "size_mb": True}],
    [{"step": "move", "source": None, "target": "/tmp"}],
])
def test_anything_but_a_plan_is_refused(wrong):
    with pytest.raises(ValueError):
        mountplan.decode(wrong)


def test_steps_are_values():
    assert Move("/a", "/b") != BindReadOnly("/a", "/b")
    assert {MakeDirectory("/x"), MakeDirectory("/x")} == {MakeDirectory("/x")}
    assert repr(Tmpfs(TMP, 512)) == "Tmpfs('/tmp', 512)"
    with pytest.raises(AttributeError):
        Tmpfs(TMP, 512).size_mb = 1
    with pytest.raises(TypeError):
        Move("/a")


def test_a_runtime_outside_tmp_gets_an_empty_tmpfs_on_tmp():
    plan = restore.private_tmp(PrivateFilesystem(ephemeral_mb=600, task_root="/srv/code"),
                               ("/usr/bin/python3", "-m", "bootstrap"), {}, None)

    assert plan == [Tmpfs(TMP, 600)]


def test_what_the_runtime_needs_from_tmp_is_bound_back_read_only(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    script = f"{TMP}/lambdalet-test-{uuid.uuid4().hex}"  # a runtime directly in /tmp
    open(script, "w").close()
    try:
        plan = restore.private_tmp(PrivateFilesystem(task_root="/srv/code"),
                                   (script, str(venv / "bin" / "python")), {}, None)
    finally:
        os.unlink(script)

    staged_script, staged_venv = TASK_ROOT + script[len(TMP):], TASK_ROOT + str(venv)[len(TMP):]
    assert plan[0] == Tmpfs(TASK_ROOT, 512) and plan[-1] == Move(TASK_ROOT, TMP)
    assert set(zip(plan[1:-1:2], plan[2:-1:2])) == {
        (MakeFile(staged_script), BindReadOnly(script, staged_script)),
        (MakeDirectory(staged_venv), BindReadOnly(str(venv), staged_venv))}


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [" ".join(line.split()[3:5]) for line in f]


def _enter_and_look(private_tmp, kept) -> dict:
    try:
        private_tmp.enter()
        seen = {"tmp": sorted(os.listdir(TMP)), "kept": open(f"{kept}/file").read()}
        try:
            open(f"{kept}/new", "w").close()
            seen["write"] = "written"
        except OSError as exc:
            seen["write"] = os.strerror(exc.errno)
        return seen
    except Exception as exc:
        return {"error": repr(exc)}


@pytest.mark.skipif(os.geteuid() != 0 or host.mount_namespace_problem() is not None,
                    reason="needs root and mount namespaces")
def test_a_forked_process_makes_the_plan_in_a_namespace_of_its_own(tmp_path):
    from bootstrap.namespaces import PrivateTmp

    kept, stage = tmp_path / "kept", tmp_path / "stage"
    kept.mkdir()
    stage.mkdir()
    (kept / "file").write_text("kept")
    (tmp_path / "other").write_text("not kept")
    staged = str(stage) + str(kept)[len(TMP):]
    private_tmp = PrivateTmp([Tmpfs(str(stage), 8), MakeDirectory(staged), BindReadOnly(str(kept), staged),
                              Move(str(stage), TMP)])
    before = _mountinfo()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what it sees, and never returns into pytest
        try:
            os.write(write_end, json.dumps(_enter_and_look(private_tmp, kept)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        seen = json.loads(f.read())
    os.waitpid(pid, 0)

    assert seen == {"tmp": [str(kept).split("/")[2]], "kept": "kept", "write": os.strerror(30)}  # EROFS
    assert _mountinfo() == before
    assert (tmp_path / "other").exists() and not (kept / "new").exists()
