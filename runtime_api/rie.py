"""`lambdalet-rie`: a drop-in for AWS's Runtime Interface Emulator (RIE).

The same command line (RIE's flags are recognised anywhere, unknown ones are passed to the
bootstrap), the same environment variables and the same single endpoint,
`/2015-03-31/functions/function/invocations`, so an image can swap RIE for it. The runtime sees
RIE's contract exactly. What RIE's users complain about in the issues of
aws/aws-lambda-runtime-interface-emulator on GitHub is fixed (each fix is named in
tests/conformance/deviations.py):
a second concurrent invocation queues instead of crashing the emulator, function errors carry
`X-Amz-Function-Error`, the trace id reaches the runtime, durations are real, an init-phase crash
gets an error body instead of an empty 502, and streamed responses are relayed as they arrive.

Environment variables of lambdalet's own: LAMBDALET_CONCURRENCY (default 1: one environment,
invocations wait their turn, as RIE's single runtime; N > 1 runs up to N environments, the first on
--runtime-api-address and the others on ephemeral ports); LAMBDALET_ISOLATION (default none: the
runtime runs as a plain process tree, as under RIE; `standard` gives each environment lambdalet's
cgroup limits, memory from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, Runtime.OutOfMemory reporting, and a
private /tmp of LAMBDALET_EPHEMERAL_STORAGE MB, default 512; the bootstrap still runs where it is
started, its code is not moved to /var/task).

Every executable of /opt/extensions is an external extension, started before the runtime as RIE
starts them (unless /opt/disable-extensions-jwigqn8j exists, RIE's switch), and stopped with its
Shutdown phase (SHUTDOWN `spindown`, then SIGKILL at the deadline) when lambdalet-rie is stopped.
"""

from __future__ import annotations

import base64
import json
import binascii
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import partial

import trio

from bootstrap import wire
from sandbox import host
from sandbox import layers as opt
from sandbox.cgroups import CgroupSupport
from sandbox.confinement import Confinement
from sandbox.isolation import DEFAULT_EPHEMERAL_MB, Isolation, PrivateFilesystem
from sandbox.process import RuntimeSpec

from . import http, logs
from .environment import EnvironmentOptions
from .function import Function
from .invocation import Invocation
from .launcher import ExecLauncher
from .outcomes import OutcomeKind
from .platform_log import LogStyle
from .protocol import Endpoints
from .routes import NOT_FOUND_BODY, NOT_FOUND_HEADERS
from .sniff import sniff_content_type

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
ARN_PREFIX = "arn:aws:lambda:us-east-1:012345678912:function:"
LOG_LEVELS = ("panic", "fatal", "error", "warning", "info", "debug", "trace")
DEFAULT_BOOTSTRAPS = ("/var/task/bootstrap", "/opt/bootstrap", "/var/runtime/bootstrap")
OPT = "/opt"
DISABLE_EXTENSIONS = "/opt/disable-extensions-jwigqn8j"  # RIE's switch: no external extensions
_VALUE_FLAGS = ("--log-level", "--runtime-api-address", "--runtime-interface-emulator-address")
_BOOL_FLAGS = ("--enable-init-caching",)


class UsageError(Exception):
    """A command line or environment RIE would refuse; the message is RIE's."""


@dataclass
class RieOptions:
    log_level: str = "info"
    runtime_api_address: str = "127.0.0.1:9001"
    emulator_address: str = "0.0.0.0:8080"
    enable_init_caching: bool = False
    bootstrap: list[str] = field(default_factory=list)


def parse_args(argv: list[str], environ: dict[str, str]) -> RieOptions:
    """RIE's go-flags parsing in ignore-unknown mode: its own flags anywhere in argv, everything
    else (unknown flags included, even --help) is the bootstrap's command line."""
    options = RieOptions(log_level=environ.get("LOG_LEVEL", "info"))
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                value = next(args, None)
                if value is None:
                    raise UsageError(f"expected argument for flag `{name}'")
            if name == "--log-level":
                options.log_level = value
            elif name == "--runtime-api-address":
                options.runtime_api_address = value
            else:
                options.emulator_address = value
        elif name in _BOOL_FLAGS and not eq:
            options.enable_init_caching = True
        else:
            rest.append(arg)
    if options.log_level not in LOG_LEVELS:
        raise UsageError(f"Failed to set log level. Valid log levels are:[{' '.join(LOG_LEVELS)}]")
    for address in (options.runtime_api_address, options.emulator_address):
        split_address(address)
    options.bootstrap = rest
    return options


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"Invalid address {address!r}: expected host:port")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class RieFunction:
    """The one function RIE runs, with the settings it reads from its environment."""

    argv: tuple[str, ...]
    cwd: str
    handler: str | None
    name: str
    version: str
    memory_mb: int
    timeout: int
    base_env: dict[str, str]

    @property
    def arn(self) -> str:
        return ARN_PREFIX + self.name


