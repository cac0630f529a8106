"""One place decides the shape of an error: the Lambda error body (errorMessage, errorType, requestId,
stackTrace) and the X-Ray cause, for init, invoke and restore failures alike, as awslambdaric makes
them. Only imported when something failed."""

import os
import traceback

from bootstrap.fault import Fault

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def make_error(message, error_type, stack_trace, request_id=None):
    # Key order is part of the wire format (the body is JSON-encoded in this order).
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _is_runtime_frame(filename):
    # awslambdaric drops its own leading frames by the "/bootstrap.py" in their file name; ours
    # live in this package. Both rules apply, so a wrapper around either is trimmed too.
    return filename.startswith(_OWN_DIR) or "/bootstrap.py" in filename


def user_frames(tb):
    """(filename, lineno, name, line) of each frame of `tb`, without the runtime's leading frames.
    If every frame is the runtime's, none is dropped (as awslambdaric)."""
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i, frame in enumerate(frames):
        if not _is_runtime_frame(frame[0]):
            return frames[i:]
    return frames


def format_frames(frames):
    return traceback.format_list(frames)


def xray_cause(error_type, message, frames, cwd=None):
    stack = []
    paths = {}
    for filename, lineno, name, _ in frames:
        stack.append({"label": name, "path": filename, "line": lineno})
        paths[filename] = None
    return {
        "working_directory": os.getcwd() if cwd is None else cwd,
        "exceptions": [{"message": message, "type": error_type, "stack": stack}],
        "paths": list(paths),
    }


def invocation_error(exc, request_id):
    """(error body dict, X-Ray cause dict) for an exception that ended an invocation."""
    if isinstance(exc, Fault):
        return (make_error(exc.message, exc.error_type, exc.trace, request_id),
                xray_cause("LambdaValidationError", exc.message, []))
    frames = user_frames(exc.__traceback__)
    name = type(exc).__name__
    message = str(exc)
    return (make_error(message, name, format_frames(frames), request_id),
            xray_cause(name, message, frames))


def fault_result(exc):
    """Error body for a failure outside an invocation (init, SnapStart hooks): requestId ""."""
    if isinstance(exc, Fault):
        return make_error(exc.message, exc.error_type, exc.trace)
    frames = user_frames(exc.__traceback__)
    return make_error(str(exc), type(exc).__name__, format_frames(frames))
