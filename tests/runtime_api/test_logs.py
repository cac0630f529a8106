"""runtime_api.logs: the 4 KB log tail (the platform's own lines: test_platform_log.py)."""

from __future__ import annotations

from runtime_api import logs


def test_the_tail_keeps_the_last_4_kb():
    tail = logs.TailBuffer()
    for i in range(3000):
        tail.append(f"line {i}\n".encode())
    value = tail.value()
    assert len(value) == 4096 and value.endswith(b"line 2999\n")
