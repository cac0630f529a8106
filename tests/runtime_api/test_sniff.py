"""runtime_api.sniff: a response's Content-Type sniffed from its first bytes, as Go's
http.DetectContentType (and so RIE) does."""

from __future__ import annotations

import pytest

from runtime_api.sniff import sniff_content_type


@pytest.mark.parametrize("body, kind", [
    (b'{"hello": "world"}', "text/plain; charset=utf-8"),  # RIE: JSON is text/plain
    (b"plain text", "text/plain; charset=utf-8"),
    (b"<html><body>hi</body></html>", "text/html; charset=utf-8"),
    (b"  \n<!DOCTYPE html>", "text/html; charset=utf-8"),
    (b"<?xml version='1.0'?>", "text/xml; charset=utf-8"),
    (b"\x00\x00binary", "application/octet-stream"),
    (b"%PDF-1.7", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"", None),
])
def test_content_types_are_sniffed_as_go_does(body, kind):
    assert sniff_content_type(body) == kind
