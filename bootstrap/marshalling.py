"""Events in, results out, in awslambdaric's exact JSON dialect.

awslambdaric encodes with simplejson (separators ", " and ": ", NaN/Infinity allowed, Decimal as its
exact digits, objects with `_asdict()` such as namedtuples as JSON objects, nested `bytes` decoded as
UTF-8) and decodes with simplejson (strict UTF-8, a leading BOM skipped, NaN/Infinity rejected, its
own error texts). We reproduce that dialect on the standard library's C accelerator `_json`, without
importing the `json` package (which pulls in `re`) on the start-up path.
"""

import _json

from bootstrap import wire
from bootstrap.fault import Fault

UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"


# --- decoding ---------------------------------------------------------------------------------

class _Rejected(Exception):
    """A constant the strict decoder refuses (NaN, Infinity, -Infinity)."""


def _reject_constant(name):
    raise _Rejected(name)


class _ScannerContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo = None


_scan_once = _json.make_scanner(_ScannerContext())
_WS = " \t\n\r"


def loads(data):
    """Decode a JSON document (bytes or str) as simplejson.loads does; errors raise ValueError
    subclasses whose text matches simplejson's."""
    s = str(data, "utf-8") if isinstance(data, (bytes, bytearray)) else data
    n = len(s)
    idx = 0
    if n:
        if s[0] == "\ufeff":
            idx = 1
        elif s[0] == "\xef" and s[:3] == "\xef\xbb\xbf":
            idx = 3
    while idx < n and s[idx] in _WS:
        idx += 1
    try:
        obj, end = _scan_once(s, idx)
    except Exception as e:
        # StopIteration ("Expecting value"), a refused constant, or a syntax error (which `_json`
        # can only phrase once `json.decoder` is imported, else SystemError): let jsonerrors find
        # it and phrase it. A plain ValueError (e.g. too many digits) stands as it is.
        from bootstrap import jsonerrors
        original = e if type(e) is ValueError else None
        raise jsonerrors.diagnose(s, idx, original) from None
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        from bootstrap import jsonerrors
        raise jsonerrors.DecodeError("Extra data", s, end, n)
    return obj


def unmarshal_event(body, content_type):
    """The event passed to the handler: JSON-decoded only when the content type is exactly
    application/json, else the raw bytes."""
    if content_type != wire.JSON:
        return body
    try:
        return loads(body)
    except Exception as e:
        raise Fault(UNMARSHAL_ERROR, f"Unable to unmarshal input: {e}") from None


# --- encoding ---------------------------------------------------------------------------------

_encode_ascii = _json.encode_basestring_ascii
_encode_utf8 = _json.encode_basestring


def _float_text(o):
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(float(o)) if type(o) is not float else float.__repr__(o)


_INF = float("inf")


class Encoder:
    """simplejson.JSONEncoder(allow_nan=True) with awslambdaric's Decimal rule.

    Two paths with the same output. Values made only of exact dicts, lists, tuples, str, int,
    float, bool and None (what nearly every handler returns) go through `_json`'s C encoder, which
    writes those exactly as simplejson does. Anything else (Decimal, bytes, namedtuples and other
    objects with `_asdict`, subclasses, shared or circular references) takes the pure-Python path
    that follows simplejson's rules one by one."""

    def __init__(self, ensure_ascii=True):
        self.ensure_ascii = ensure_ascii
        self._esc = _encode_ascii if ensure_ascii else _encode_utf8
        self._c_encode = _json.make_encoder(None, _refuse, self._esc, None, ": ", ", ", False,
                                            False, True)

    def encode(self, o):
        esc = self._esc
        if type(o) is str:
            return esc(o)
        if _c_safe(o):
            return "".join(self._c_encode(o, 0))
        if isinstance(o, str):
            return esc(o)
        parts = []
        _encode_value(o, parts.append, esc, {})
        return "".join(parts)


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _refuse(o):
    raise TypeError("not a plain value")


