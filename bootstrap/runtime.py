"""The runtime's life: init (load the handler, or report why not), the SnapStart hook sequence, and
the invocation loop `next -> handler -> response | error`.

Each phase is a step that returns the object of the next phase, so none can be skipped:
`initialise()` gives an `InitialisedRuntime`, which has `run()`; under SnapStart its
`prepare_snapshot()` gives a `SnapshotTemplate` (hooks run, ready to be snapshotted or forked)
whose `restore()` gives the runtime back. Client and config are parameters, so tests drive a
runtime against any server.
"""

import os
import sys
import time

from bootstrap import logs as logs_module
from bootstrap.context import LambdaContext
from bootstrap.fault import Fault

# bootstrap.marshalling (and with it the `_json` accelerator) is imported once the first event has
# arrived: nothing before the first `GET next` needs it.
marshalling = None


def _marshalling():
    global marshalling
    if marshalling is None:
        from bootstrap import marshalling as module
        marshalling = module
    return marshalling

CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"
# An X-Ray cause this large (bytes of its JSON) is not sent.
MAX_XRAY_CAUSE_BYTES = 1024 * 1024
# Attempts at `next` before giving up on a Runtime API that keeps answering nonsense.
NEXT_ATTEMPTS = 5
NEXT_FIRST_DELAY_S = 0.1

UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. For "
    "functions using managed runtimes, runtime updates can be triggered by a function change, or "
    "can be applied automatically. To determine if the runtime has been updated, check the runtime "
    "version in the INIT_START log entry. If this error correlates with a change in the runtime "
    "version, you may be able to mitigate this error by temporarily rolling back to the previous "
    "runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r")


def initialise(client, config, logs):
    """Import the handler. On failure: warn, log the error, POST init/error, exit 1."""
    from bootstrap.loader import load_handler
    try:
        handler = load_handler(config.handler)
    except Exception as exc:
        from bootstrap import errors
        error = errors.fault_result(exc)
        logs.warning(UNHANDLED_WARNING)
        logs.log_error(error)
        encoder = _marshalling().Encoder(config.ensure_ascii)
        client.post_init_error(encoder.encode(error).encode("utf-8"), error["errorType"])
        sys.exit(1)
    return InitialisedRuntime(client, config, logs, handler)


class InitialisedRuntime:
    def __init__(self, client, config, logs, handler):
        self.client = client
        self.config = config
        self.logs = logs
        self.handler = handler
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = _marshalling().Encoder(self.config.ensure_ascii)
        return self._encoder

    # --- SnapStart ----------------------------------------------------------------------------

    def prepare_snapshot(self):
        """Run the before-snapshot hooks (last registered first) and return the SnapshotTemplate:
        the state a snapshot captures. A failing hook is reported as awslambdaric does
        (init/error, Runtime.BeforeSnapshotError) and the process exits 64."""
        before, after = _registered_hooks()
        # awslambdaric catches everything here (a bare except), SystemExit in a hook included.
        try:
            while before:
                func, args, kwargs = before.pop()
                func(*args, **kwargs)
        except BaseException as exc:
            self._before_snapshot_failed(exc)
        return SnapshotTemplate(self, after)

    def snapshot_and_restore(self):
        """The whole SnapStart sequence in one process: before-snapshot hooks, `GET restore/next`
        (returns once restored), after-restore hooks."""
        return self.prepare_snapshot().restore()

    def _before_snapshot_failed(self, exc):
        error = self._fault(exc)
        self.client.post_init_error(self.encoder.encode(error).encode("utf-8"),
                                    BEFORE_SNAPSHOT_ERROR)
        sys.exit(64)

    def _fault(self, exc):
        from bootstrap import errors
        error = errors.fault_result(exc)
        self.logs.log_error(error)
        return error

    # --- invocations --------------------------------------------------------------------------

    def run(self):
        """Serve invocations until the process ends."""
        while True:
            self.handle(self.next_invocation())

    def next_invocation(self):
        """`GET next`, retried with back-off when the answer is unusable (an error status, no
        request id, a broken response); gives up after NEXT_ATTEMPTS (exit 1)."""
        delay = NEXT_FIRST_DELAY_S
        for attempt in range(1, NEXT_ATTEMPTS + 1):
            try:
                return self.client.next()
            except Exception as exc:
                sys.stderr.write(f"lambdalet bootstrap: next invocation failed "
                                 f"(attempt {attempt} of {NEXT_ATTEMPTS}): {exc}\n")
                if attempt == NEXT_ATTEMPTS:
                    sys.exit(1)
                time.sleep(delay)
                delay *= 2

    def handle(self, invocation):
        """One invocation: call the handler, then post its response or its error."""
        request_id = invocation.request_id
        logs_module.set_invocation(request_id, invocation.tenant_id)
        if invocation.trace_id is not None:
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        elif "_X_AMZN_TRACE_ID" in os.environ:
            del os.environ["_X_AMZN_TRACE_ID"]
        codec = marshalling or _marshalling()
        try:
            context = self.make_context(invocation)
            event = codec.unmarshal_event(invocation.body, invocation.content_type)
            result = self.handler(event, context)
            if _is_stream(result):
                from bootstrap import streaming
                stream = streaming.prepare(result, self.encoder)
            else:
                stream = None
                payload, content_type = codec.marshal_result(result, self.encoder)
        except Exception as exc:
            self.post_error(invocation, exc)
            return
        try:
            if stream is None:
                self.client.post_response(request_id, payload, content_type,
                                          invocation.invocation_id)
            else:
                self.post_stream(invocation, stream)
        except Exception as exc:
            # awslambdaric dies here (exit 1, the caller gets 502); we report and go on to `next`,
            # where the Runtime API has already recorded the failure (e.g. 413, too large).
            sys.stderr.write(f"lambdalet bootstrap: posting the response failed: {exc}\n")

    def make_context(self, invocation):
        client_context = cognito_identity = None
        if invocation.client_context:
            client_context = _parse_header_json(invocation.client_context, "Client Context")
        if invocation.cognito_identity:
            cognito_identity = _parse_header_json(invocation.cognito_identity, "Cognito Identity")
        return LambdaContext(invocation.request_id, client_context, cognito_identity,
                             invocation.deadline_ms, invocation.invoked_function_arn,
                             invocation.tenant_id, self.config.function, self.logs.context_log)

    def error_payloads(self, exc, request_id):
        """(error body bytes, X-Ray cause JSON or "") for an exception, logging it first."""
        from bootstrap import errors
        error, cause = errors.invocation_error(exc, request_id)
        self.logs.log_error(error)
        cause_json = self.encoder.encode(cause)
        if len(cause_json.encode("utf-8", "surrogatepass")) >= MAX_XRAY_CAUSE_BYTES:
            cause_json = ""
        return error, self.encoder.encode(error).encode("utf-8"), cause_json

    def post_error(self, invocation, exc):
        _, body, cause = self.error_payloads(exc, invocation.request_id)
        try:
            self.client.post_error(invocation.request_id, body, cause, invocation.invocation_id)
        except Exception as post_exc:
            sys.stderr.write(f"lambdalet bootstrap: posting the error failed: {post_exc}\n")

    def post_stream(self, invocation, stream):
        from base64 import b64encode
        from bootstrap import streaming

        def on_error(exc):
            error, body, _ = self.error_payloads(exc, invocation.request_id)
            return error["errorType"], b64encode(body).decode("ascii")

        self.client.post_streaming_response(
            invocation.request_id, stream.content_type,
            streaming.wire_chunks(stream, self.encoder, on_error), invocation.invocation_id)


