"""The lambdalet servers behind moto's Lambda, and the moto server their functions call.

One `LambdaletThread` serves each account, region and version (moto's functions of one region
share names with no other), started at its first invocation; every invocation reads the function's
deployment again (runtime_api/moto/deployment.py) and applies it when it changed. Functions moto no
longer has stop with the next change.

Where the function's AWS SDK calls go: the moto server that is handling the request that invoked
it (moto's server mode: `moto_server`, `ThreadedMotoServer`), found from the request being served;
otherwise (the in-process `mock_aws`) a `ThreadedMotoServer` this module starts on a free port of
127.0.0.1, which acts on the same state as the in-process mock, as moto's documentation on server
mode says; or the `endpoint` given to `install()`. The function's credentials are test ones, which
moto takes for its default account (or MOTO_ACCOUNT_ID's): a function of another account reaches
that account's resources only where MOTO_ACCOUNT_ID names it.
"""

from __future__ import annotations

import json
import logging
import threading

from .. import logs
from ..config import ConfigError, FunctionConfig, ServerConfig
from ..embed import LambdaletThread
from ..invoke_api import ServiceError
from .deployment import NotDeployable, Options, function_config

log = logging.getLogger("lambdalet.moto")


class Integration:
    """The lambdalet servers behind moto's Lambda, and the moto server their functions call."""

    def __init__(self, options: Options, endpoint: str | None = None, sink: logs.LogSink | None = None) -> None:
        self.options = options
        self._endpoint = endpoint
        self._sink = sink
        self._lock = threading.Lock()  # starting servers and applying configurations, one at a time
        self._servers: dict[tuple[str, str, str], LambdaletThread] = {}
        self._configs: dict[tuple[str, str, str], dict[str, FunctionConfig]] = {}
        self._moto_server = None  # a ThreadedMotoServer of our own, for the in-process mock

    # -- invoking -----------------------------------------------------------------------------

    def invoke(self, function, event) -> tuple[str, bool, str]:
        """What `LambdaFunction._invoke_lambda` answers: the payload, whether it is a function error,
        and the log's tail (which moto also writes to its CloudWatch Logs, as its Docker path does)."""
        try:
            lambdalet, config = self._serving(function)
            result = lambdalet.invoke(config.name, _payload(event), log_type="Tail")
        except (ConfigError, NotDeployable) as exc:
            return _refusal(function, "InvalidParameterValueException", str(exc))
        except ServiceError as exc:
            return _refusal(function, exc.error_type, exc.message)
        tail = result.log_tail or ""
        function.logs_backend.ensure_log_group(function.logs_group_name)
        function.save_logs(tail)
        return result.payload.decode(errors="replace"), result.function_error is not None, tail

    def _serving(self, function) -> tuple[LambdaletThread, FunctionConfig]:
        backend = _lambda_backend(function.account_id, function.region)
        layers = [backend.layers_versions_by_arn(layer["Arn"]) for layer in function.layers]
        config = function_config(function, [layer for layer in layers if layer is not None], self.endpoint(),
                                 self.options)
        key = (config.account_id, config.region, config.version)
        with self._lock:
            lambdalet = self._servers.get(key)
            if lambdalet is None:
                lambdalet = LambdaletThread(ServerConfig(port=0, front_door_port=0), sink=self._sink).start()
                self._servers[key] = lambdalet
                self._configs[key] = {}
            served = self._configs[key]
            if served.get(config.name) != config:
                # Functions moto no longer has (deleted, or reset as mock_aws ends) stop with this
                # change, so that a long suite's environments do not pile up.
                kept = {name: c for name, c in served.items()
                        if name != config.name and _exists(backend, name, function.version)}
                lambdalet.apply([*kept.values(), config])
                self._configs[key] = {**kept, config.name: config}
        return lambdalet, config

    def served(self) -> list[FunctionConfig]:
        """The functions lambdalet serves for moto now, as last applied."""
        with self._lock:
            return [config for configs in self._configs.values() for config in configs.values()]

    # -- moto's endpoint ------------------------------------------------------------------------

    def endpoint(self) -> str:
        """Where the function's SDK reaches moto."""
        if self._endpoint is not None:
            return self._endpoint
        serving = _serving_request()
        if serving is not None:
            return serving
        with self._lock:
            if self._moto_server is None:
                from moto.server import ThreadedMotoServer

                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                self._moto_server = server
            host, port = self._moto_server.get_host_and_port()
        return f"http://{host}:{port}"

    # -- stopping -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every lambdalet server (every environment shut down, its runtime reaped) and the moto
        server started for the in-process mock."""
        with self._lock:
            servers, self._servers, self._configs = list(self._servers.values()), {}, {}
            moto_server, self._moto_server = self._moto_server, None
        for lambdalet in servers:
            lambdalet.close()
        if moto_server is not None:
            moto_server.stop()


def _payload(event) -> bytes:
    """The event moto passes (the request's JSON, parsed) as the bytes the function receives. moto
    stands in the text "{}" for an empty request body, which Lambda gives the function as {}."""
    if event is None or event == "{}":
        return b"{}"
    return json.dumps(event).encode()


def _refusal(function, error_type: str, message: str) -> tuple[str, bool, str]:
    """What cannot be run is a function error saying why (moto's own path answers a Docker error the
    same way), and a warning in the log of the test run."""
    log.warning("lambdalet: function %s not run: %s", function.function_name, message)
    return json.dumps({"errorType": error_type, "errorMessage": message}), True, ""


def _lambda_backend(account_id: str, region: str):
    from moto.awslambda.utils import get_backend

    return get_backend(account_id, region)


def _exists(backend, name: str, version) -> bool:
    try:
        backend.get_function(name, None if version == "$LATEST" else str(version))
    except Exception:  # moto's UnknownFunctionException, or its ResourceNotFound for a version
        return False
    return True


def _serving_request() -> str | None:
    """The address of the moto server handling the request being served in this thread, if any:
    moto's server mode serves each request in a Flask request context."""
    try:
        import flask
    except ImportError:
        return None
    if not flask.has_request_context():
        return None
    environ = flask.request.environ
    host, port = environ.get("SERVER_NAME", "127.0.0.1"), environ.get("SERVER_PORT", "5000")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"  # bound to every interface: this machine's loopback reaches it
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
