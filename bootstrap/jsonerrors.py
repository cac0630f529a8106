"""Why a JSON document failed to decode, in simplejson's words and positions.

Only imported when an event does not decode: the fast path is `_json`'s C scanner, whose messages
differ from simplejson's. This module re-reads the document with a small validating scanner that
fails where simplejson fails and says what simplejson says (awslambdaric puts that text into
`Runtime.UnmarshalError`).
"""

_WS = " \t\n\r"
_ESCAPES = set('"\\/bfnrt')
_HEX = set("0123456789abcdefABCDEF")
_DIGITS = set("0123456789")


def _linecol(doc, pos):
    line = doc.count("\n", 0, pos) + 1
    col = pos + 1 if line == 1 else pos - doc.rindex("\n", 0, pos)
    return line, col


class DecodeError(ValueError):
    """simplejson.JSONDecodeError's text: `msg: line L column C (char P)`, or with an end
    position `msg: line L column C - line L2 column C2 (char P - E)`."""

    def __init__(self, msg, doc, pos, end=None):
        line, col = _linecol(doc, pos)
        msg = msg.replace("%r", repr(doc[pos:pos + 1]))
        if end is None:
            text = f"{msg}: line {line} column {col} (char {pos})"
        else:
            eline, ecol = _linecol(doc, end)
            text = f"{msg}: line {line} column {col} - line {eline} column {ecol} (char {pos} - {end})"
        super().__init__(text)
        self.msg = msg
        self.doc = doc
        self.pos = pos
        self.end = end


def _skip_ws(s, i):
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _string(s, end):
    """Validate a string whose opening quote is at end-1; return the index after its closing quote."""
    begin = end - 1
    n = len(s)
    while True:
        while end < n and s[end] != '"' and s[end] != "\\" and s[end] >= " ":
            end += 1
        if end >= n:
            raise DecodeError("Unterminated string starting at", s, begin)
        c = s[end]
        end += 1
        if c == '"':
            return end
        if c != "\\":
            raise DecodeError("Invalid control character %r at", s, end - 1)
        if end >= n:
            raise DecodeError("Unterminated string starting at", s, begin)
        esc = s[end]
        if esc != "u":
            if esc not in _ESCAPES:
                raise DecodeError("Invalid \\X escape sequence %r", s, end)
            end += 1
        else:
            digits = s[end + 1:end + 5]
            if len(digits) != 4 or not all(ch in _HEX for ch in digits):
                raise DecodeError("Invalid \\uXXXX escape sequence", s, end - 1)
            end += 5


def _number(s, i):
    n = len(s)
    j = i
    if j < n and s[j] == "-":
        j += 1
    if j < n and s[j] == "0":
        j += 1
    elif j < n and s[j] in "123456789":
        while j < n and s[j] in _DIGITS:
            j += 1
    else:
        return None
    if j + 1 < n and s[j] == "." and s[j + 1] in _DIGITS:
        j += 2
        while j < n and s[j] in _DIGITS:
            j += 1
    if j < n and s[j] in "eE":
        k = j + 1
        if k < n and s[k] in "+-":
            k += 1
        if k < n and s[k] in _DIGITS:
            while k < n and s[k] in _DIGITS:
                k += 1
            j = k
    return j


def _value(s, idx):
    if idx >= len(s):
        raise DecodeError("Expecting value", s, idx)
    c = s[idx]
    if c == '"':
        return _string(s, idx + 1)
    if c == "{":
        return _object(s, idx + 1)
    if c == "[":
        return _array(s, idx + 1)
    for word in ("null", "true", "false"):
        if s.startswith(word, idx):
            return idx + len(word)
    end = _number(s, idx)
    if end is not None:
        return end
    # NaN, Infinity and -Infinity are refused (simplejson.loads's allow_nan=False).
    raise DecodeError("Expecting value", s, idx)


def _object(s, end):
    nextchar = s[end:end + 1]
    if nextchar != '"':
        if nextchar and nextchar in _WS:
            end = _skip_ws(s, end)
            nextchar = s[end:end + 1]
        if nextchar == "}":
            return end + 1
        if nextchar != '"':
            raise DecodeError("Expecting property name enclosed in double quotes or '}'", s, end)
    end += 1
    while True:
        end = _string(s, end)
        if s[end:end + 1] != ":":
            end = _skip_ws(s, end)
            if s[end:end + 1] != ":":
                raise DecodeError("Expecting ':' delimiter", s, end)
        end = _skip_ws(s, end + 1)
        end = _value(s, end)
        end = _skip_ws(s, end)
        nextchar = s[end:end + 1]
        end += 1
        if nextchar == "}":
            return end
        if nextchar != ",":
            raise DecodeError("Expecting ',' delimiter or '}'", s, end - 1)
        comma = end - 1
        end = _skip_ws(s, end)
        nextchar = s[end:end + 1]
        end += 1
        if nextchar != '"':
            if nextchar == "}":
                raise DecodeError("Illegal trailing comma before end of object", s, comma)
            raise DecodeError("Expecting property name enclosed in double quotes", s, end - 1)


def _array(s, end):
    end = _skip_ws(s, end)
    nextchar = s[end:end + 1]
    if nextchar == "]":
        return end + 1
    if nextchar == "":
        raise DecodeError("Expecting value or ']'", s, end)
    while True:
        end = _value(s, end)
        end = _skip_ws(s, end)
        nextchar = s[end:end + 1]
        end += 1
        if nextchar == "]":
            return end
        if nextchar != ",":
            raise DecodeError("Expecting ',' delimiter or ']'", s, end - 1)
        comma = end - 1
        end = _skip_ws(s, end)
        if s[end:end + 1] == "]":
            raise DecodeError("Illegal trailing comma before end of array", s, comma)


def diagnose(s, idx, original=None):
    """The error simplejson raises for document `s` scanned from `idx`; `original` (the fast
    scanner's exception) when the syntax is fine and the failure lies elsewhere (e.g. an integer
    longer than Python's digit limit)."""
    try:
        end = _value(s, idx)
    except DecodeError as e:
        return e
    end = _skip_ws(s, end)
    if end != len(s):
        return DecodeError("Extra data", s, end, len(s))
    return original if original is not None else ValueError("undecodable JSON")