def rie_function(options: RieOptions, environ: dict[str, str]) -> RieFunction:
    argv = list(options.bootstrap)
    cwd = os.getcwd()
    if not argv:
        found = next((path for path in DEFAULT_BOOTSTRAPS if os.path.exists(path)), DEFAULT_BOOTSTRAPS[0])
        argv, cwd = [found], "/var/task"
    handler = environ.get("AWS_LAMBDA_FUNCTION_HANDLER") or environ.get("_HANDLER")
    if handler is None and len(argv) >= 2:
        handler = argv[-1]
    timeout_text = environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "300")
    try:
        timeout = int(timeout_text)
    except ValueError:
        # RIE panics on every invoke; refusing to start says why at once.
        raise UsageError(f"AWS_LAMBDA_FUNCTION_TIMEOUT must be a whole number of seconds, not {timeout_text!r}") from None
    return RieFunction(
        argv=tuple(argv),
        cwd=cwd,
        handler=handler,
        name=environ.get("AWS_LAMBDA_FUNCTION_NAME", "test_function"),
        version=environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        memory_mb=int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")),
        timeout=timeout,
        base_env=dict(environ),
    )


def container_credentials(environ: dict[str, str]) -> bytes:
    """The credentials endpoint's answer: RIE's own credentials, with Go's zero time."""
    return json.dumps({
        "AccessKeyId": environ.get("AWS_ACCESS_KEY_ID", ""),
        "SecretAccessKey": environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "Token": environ.get("AWS_SESSION_TOKEN", ""),
        "Expiration": "0001-01-01T00:00:00Z",
    }, separators=(",", ":")).encode()


def runtime_environment(function: RieFunction, runtime_api: str, metadata_token: str,
                        credentials_token: str | None = None) -> dict[str, str]:
    """The runtime's environment as RIE builds it (observed: tests/conformance/data/runtime-env.json):
    defaults, then all of RIE's own
    environment, then credentials (always set, empty if unset), _HANDLER, the platform, metadata."""
    env = {
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/Functions",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_FUNCTION_NAME": "test_function",
    }
    env.update(function.base_env)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env[key] = function.base_env.get(key, "")
    if function.handler is not None:
        env["_HANDLER"] = function.handler
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": function.version,
        "AWS_LAMBDA_METADATA_API": runtime_api,
        "AWS_LAMBDA_METADATA_TOKEN": metadata_token,
    })
    if credentials_token is not None:
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"http://{runtime_api}/2021-04-23/credentials"
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = credentials_token
    return env


def decode_client_context(value: str | None) -> str | None:
    """Standard base64 with padding; raises ValueError otherwise (RIE answers 500)."""
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


