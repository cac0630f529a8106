"""runtime_api.http: a header field as it goes on the wire (a value never splits into two lines)."""

from __future__ import annotations

import pytest

from runtime_api.http1 import field as _field


def test_header_values_never_split():
    assert _field("X-Trace", "a\r\nInjected: yes") == (b"X-Trace", b"a  Injected: yes")
    assert _field("X", "café") == (b"X", "café".encode("latin-1"))
    assert _field("X", "日本") == (b"X", "日本".encode())
    with pytest.raises(ValueError):
        _field("Bad Name", "v")
