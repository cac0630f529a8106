"""Content-type sniffing as Go's `http.DetectContentType` does it (the WHATWG algorithm over the
first 512 bytes), because RIE's invoke responses carry the sniffed type, not the runtime's.
Only the signatures a Lambda response plausibly starts with are kept; everything else falls to
text/plain (no binary bytes) or application/octet-stream, as in Go.
"""

from __future__ import annotations

import re

SNIFF_LEN = 512

_HTML_TAGS = (
    b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
    b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--",
)
_EXACT = (
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain; charset=utf-16be"),
    (b"\xff\xfe", "text/plain; charset=utf-16le"),
    (b"\xef\xbb\xbf", "text/plain; charset=utf-8"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"OggS\x00", "application/ogg"),
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    (b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    (b"\x00asm", "application/wasm"),
)
# The first bytes any signature above starts with: a body (a JSON document, mostly) that starts
# with none of them is not compared with each signature in turn.
_EXACT_FIRST = frozenset(signature[:1] for signature, _ in _EXACT)
_WHITESPACE = b"\t\n\x0c\r "
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def sniff_content_type(body: bytes) -> str | None:
    """The type Go's net/http would send for this body; None for an empty body (no header)."""
    if not body:
        return None
    data = body[:SNIFF_LEN]
    stripped = data.lstrip(_WHITESPACE)
    if stripped[:1] == b"<":  # every HTML tag and XML declaration starts so
        upper = stripped[:16].upper()
        for tag in _HTML_TAGS:
            if upper.startswith(tag) and len(stripped) > len(tag) and stripped[len(tag)] in b" >":
                return "text/html; charset=utf-8"
        if stripped.startswith(b"<?xml"):
            return "text/xml; charset=utf-8"
    if data[:1] in _EXACT_FIRST:
        for signature, kind in _EXACT:
            if data.startswith(signature):
                return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wave"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if _BINARY.search(data):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"