class RieInvokeAPI:
    """RIE's invoke endpoint: any method on the one path invokes the function."""

    def __init__(self, function: Function, config: RieFunction) -> None:
        self.function = function
        self.config = config

    async def handle(self, conn: http.Connection, request: http.Request) -> None:
        if request.path != INVOKE_PATH:
            await conn.respond(404, NOT_FOUND_BODY, NOT_FOUND_HEADERS)
            return
        try:
            client_context = decode_client_context(request.header(b"x-amz-client-context"))
        except ValueError:
            await conn.respond(500)
            return
        # Past the Runtime API's limit the payload is cut off silently, as RIE does.
        payload, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
        invocation = Invocation(
            payload,
            function_arn=self.config.arn,
            timeout=self.config.timeout,
            trace_id=request.header(b"x-amzn-trace-id"),
            client_context=client_context,
            tenant_id=request.header(b"x-amz-tenant-id"),
            deadline_from_arrival=True,
        )
        outcome, env = await self.function.invoke(invocation)
        error_header = [("X-Amz-Function-Error", "Unhandled")] if outcome.is_error else []
        if outcome.kind is OutcomeKind.STREAMING:
            await self._relay(conn, env, invocation)
        elif outcome.kind in (OutcomeKind.TIMEOUT, OutcomeKind.RESTORE_TIMEOUT):
            body = f"Task timed out after {self.config.timeout}.00 seconds".encode()
            await conn.respond(200, body, [("Content-Type", "text/plain; charset=utf-8"), *error_header])
        else:
            failed_to_start = (OutcomeKind.EXIT_ERROR, OutcomeKind.INIT_ERROR, OutcomeKind.RESTORE_ERROR)
            status = 502 if outcome.kind in failed_to_start else 200
            await conn.respond(status, outcome.body, [*_content_type(outcome.body), *error_header])

    async def _relay(self, conn: http.Connection, env, invocation: Invocation) -> None:
        """Stream the runtime's response on as it arrives; its type is sniffed from the first chunk."""
        started = False

        async def send(chunk: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                await conn.start_stream(200, _content_type(chunk))
            await conn.send_data(chunk)

        await env.relay_stream(invocation, send)
        if not started:
            await conn.start_stream(200, [])
        await conn.end_stream(invocation.error_trailers())


def _content_type(body: bytes) -> list[tuple[str, str]]:
    kind = sniff_content_type(body)
    return [("Content-Type", kind)] if kind else []


def rapid_log(level: str, message: str) -> None:
    """RIE's own log line format on stderr: `27 Nov 2026 05:35:23,757 [INFO] (rapid) message`."""
    now = time.time()
    stamp = time.strftime("%d %b %Y %H:%M:%S", time.gmtime(now)) + f",{int(now % 1 * 1000):03d}"
    print(f"{stamp} [{level}] (rapid) {message}", file=sys.stderr, flush=True)


def rie_isolation(environ: dict[str, str]) -> tuple[Isolation, PrivateFilesystem | None]:
    """LAMBDALET_ISOLATION: none (RIE's semantics, the default) or standard; the subreaper always."""
    value = environ.get("LAMBDALET_ISOLATION", "none")
    try:
        requested = Isolation(value)
    except ValueError:
        rapid_log("WARN", f"LAMBDALET_ISOLATION={value} is not one of none, standard: running without isolation")
        requested = Isolation.NONE
    level, private = host.isolation(requested)
    if not private:
        return level, None
    try:
        ephemeral_mb = int(environ.get("LAMBDALET_EPHEMERAL_STORAGE", DEFAULT_EPHEMERAL_MB))
    except ValueError:
        ephemeral_mb = DEFAULT_EPHEMERAL_MB
    return level, PrivateFilesystem(ephemeral_mb)


def external_extensions(opt_dir: str = OPT) -> tuple[opt.ExtensionFile, ...]:
    """The executables of /opt/extensions, as RIE finds them (none if RIE's switch is there)."""
    if os.path.exists(os.path.join(opt_dir, os.path.basename(DISABLE_EXTENSIONS))):
        return ()
    return opt.extensions((opt_dir,))


async def run(options: RieOptions, function: RieFunction, *, stop: trio.Event | None = None,
              task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; or, given `stop`, until it is set, then stop the environments as
    Lambda spins them down (their extensions' Shutdown phase) and return."""
    api_host, api_port = split_address(options.runtime_api_address)
    invoke_host, invoke_port = split_address(options.emulator_address)
    concurrency = int(os.environ.get("LAMBDALET_CONCURRENCY", "1"))
    level, filesystem = rie_isolation(os.environ)

    metadata_token = str(uuid.uuid4())  # one per process, as RIE's
    credentials_token = str(uuid.uuid4()) if options.enable_init_caching else None

    def make_spec(runtime_api: str) -> RuntimeSpec:
        env = runtime_environment(function, runtime_api, metadata_token, credentials_token)
        return RuntimeSpec(function.argv, env, function.cwd)

    env_options = EnvironmentOptions(
        function_name=function.name,
        # RIE's register answer names the handler only when its environment gives it.
        handler=function.base_env.get("AWS_LAMBDA_FUNCTION_HANDLER") or function.base_env.get("_HANDLER", ""),
        version=function.version,
        memory_mb=function.memory_mb,
        log_style=LogStyle.RIE,
        init_timeout=None,
        snapstart=options.enable_init_caching,
        host=api_host,
        port=api_port,
        idle_timeout=float("inf"),  # RIE keeps its runtime until it fails or RIE stops
        extensions=external_extensions(),
        endpoints=Endpoints(
            metadata_token=metadata_token,
            credentials=container_credentials(function.base_env) if options.enable_init_caching else None,
            credentials_token=credentials_token or ""),
    )
    confinement = Confinement(isolation=level, memory_mb=function.memory_mb, filesystem=filesystem,
                              cgroups=host.support() if level is not Isolation.NONE else CgroupSupport())
    async with trio.open_nursery() as nursery:
        lambda_function = Function(function.name, make_spec, env_options, logs.LogSink(), ExecLauncher(confinement),
                                   concurrency=concurrency, queue=True, standby=True)
        await nursery.start(lambda_function.run)
        api = RieInvokeAPI(lambda_function, function)
        listeners = await trio.open_tcp_listeners(invoke_port, host=invoke_host)
        rapid_log("INFO", f"exec '{function.argv[0]}' (cwd={function.cwd}, handler={function.handler or ''})")
        await nursery.start(trio.serve_listeners, partial(http.serve_connection, handler=api.handle), listeners)
        task_status.started(listeners[0].socket.getsockname()[1])
        if stop is not None:
            await stop.wait()
            await lambda_function.stop()
            nursery.cancel_scope.cancel()


_SIGNAL_NAMES = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}  # Go's names, as RIE logs them


async def _main(options: RieOptions, function: RieFunction) -> None:
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run, options, function, stop=stop))
            async for signum in signals:
                rapid_log("INFO", f"Received signal signal={_SIGNAL_NAMES.get(signum, signum)}")
                rapid_log("INFO", "Shutting down...")
                stop.set()
                break


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv, dict(os.environ))
        function = rie_function(options, dict(os.environ))
    except UsageError as exc:
        rapid_log("FATAL", str(exc))
        return 1
    trio.run(_main, options, function)
    return 0


if __name__ == "__main__":
    sys.exit(main())
