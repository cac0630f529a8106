"""runtime_api.codewatch: the cheap "may the code have changed?" asked at every SnapStart restore."""

from __future__ import annotations

import os

from runtime_api.codewatch import CodeWatch


def test_a_watch_reports_each_kind_of_change_once_and_follows_new_directories(tmp_path):
    code, layer = tmp_path / "code", tmp_path / "layer"
    (code / "pkg").mkdir(parents=True)
    layer.mkdir()
    (code / "app.py").write_text("v1")
    watch = CodeWatch((str(code), str(layer)))
    try:
        assert watch.changed() is False
        (code / "app.py").write_text("v2")  # written
        assert watch.changed() is True
        assert watch.changed() is False  # reported once
        os.utime(code / "app.py")  # touched
        assert watch.changed() is True
        (code / "pkg" / "new").mkdir()  # a new directory...
        assert watch.changed() is True
        (code / "pkg" / "new" / "mod.py").write_text("x")  # ...is watched from then on
        assert watch.changed() is True
        (layer / "lib.py").write_text("x")  # the layers too
        assert watch.changed() is True
        (code / "app.py").rename(code / "main.py")  # renamed
        assert watch.changed() is True
        (code / "main.py").unlink()  # removed
        assert watch.changed() is True
        assert watch.changed() is False
    finally:
        watch.close()


def test_without_a_watch_every_question_is_answered_yes(tmp_path):
    watch = CodeWatch((str(tmp_path),))
    watch.close()  # as when inotify is missing or its limit is reached: the caller walks
    assert watch.changed() is True