def _c_safe(o):
    """Is `o` a tree (no node reached twice) of exact dicts, lists and tuples over plain leaves, with
    plain keys? Then the C encoder's bytes are simplejson's."""
    t = type(o)
    if t in _LEAVES:
        return True
    if t is not dict and t is not list and t is not tuple:
        return False
    leaves = _LEAVES
    seen = {id(o)}
    stack = [o]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            for k, v in node.items():
                if type(k) not in leaves:
                    return False
                tv = type(v)
                if tv in leaves:
                    continue
                if tv is not dict and tv is not list and tv is not tuple:
                    return False
                i = id(v)
                if i in seen:
                    return False
                seen.add(i)
                push(v)
        else:
            for v in node:
                tv = type(v)
                if tv in leaves:
                    continue
                if tv is not dict and tv is not list and tv is not tuple:
                    return False
                i = id(v)
                if i in seen:
                    return False
                seen.add(i)
                push(v)
    return True


def _string(o, esc):
    if isinstance(o, str):
        return esc(o)
    return esc(str(o, "utf-8"))


def _asdict_of(o):
    method = getattr(o, "_asdict", None)
    if callable(method):
        try:
            return (method(),)
        except TypeError:
            pass
    return None


def _encode_value(o, emit, esc, markers):
    # The order of checks is simplejson's; it decides what a value that is several things at once
    # (an int subclass with `_asdict`, a dict subclass that is also a namedtuple...) becomes.
    if isinstance(o, str):
        emit(esc(o))
    elif isinstance(o, bytes):
        emit(esc(str(o, "utf-8")))
    elif isinstance(o, _RawNumber):
        emit(o.text)
    elif o is None:
        emit("null")
    elif o is True:
        emit("true")
    elif o is False:
        emit("false")
    elif isinstance(o, int):
        emit(int.__repr__(o) if type(o) is int else int.__repr__(int(o)))
    elif isinstance(o, float):
        emit(_float_text(o))
    else:
        asdict = _asdict_of(o)
        if asdict:
            d = asdict[0]
            if not isinstance(d, dict):
                raise TypeError(f"_asdict() must return a dict, not {type(d).__name__}")
            _marked(o, markers, _encode_value, d, emit, esc)
        elif isinstance(o, (list, tuple)):
            _marked(o, markers, _encode_list, o, emit, esc)
        elif isinstance(o, dict):
            _marked(o, markers, _encode_dict, o, emit, esc)
        else:
            _marked(o, markers, _encode_value, _default(o), emit, esc)


def _marked(o, markers, fn, value, emit, esc):
    # Every container (and every object turned into one) is on the path while its insides are
    # written: meeting it again there is a cycle, as simplejson reports it.
    key = id(o)
    if key in markers:
        raise ValueError("Circular reference detected")
    markers[key] = o
    try:
        fn(value, emit, esc, markers)
    finally:
        markers.pop(key, None)


def _encode_list(lst, emit, esc, markers):
    if not lst:
        emit("[]")
        return
    emit("[")
    first = True
    for value in lst:
        if first:
            first = False
        else:
            emit(", ")
        _encode_value(value, emit, esc, markers)
    emit("]")


def _dict_key(k):
    if isinstance(k, str):
        return k
    if isinstance(k, bytes):
        return str(k, "utf-8")
    if isinstance(k, float):
        return _float_text(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k) if type(k) is int else int.__repr__(int(k))
    raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")


def _encode_dict(d, emit, esc, markers):
    if not d:
        emit("{}")
        return
    emit("{")
    first = True
    for k, v in d.items():
        if first:
            first = False
        else:
            emit(", ")
        emit(esc(k if isinstance(k, str) else _dict_key(k)))
        emit(": ")
        _encode_value(v, emit, esc, markers)
    emit("}")


class _RawNumber:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _default(o):
    # awslambdaric's encoder hook: a Decimal becomes its exact digits (NaN of any sign: NaN); all
    # else is refused. Decimal can only exist if its module was imported, so don't import it here.
    raw = _sys_modules.get("simplejson.raw_json")
    if raw is not None and isinstance(o, raw.RawJSON):
        return _RawNumber(o.encoded_json)
    decimal = _sys_modules.get("decimal")
    if decimal is not None and isinstance(o, decimal.Decimal):
        if o.is_nan():
            return float("nan")
        return _RawNumber(str(o))
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_sys_modules = __import__("sys").modules


def marshal_result(result, encoder):
    """(payload bytes, content type) of a handler's result: bytes pass through as
    application/unknown, all else is JSON."""
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        text = encoder.encode(result)
    except Exception as e:
        raise Fault(MARSHAL_ERROR, f"Unable to marshal response: {e}") from None
    return text.encode("utf-8"), wire.JSON
