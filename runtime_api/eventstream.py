"""The AWS event-stream message encoding (application/vnd.amazon.eventstream), which
InvokeWithResponseStream answers in: prelude (total and header lengths, CRC32), string headers,
payload, CRC32 of the whole message. Pure functions; boto3's own decoder reads them."""

from __future__ import annotations

import struct
import zlib

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7  # the header value type for UTF-8 strings


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack("!B", len(name_bytes)) + name_bytes + struct.pack("!BH", _STRING, len(value_bytes)) + value_bytes


def event_message(event_type: str, payload: bytes, content_type: str) -> bytes:
    headers = (_header(":event-type", event_type) + _header(":content-type", content_type)
               + _header(":message-type", "event"))
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack("!I", zlib.crc32(message))
