"""Events and results in awslambdaric's JSON dialect, checked against awslambdaric's own marshaller
(simplejson) on generated values, plus the cases its test suite names."""

import collections
import decimal
import enum
import math

import pytest
import simplejson
from awslambdaric.lambda_runtime_exception import FaultException
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller, to_json
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.marshalling import Encoder, Fault, loads, marshal_result, unmarshal_event

REF = LambdaMarshaller()
OURS = Encoder(ensure_ascii=True)


def reference_marshal(value):
    try:
        payload, ctype = REF.marshal_response(value)
    except FaultException as e:
        return ("fault", e.exception_type, e.msg)
    return (payload if isinstance(payload, bytes) else payload.encode("utf-8"), ctype)


def our_marshal(value):
    try:
        return marshal_result(value, OURS)
    except Fault as e:
        return ("fault", e.error_type, e.message)


json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
               | st.text() | st.decimals(allow_nan=True) | st.binary(max_size=8))
json_values = st.recursive(
    json_leaves,
    lambda children: (st.lists(children, max_size=4) | st.tuples(children, children)
                      | st.dictionaries(st.text(max_size=5) | st.integers() | st.floats()
                                        | st.booleans() | st.none(), children, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_results_marshal_like_awslambdaric(value):
    assert our_marshal(value) == reference_marshal(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet='{}[]",:\\ \t\n01-.eE+uaftrlsnNIy\x01\ufeff',
                                         max_size=30).map(str.encode))
def test_event_decoding_and_errors_like_simplejson(data):
    def ref():
        try:
            return ("ok", repr(REF.unmarshal_request(data, "application/json")))
        except FaultException as e:
            return ("fault", e.exception_type, e.msg)

    def ours():
        try:
            return ("ok", repr(unmarshal_event(data, "application/json")))
        except Fault as e:
            return ("fault", e.error_type, e.message)

    assert ours() == ref()


@pytest.mark.parametrize("value, expected", [
    ({"a": 1}, b'{"a": 1}'),
    ([1, "x", None, True], b'[1, "x", null, true]'),
    ("str", b'"str"'),
    (None, b"null"),
    (1.5, b"1.5"),
    (float("nan"), b"NaN"),
    (float("-inf"), b"-Infinity"),
    (decimal.Decimal("1.10"), b"1.10"),
    (decimal.Decimal("-NaN"), b"NaN"),
    ({"p": "£1.00"}, b'{"p": "\\u00a31.00"}'),
    (collections.namedtuple("P", "x y")(1, 2), b'{"x": 1, "y": 2}'),
    ({"nested": b"bytes"}, b'{"nested": "bytes"}'),
    ({1: "int key", None: 0, 2.5: 1}, b'{"1": "int key", "null": 0, "2.5": 1}'),
])
def test_named_result_encodings(value, expected):
    assert marshal_result(value, OURS) == (expected, "application/json")
    assert reference_marshal(value) == (expected, "application/json")


def test_bytes_result_passes_through_as_application_unknown():
    assert marshal_result(b"\x89PNG", OURS) == (b"\x89PNG", "application/unknown")


def test_non_ascii_utf8_for_python312_execution_env():
    # awslambdaric: ensure_ascii=False only for AWS_Lambda_python3.12..3.15 (UTF-8 on the wire).
    payload, _ = marshal_result({"price": "£1.00"}, Encoder(ensure_ascii=False))
    assert len(payload) == 19 and payload == '{"price": "£1.00"}'.encode()


@pytest.mark.parametrize("value, message", [
    (type, "Unable to marshal response: Object of type type is not JSON serializable"),
    ({1, 2}, "Unable to marshal response: Object of type set is not JSON serializable"),
    ({(1, 2): 3}, "Unable to marshal response: keys must be str, int, float, bool or None, not tuple"),
])
def test_unserialisable_results_are_marshal_errors(value, message):
    assert our_marshal(value) == ("fault", "Runtime.MarshalError", message)
    assert reference_marshal(value) == ("fault", "Runtime.MarshalError", message)


def test_circular_reference():
    loop = []
    loop.append(loop)
    assert our_marshal(loop) == reference_marshal(loop)


def test_int_enum_and_float_subclass_like_simplejson():
    class Colour(enum.IntEnum):
        RED = 1

    class F(float):
        def __repr__(self):
            return "nope"

    value = {"c": Colour.RED, "f": F(2.5)}
    assert our_marshal(value) == reference_marshal(value)


def test_object_with_asdict_is_an_object():
    class Thing:
        def _asdict(self):
            return {"k": "v"}

    assert our_marshal([Thing()]) == reference_marshal([Thing()]) == (b'[{"k": "v"}]',
                                                                      "application/json")


def test_simplejson_raw_json_passes_through():
    value = {"raw": simplejson.RawJSON("[1,2]")}
    assert our_marshal(value) == reference_marshal(value)


def test_event_content_type_rule():
    assert unmarshal_event(b'{"a": 1}', "application/json") == {"a": 1}
    # Anything but exactly application/json: the raw bytes.
    assert unmarshal_event(b'{"a": 1}', "application/json; charset=utf-8") == b'{"a": 1}'
    assert unmarshal_event(b"\x89PNG", "image/png") == b"\x89PNG"


@pytest.mark.parametrize("data", [b"", b"NaN", b"{}x", b'{"a":1,}', b"\xef\xbb\xbf[1]",
                                  b"\xff", b'"\\ud83d\\ude00"', b"1" * 5000])
def test_decode_edge_cases(data):
    def run(fn):
        try:
            return repr(fn(data))
        except Exception as e:
            return str(e)

    assert run(loads) == run(simplejson.loads)


def test_invalid_event_is_unmarshal_error():
    with pytest.raises(Fault) as info:
        unmarshal_event(b"", "application/json")
    assert info.value.error_type == "Runtime.UnmarshalError"
    assert info.value.message == "Unable to unmarshal input: Expecting value: line 1 column 1 (char 0)"


def test_error_bodies_encode_like_to_json():
    body = {"errorMessage": "é\n", "errorType": "E", "requestId": "", "stackTrace": ["a"]}
    assert OURS.encode(body) == to_json(body)
    assert math.isnan(loads(b"[1]")[0] * math.nan)


def test_fast_and_slow_paths_agree_on_tricky_trees():
    point = collections.namedtuple("Point", "x y")
    shared = [1, 2]

    class D(dict):
        def _asdict(self):
            return {"from": "asdict"}

    class L(list):
        pass

    cases = [
        [{"p": point(1, 2)}],            # a namedtuple deep inside plain containers
        {"a": shared, "b": shared},      # the same list twice (not a cycle)
        [D(x=1)],                        # a dict subclass with _asdict
        {"l": L([1, 2])},                # a list subclass
        (1, (2, [3, {"k": (4,)}])),      # plain tuples all the way
        {1.5: 1, True: 2, None: 3, 7: 4, float("nan"): 5},
    ]
    for value in cases:
        assert our_marshal(value) == reference_marshal(value), value
