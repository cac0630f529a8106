"""Handler resolution: 'module.function' (or 'dir/module.function') to a callable, with awslambdaric's
init-error types and texts."""

import importlib
import sys

from bootstrap.fault import Fault

MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"


def load_handler(handler):
    """Import the handler's module (running its top-level code) and return the named attribute.
    Raises Fault for the classified failures; any other exception raised by the module's code
    propagates as it is (it is reported under its own class name)."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault(MALFORMED_HANDLER_NAME, f"Bad handler '{handler}': {e}") from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(BUILT_IN_MODULE_CONFLICT,
                    f"Cannot use built-in module {module_name} as a handler module")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise Fault(IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {e}") from None
    except SyntaxError as e:
        # awslambdaric's own one-frame trace: capital "Line", no comma.
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault(USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {e}",
                    trace) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise Fault(HANDLER_NOT_FOUND,
                    f"Handler '{function_name}' missing on module '{module_name}'") from None
