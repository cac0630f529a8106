"""bootstrap.loader: resolving the handler, with awslambdaric's error types and messages."""

import pytest

from bootstrap.loader import load_handler
from bootstrap.marshalling import Fault


@pytest.mark.parametrize("handler, error_type, message", [
    ("nodot", "Runtime.MalformedHandlerName",
     "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"),
    ("time.handler", "Runtime.BuiltInModuleConflict", "Cannot use built-in module time as a handler module"),
    ("no_such_module_q.handler", "Runtime.ImportModuleError",
     "Unable to import module 'no_such_module_q': No module named 'no_such_module_q'"),
    ("bootstrap.wire.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'bootstrap.wire'"),
])
def test_handler_resolution_errors(handler, error_type, message):
    with pytest.raises(Fault) as info:
        load_handler(handler)
    assert (info.value.error_type, info.value.message, info.value.trace) == (error_type, message, None)


def test_nested_builtin_name_is_no_conflict():
    assert load_handler("bootstrap/wire.INIT_ERROR") == "/2018-06-01/runtime/init/error"