class SnapshotTemplate:
    """An initialised runtime whose before-snapshot hooks have run: what a snapshot (or a forked
    template) holds. `restore()` is the only way on, so invocations cannot start before it."""

    def __init__(self, runtime, after_restore_hooks):
        self.runtime = runtime
        self.after_restore_hooks = after_restore_hooks

    def restore(self):
        """`GET restore/next` (blocks until the environment is restored), then the after-restore
        hooks in registration order. restore/next failing counts as a before-snapshot failure
        (exit 64, as awslambdaric); a failing hook goes to restore/error, exit 65."""
        runtime = self.runtime
        try:
            runtime.client.restore_next()
        except BaseException as exc:
            runtime._before_snapshot_failed(exc)
        try:
            for func, args, kwargs in self.after_restore_hooks:
                func(*args, **kwargs)
        except BaseException as exc:
            error = runtime._fault(exc)
            runtime.client.post_restore_error(runtime.encoder.encode(error).encode("utf-8"),
                                              AFTER_RESTORE_ERROR)
            sys.exit(65)
        return runtime


def _is_stream(result):
    # A cheap test first: plain results (dict, list, str, bytes, numbers, None) never stream.
    if type(result) in _PLAIN:
        return False
    from bootstrap import streaming
    return streaming.is_stream(result)


_PLAIN = frozenset({dict, list, str, bytes, int, float, bool, type(None), tuple})


class _StdlibJson:
    """json.loads semantics (awslambdaric parses context headers with the standard library, not
    simplejson) on the `_json` scanner; `json` itself is imported only to phrase an error."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo = None


_header_scanner = None


def _parse_header_json(text, name):
    global _header_scanner
    try:
        if _header_scanner is None:
            import _json
            _header_scanner = _json.make_scanner(_StdlibJson())
        ws = " \t\n\r"
        start = len(text) - len(text.lstrip(ws))
        value, end = _header_scanner(text, start)
        if text[end:].strip(ws):
            raise ValueError
        return value
    except Exception:
        import json
        try:
            return json.loads(text)
        except Exception as e:
            raise Fault(CONTEXT_UNMARSHAL_ERROR, f"Unable to parse {name} JSON: {e}") from None


def _registered_hooks():
    """The before-snapshot and after-restore lists of snapshot_restore_py. If the user's code never
    imported it, nothing can be registered; don't import it ourselves."""
    hooks = sys.modules.get("snapshot_restore_py")
    if hooks is None:
        return [], []
    return hooks.get_before_snapshot(), hooks.get_after_restore()


def start(client, config, logs):
    """Init, SnapStart if asked, then serve invocations forever."""
    runtime = initialise(client, config, logs)
    if config.initialization_type == "snap-start":
        if config.template is not None:  # lambdalet's SnapStart by fork: park as a template
            from bootstrap.template import become_template
            runtime = become_template(runtime.prepare_snapshot(), config.template)
        else:
            runtime.snapshot_and_restore()
    runtime.run()
