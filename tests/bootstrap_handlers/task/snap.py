import os

from snapshot_restore_py import register_after_restore, register_before_snapshot

FAIL = os.environ.get("SNAP_FAIL", "")


@register_before_snapshot
def before_1():
    print("before-1")
    if FAIL == "before":
        raise ValueError("before hook failed")


def before_2(tag, *, extra):
    print(f"before-2 {tag} {extra}")


register_before_snapshot(before_2, "arg", extra="kw")


@register_after_restore
def after_1():
    print("after-1")
    if FAIL == "after":
        raise KeyError("after hook failed")


@register_after_restore
def after_2():
    print("after-2")


def handler(event, context):
    return "restored"
