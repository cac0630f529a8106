"""lambdalet's host: the functions, their environments and the Invoke API, under one nursery.

`Server` is also the embedding API for trio programs:

    async with Server(ServerConfig(port=0, function=[FunctionConfig(name="hello", code="fn")])) as server:
        result = await server.invoke("hello", b'{"name": "world"}')
        print(result.payload, result.function_error, result.log_tail)

and `serve(config)` is what `lambdalet serve` runs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import msgspec
import trio

from sandbox import host
from sandbox import layers as opt
from sandbox.cgroups import CgroupSupport
from sandbox.confinement import Confinement
from sandbox.doctor import entrypoint_problem
from sandbox.hostlimits import HostLimitReached, raise_open_files_limit
from sandbox.isolation import Isolation, PrivateFilesystem, script_interpreter
from sandbox.managed import ManagedRuntime
from sandbox.package_doctor import diagnose_package
from sandbox.process import RuntimeSpec
from sandbox.runtime_user import RuntimeUser
from sandbox.runtimes import Family

from . import eventstream, http, logs
from .asynchronous import api as event_invoke_api
from .asynchronous.destinations import dead_letter_problem, destination_problem
from .asynchronous.policy import THROTTLED, Policy, Response
from .asynchronous.queue import GONE, EventQueue, Served
from .config import (
    ConfigError,
    FunctionConfig,
    ServerConfig,
    availability_zone_id,
    function_arn,
    runtime_environment,
    snapstart_configuration,
)
from .debug import debug_environment
from .durable import api as durable_api
from .durable.service import Answer, Durable, DurableService
from .durable.wire import SUCCEEDED as DURABLE_SUCCEEDED, ErrorObject
from .environment import Environment, EnvironmentOptions
from .frontdoors.gateway import Gateway
from .frontdoors.model import Api
from .function import Function, FunctionRetired, TooManyRequests
from .invocation import Invocation, new_request_id
from .launcher import ExecLauncher, Launcher, command_check
from .invoke_api import (
    EVENT_LIMIT,
    INVOKE_PATH,
    STREAM_INVOKE_PATH,
    LATEST,
    REQUEST_LIMIT,
    InvokeRequest,
    ServiceError,
    check_payload,
    is_streaming,
    not_found,
    parse_invoke_request,
    restore_failed,
    result_headers,
    send_service_error,
    too_many_requests,
)
from .outcomes import Outcome
from .platform_log import JsonLog, LogStyle
from .protocol import Endpoints
from .snapstart import Template
from .store import MEMORY, Event, StoreError, now, open_store

log = logging.getLogger("lambdalet")


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """What an invocation gave the caller, as boto3's `invoke` reports it."""

    status_code: int  # 200, 202 (Event) or 204 (DryRun)
    payload: bytes = b""
    function_error: str | None = None  # "Unhandled" when the function failed
    log_tail: str | None = None  # the last 4 KB of the invocation's log, when asked for
    request_id: str = ""
    executed_version: str = LATEST
    durable_execution_arn: str | None = None  # a durable function's execution


def lambda_function(config: FunctionConfig, sink: logs.LogSink, service_env: dict[str, str] | None = None) -> Function:
    """A function run the way Lambda runs it (as opposed to RIE's way, see `rie.py`). `service_env`:
    what the server adds to its runtime's environment (a durable function's Lambda endpoint)."""

    metadata_token = str(uuid.uuid4())
    debugging = config.debug_port is not None
    if debugging:  # the runtime waits for a debugger: its command, then one environment on its port
        config = msgspec.structs.replace(config, env={**config.env, **debug_environment(config)}, concurrency=1,
                                         provisioned=0)
        log.warning("function %s: the runtime waits for a debugger (debugpy) at 127.0.0.1:%d before it runs; one "
                    "environment, and no timeout ends an invocation while debugging", config.name, config.debug_port)
    # Decided once per function at start-up; what the host cannot give is said there, once.
    level, private = host.isolation(config.isolation, function=config.name)
    if config.durable is not None and level is Isolation.STRICT:
        log.warning("function %s: durable, at isolation strict: its own network namespace cannot reach lambdalet's "
                    "Lambda API, so its SDK's checkpoints fail (isolation standard or none can)", config.name)
    config.check_layers()
    layers = tuple(str(Path(layer).resolve()) for layer in config.layers)
    if layers and not private:
        log.warning("function %s: no private mount namespace (isolation %s) to show its layers at /opt: their "
                    "bin, lib and python directories are on PATH, LD_LIBRARY_PATH and PYTHONPATH instead",
                    config.name, level)
    managed = config.managed_runtime()  # None: a runtime command of the function's own
    if managed is not None:
        for note in managed.notes:
            log.warning("lambdalet: WARNING: %s", note)
        _say_package_findings(config, managed, layers)
    probe = runtime_environment(config, "", layers_at_opt=private, managed=managed)
    argv = tuple(opt.host_command(layers, list(managed.argv) if managed else config.runtime, probe["PATH"]))
    confinement = Confinement(
        isolation=level,
        memory_mb=config.memory,
        cgroups=host.support() if level is not Isolation.NONE else CgroupSupport(),
        cpu_model=host.cpu_model(config.cpu_model, level, function=config.name),
        filesystem=(PrivateFilesystem(config.ephemeral_storage, str(Path(config.code).resolve()), layers,
                                      managed.shown if managed is not None else ())
                    if private else None),
        strict=host.strict_support() if level is Isolation.STRICT else None,
        user=_runtime_user(config, argv, probe["PATH"], private, private and managed is not None),
    )

    def spec_for(initialization_type: str) -> Callable[[str], RuntimeSpec]:
        def make_spec(runtime_api: str) -> RuntimeSpec:
            env = runtime_environment(config, runtime_api, metadata_token=metadata_token,
                                      initialization_type=initialization_type, layers_at_opt=private,
                                      managed=managed)
            env.update(service_env or {})
            return RuntimeSpec(argv, env, env["LAMBDA_TASK_ROOT"])
        return make_spec

    extensions = opt.extensions(layers)
    options = EnvironmentOptions(
        function_name=config.lambda_name,
        extensions=extensions,
        account_id=config.account_id,
        handler=config.handler,
        endpoints=Endpoints(metadata_token=metadata_token, availability_zone_id=availability_zone_id(config.region)),
        version=config.version,
        memory_mb=config.memory,
        log_style=LogStyle.LAMBDA,
        init_timeout=config.init_timeout,
        idle_timeout=config.idle_timeout,
        snapstart=config.snapstart,
        json_log=_json_log(config),
        debugging=debugging,
    )
    launcher: Launcher = ExecLauncher(confinement, command_check(layers, entrypoint_problem))
    # Not under strict: a copy is born in its template's network namespace, and the seccomp filter
    # it inherits forbids the setns into its own.
    own_client = managed is not None and managed.own_client  # lambdalet's Python runtime client
    if config.snapstart and debugging:
        log.warning("function %s: SnapStart's contract only while debugging (init type snap-start, hooks, "
                    "restore/next), no memory snapshot: each environment runs init, so a debugger sees it",
                    config.name)
    elif config.snapstart and own_client and extensions:
        log.warning("function %s: SnapStart's contract only (init type snap-start, hooks, restore/next, restore "
                    "durations), no memory snapshot: its external extensions start with each environment's "
                    "runtime, so each environment runs init", config.name)
    elif config.snapstart and own_client and level is not Isolation.STRICT and confinement.user is None:
        # lambdalet's own runtime can be a fork template: a memory snapshot, restored in milliseconds.
        log.warning("function %s: SnapStart with fork templates: the initialised runtime is kept as a template "
                    "and every environment is a copy of it, restored by fork", config.name)
        exec_launcher = launcher
        launcher = Template(
            spec_for("snap-start"), options,
            lambda make_spec, options: Environment(make_spec, options, sink, exec_launcher),
            confinement=confinement, code=str(Path(config.code).resolve()), layers=layers,
            configuration=snapstart_configuration(config), rotate_after=config.snapstart_rotate).launcher
    elif config.snapstart and own_client and confinement.user is not None:
        log.warning("function %s: SnapStart's contract only (init type snap-start, hooks, restore/next, restore "
                    "durations), no memory snapshot: a forked copy running as user %s could not join its own "
                    "cgroups and mounts, so each environment runs init", config.name, confinement.user)
    elif config.snapstart and own_client:
        log.warning("function %s: SnapStart's contract only (init type snap-start, hooks, restore/next, restore "
                    "durations), no memory snapshot: at isolation strict a forked copy could not join its own "
                    "network namespace, so each environment runs init", config.name)
    elif config.snapstart:
        log.warning("function %s: SnapStart's contract only (init type snap-start, before-snapshot and "
                    "after-restore hooks, restore/next, restore durations), no memory snapshot: the runtime "
                    "is not lambdalet's own, so each environment runs init", config.name)
    return Function(config.name, spec_for("snap-start" if config.snapstart else "on-demand"), options, sink,
                    launcher, concurrency=config.concurrency, provisioned=config.provisioned,
                    provisioned_spec=spec_for("provisioned-concurrency"))


def _json_log(config: FunctionConfig) -> JsonLog | None:
    """The platform's lines in JSON, for a function whose LoggingConfig asks for it."""
    if config.log_format != "JSON":
        return None
    return JsonLog(config.arn, config.system_log_level or "INFO", "snap-start" if config.snapstart else "on-demand",
                   wall_offset=time.time() - trio.current_time())


def _say_package_findings(config: FunctionConfig, managed: ManagedRuntime, layers: tuple[str, ...]) -> None:
    """What `lambdalet doctor --package` finds in the function's code and layers (what would not
    import on Lambda), each said once, as a warning."""
    runtime = managed.runtime
    try:
        found = diagnose_package(str(Path(config.code).resolve()), runtime, arch=config.architectures[0],
                                 layers=layers, handler=config.handler if runtime.family is Family.PYTHON else None)
    except OSError as exc:
        log.warning("lambdalet: WARNING: function %s: its code cannot be read: %s", config.name, exc)
        return
    for finding in found.findings:
        where = f"{finding.path}: " if finding.path else ""
        fix = f" (fix: {finding.fix})" if finding.fix else ""
        log.warning("lambdalet: WARNING: function %s: %s%s%s", config.name, where, finding.message, fix)


def _runtime_user(config: FunctionConfig, argv: tuple[str, ...], path: str, private: bool,
                  shown: bool) -> RuntimeUser | None:
    """The function's runtime user, if it has one: ConfigError where lambdalet cannot switch to it;
    a warning, once, when the runtime's program, its interpreter or the code is out of that
    user's reach. What a private file system `shown`s elsewhere (a managed runtime at /var/lang and
    /var/runtime) is reached through its bind mount, whatever the modes of its host directory's
    parents, and so is the code at /var/task."""
    config.check_user()
    user = config.run_as
    if user is None:
        return None
    program = shutil.which(argv[0], path=path) if "/" not in argv[0] else os.path.join(config.code, argv[0])
    if shown:
        program = None
    # The code too where it is seen at its host path (at /var/task only its own directory counts).
    for path in filter(None, (program, script_interpreter(program), None if private else config.code)):
        problem = user.problem_reaching(path)
        if problem is not None:
            log.warning("function %s: the runtime cannot start as user %s (%s): %s, and Lambda's runtime user "
                        "must be able to read what the runtime needs", config.name, config.user, user, problem)
            break
    return user


@dataclass(frozen=True, slots=True)
class Changes:
    """What applying a new set of functions changed, by function name."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # a new version: its configuration or its code changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.replaced)

    def __str__(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in
                 (("added", self.added), ("removed", self.removed), ("reloaded", self.replaced)) if names]
        return "; ".join(parts) or "nothing changed"


def function_names(configs: list[FunctionConfig]) -> dict[str, str]:
    """Every name a function answers to (its own, and the other names a template gives it) -> its
    name; ConfigError when two functions would answer to one name."""
    names: dict[str, str] = {}
    for config in configs:
        for name in config.names:
            other = names.setdefault(name, config.name)
            if other != config.name:
                raise ConfigError(f"functions {other} and {config.name} both answer to the name {name}"
                                  + (f" ({config.source})" if config.source else ""))
    return names


def image_not_served(config: FunctionConfig) -> ServiceError:
    """A container image function: Lambda's answer to a function that exists but cannot run now (409,
    boto3's ResourceConflictException), saying where it does run."""
    return ServiceError(
        409, "ResourceConflictException",
        f"Function {config.name} is a container image (PackageType: Image), which lambdalet serve does not run: "
        "run the image itself (docker run -p 9000:8080 IMAGE); its lambdalet-rie answers the same Invoke API "
        "at http://127.0.0.1:9000/2015-03-31/functions/function/invocations")


TENANCY_MISMATCH = "Tenant ID configuration not specified or passed to a function when tenant isolation is not enabled."


def check_tenancy(config: FunctionConfig, tenant_id: str | None) -> None:
    """Lambda refuses an invocation without a tenant id for a function with tenant isolation, and
    one with a tenant id for a function without (InvalidParameterValueException, in the words of the
    guide's "Troubleshooting tenant isolation")."""
    if (config.tenancy == "PER_TENANT") != (tenant_id is not None):
        raise ServiceError(400, "InvalidParameterValueException", TENANCY_MISMATCH)


class Server:
    """The functions of a `ServerConfig` behind the Invoke API. `apply` swaps in a new set of
    functions while serving (a template or config file read again): added ones start, removed ones
    stop, and a function whose configuration or code changed is replaced by a new version of itself,
    its old environments finishing the invocations they have (`Function.retire`)."""

    def __init__(self, config: ServerConfig, *, sink: logs.LogSink | None = None, listen: bool = True,
                 warm: bool = False) -> None:
        self.config = config
        self.sink = sink or logs.LogSink()
        self.listen = listen  # the Invoke API on a port; without, `invoke` only (`lambdalet invoke --template`)
        self.warm = warm  # one environment of each function initialised as it starts (--warm eager)
        self.functions: dict[str, Function] = {}  # by function name (a container image function has none)
        self.configs: dict[str, FunctionConfig] = {}
        self._names: dict[str, str] = {}  # every name a function answers to -> its name
        self._nursery: trio.Nursery | None = None
        self._nursery_manager = None
        self.port: int | None = None
        self.events: EventQueue | None = None  # Event invocations: committed, retried, routed
        self._event_api: event_invoke_api.EventInvokeConfigApi | None = None
        self.durable: DurableService | None = None  # durable executions (runtime_api/durable/)
        self._durable_api: durable_api.DurableApi | None = None
        self.apis: list[Api] = list(config.api)
        self.gateway = Gateway(self)  # Function URLs and APIs in front of the functions

    @property
    def endpoint(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def __aenter__(self) -> Server:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            await self.start(self._nursery)
        except BaseException as exc:
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        assert self._nursery is not None and self._nursery_manager is not None
        with trio.CancelScope(shield=True):
            await self.stop()
        self._nursery.cancel_scope.cancel()
        return await self._nursery_manager.__aexit__(*exc_info)

    async def stop(self) -> None:
        """Stop the functions whose environments have external extensions as Lambda spins them
        down: each extension subscribed to SHUTDOWN gets it (`spindown`) and a moment to finish."""
        async with trio.open_nursery() as nursery:
            for function in self.functions.values():
                if function.options.extensions:
                    nursery.start_soon(function.stop)

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the event queue, the functions and the Invoke API listener in `nursery`."""
        self._nursery = nursery
        raise_open_files_limit()  # room for many environments (sandbox/hostlimits.py)
        listeners = []
        if self.listen:  # first, so that a durable function's environment can name the port
            listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
            self.port = listeners[0].socket.getsockname()[1]
        await self._start_events(nursery)
        await self._start_durable(nursery)
        await self.apply(self.config.function)
        if self.listen:
            nursery.start_soon(trio.serve_listeners, partial(http.serve_connection, handler=self._handle), listeners)

    async def apply(self, configs: list[FunctionConfig], *, code_changed: frozenset[str] = frozenset(),
                    apis: list[Api] | None = None) -> Changes:
        """Serve `configs` (and `apis`, when given) from now on. A function is replaced when its
        configuration differs or its name is in `code_changed`; unchanged ones keep their warm
        environments. ConfigError (and nothing changed) when two functions would answer to one name."""
        assert self._nursery is not None, "Server.start was not called"
        names = function_names(configs)
        wanted = {config.name: config for config in configs}
        self._check_destinations(configs, names)
        added = tuple(name for name in wanted if name not in self.configs)
        removed = tuple(name for name in self.configs if name not in wanted)
        replaced = tuple(name for name, config in wanted.items()
                         if name in self.configs and (config != self.configs[name] or name in code_changed))
        # Each function's isolation (lambda_function): the subreaper, cgroups found, stale ones of a
        # crashed run removed, what is missing said once. The new versions start before any name
        # moves to them, so an invocation always finds a function.
        started: dict[str, Function] = {}
        try:
            for name in added + replaced:
                if wanted[name].package_type != "Image":
                    started[name] = await self._nursery.start(
                        lambda_function(wanted[name], self.sink, self._service_env(wanted[name])).run)
        except BaseException:
            for function in started.values():
                function.retire()
            raise
        for name in removed + replaced:
            old = self.functions.pop(name, None)
            if old is not None:
                old.retire()
        for name in removed:
            del self.configs[name]
        self.configs.update((name, wanted[name]) for name in added + replaced)
        self.functions.update(started)
        self._names = names
        await self._serve_events(added + replaced)
        if apis is not None:
            self.apis = list(apis)
        if self.listen:
            await self.gateway.update(self._nursery, list(self.configs.values()), self.apis)
        if self.warm and started:
            await self._warm(started)
        return Changes(added, removed, replaced)

    async def _warm(self, functions: dict[str, Function]) -> None:
        """--warm eager: one initialised environment of each function, at once, said as it comes."""
        async def warm(name: str, function: Function) -> None:
            env = await function.warm()
            if env is None:
                log.warning("function %s: its eager init failed (its error is in the log; an invocation tries again)",
                            name)
            elif env.platform.init_duration_ms is not None:
                log.warning("function %s: warm (init %.2f ms)", name, env.platform.init_duration_ms)
            else:
                log.warning("function %s: warm", name)

        async with trio.open_nursery() as nursery:
            for name, function in functions.items():
                nursery.start_soon(warm, name, function)

    # -- invoking ----------------------------------------------------------------------------------

    def _function(self, name: str, qualifier: str | None) -> tuple[Function, FunctionConfig]:
        config = self.configs.get(self._names.get(name, ""))
        if config is None:
            raise not_found(function_arn(name))
        if qualifier not in (None, LATEST, config.version):
            raise not_found(f"{function_arn(name, config.region, config.account_id)}:{qualifier}")
        if config.package_type == "Image":
            raise image_not_served(config)
        return self.functions[config.name], config

    def _invocation(self, config: FunctionConfig, payload: bytes, request: InvokeRequest) -> Invocation:
        check_tenancy(config, request.tenant_id)
        # The function's own ARN (qualified if the caller qualified it), whichever of its names the caller used (on Lambda only the
        # FunctionName exists; a template's logical id is a local convenience).
        arn = config.arn
        return Invocation(
            payload,
            function_arn=f"{arn}:{request.qualifier}" if request.qualifier else arn,
            timeout=config.timeout,
            trace_id=request.trace_id,
            client_context=request.client_context,
            tenant_id=request.tenant_id,
        )

    async def call(self, function_name: str, payload: bytes, *, trace_id: str | None = None
                   ) -> tuple[Invocation, Outcome, Environment | None]:
        """One synchronous invocation as an AWS service makes it (a Function URL, API Gateway): the
        invocation, its outcome and the environment relaying a streamed one; ServiceError as the
        Invoke API would answer."""
        request = InvokeRequest(function_name, None, "RequestResponse", None, None, trace_id, None)
        _, config = self._function(function_name, None)
        invocation = self._invocation(config, payload, request)
        outcome, env = await self._run(request, invocation)
        return invocation, outcome, env

    async def invoke(
        self,
        function_name: str,
        payload: bytes = b"{}",
        *,
        invocation_type: str = "RequestResponse",
        log_type: str | None = None,
        client_context: str | None = None,
        qualifier: str | None = None,
        tenant_id: str | None = None,
    ) -> InvokeResult:
        """Invoke a function without HTTP; raises `ServiceError` as the Invoke API would answer.

        `client_context` is the JSON text the runtime receives. A streamed response is collected.
        """
        request = InvokeRequest(function_name, qualifier, invocation_type, log_type, client_context, None, tenant_id)
        function, config = self._function(function_name, qualifier)
        payload = check_payload(payload, False, REQUEST_LIMIT)
        invocation = self._invocation(config, payload, request)
        if invocation_type == "DryRun":
            return InvokeResult(204, request_id=invocation.request_id)
        if config.durable is not None:
            body, headers, failed = await self._start_durable_execution(config, payload, None,
                                                                        invocation_type != "Event")
            return InvokeResult(202 if invocation_type == "Event" else 200, body, "Unhandled" if failed else None,
                                request_id=invocation.request_id, executed_version=config.version,
                                durable_execution_arn=headers[0][1])
        if invocation_type == "Event":
            await self._enqueue(config, request, invocation)
            return InvokeResult(202, request_id=invocation.request_id)
        outcome, env = await self._run(request, invocation)
        body = await env.collect_stream(invocation) if is_streaming(outcome) else outcome.body
        return InvokeResult(
            200,
            body,
            "Unhandled" if outcome.is_error or invocation.stream_error else None,
            invocation.tail().decode(errors="replace") if log_type == "Tail" else None,
            invocation.request_id,
            config.version,
        )

    async def _run(self, request: InvokeRequest, invocation: Invocation) -> tuple[Outcome, object]:
        while True:
            function, config = self._function(request.function_name, request.qualifier)
            try:
                outcome, env = await function.invoke(invocation, wait=False)
                break
            except TooManyRequests:
                raise too_many_requests() from None
            except HostLimitReached as reached:
                log.warning("function %s: invocation refused (429): %s", request.function_name, reached)
                raise too_many_requests() from None
            except FunctionRetired:
                invocation.timeout = config.timeout  # its successor's, found again by name (or gone: 404)
        failed = restore_failed(outcome)
        if failed is not None:
            raise failed
        return outcome, env

    # -- asynchronous invocation -------------------------------------------------------------------

    async def _start_events(self, nursery: trio.Nursery) -> None:
        """Open the store (an embedded server keeps its events in memory unless told where) and
        start the queue; say where events are kept, and what a crashed server left."""
        config = self.config
        store = await open_store(state_dir=config.state_dir or (None if config.queue else MEMORY), queue=config.queue)
        self.events = EventQueue(store, self._run_queued, policy=Policy(config.async_time_scale),
                                 lease_seconds=config.queue_lease, endpoints=config.service_endpoints,
                                 canonical=lambda name: self._names.get(name, name))
        await nursery.start(self.events.run)  # it closes the store when it stops
        self._event_api = event_invoke_api.EventInvokeConfigApi(self.events, self._event_function,
                                                                config.service_endpoints)
        if store.location != MEMORY:
            log.warning("lambdalet: Event invocations are queued in %s%s", store.location,
                        f" ({self.events.recovered} left running by a server that stopped: they run again)"
                        if self.events.recovered else "")
        if config.async_time_scale != 1.0:
            scale = config.async_time_scale
            log.warning("lambdalet: asynchronous invocation on a time scale of %g: retries after %.3g s and %.3g s, "
                        "events older than %.3g s by default dropped (Lambda: 1 and 2 minutes, 6 hours)",
                        scale, 60 * scale, 120 * scale, 21600 * scale)

    def _check_destinations(self, configs: list[FunctionConfig], names: dict[str, str]) -> None:
        """ConfigError for a destination or dead-letter target a function cannot use here."""
        endpoints = self.config.service_endpoints
        for config in configs:
            found = [("event_invoke_config", destination_problem(config.event_invoke_config, config.name, names.get,
                                                                 endpoints)) if config.event_invoke_config else None,
                     ("dead_letter_config", dead_letter_problem(config.dead_letter_config.target_arn, config.name,
                                                                names.get, endpoints)) if config.dead_letter_config else None]
            for what, problem in filter(None, found):
                if problem is not None:
                    where = f" ({config.source})" if config.source else ""
                    raise ConfigError(f"function {config.name}{where}: {what}: {problem[1]}")

    async def _serve_events(self, changed: tuple[str, ...]) -> None:
        """The queue dispatches the functions served now; a function whose file declares its event
        invoke config has it stored (as a deployment would set it), over what the API had set."""
        assert self.events is not None
        for name in changed:
            declared = self.configs[name].event_invoke_config
            if declared is not None:
                await self.events.store.put_config(name, LATEST, msgspec.json.encode(declared), now())
        self.events.serve([
            Served(name, 1 if config.debug_port is not None else config.concurrency, f"{config.arn}:{config.version}",
                   config.region, config.dead_letter_config.target_arn if config.dead_letter_config else None)
            for name, config in self.configs.items() if config.package_type != "Image"])

    def _event_function(self, name: str) -> event_invoke_api.Function | None:
        config = self.configs.get(self._names.get(name, ""))
        if config is None:
            return None
        return event_invoke_api.Function(config.name, config.arn, tuple(dict.fromkeys((LATEST, config.version))))

    async def _enqueue(self, config: FunctionConfig, request: InvokeRequest, invocation: Invocation) -> None:
        """Commit an Event invocation; the caller's 202 follows. A 500 if it could not be written:
        then it was not accepted."""
        assert self.events is not None
        try:
            await self.events.enqueue(config.name, invocation.payload, invocation.request_id, {
                key: value for key, value in (
                    ("qualifier", request.qualifier), ("traceId", invocation.trace_id),
                    ("clientContext", request.client_context), ("tenantId", request.tenant_id)) if value is not None})
        except StoreError as exc:
            log.warning("lambdalet: an Event invocation of %s was refused: %s", config.name, exc)
            raise ServiceError(500, "ServiceException", f"The event could not be queued: {exc}") from None

    async def _run_queued(self, event: Event) -> Response | str:
        """One attempt of a queued invocation, by the path a synchronous one takes: its Response,
        THROTTLED when every environment is busy, GONE when the function is not served here."""
        request = InvokeRequest(event.function, event.request.get("qualifier"), "Event", None,
                                event.request.get("clientContext"), event.request.get("traceId"),
                                event.request.get("tenantId"))
        try:
            _, config = self._function(event.function, request.qualifier)
            invocation = self._invocation(config, event.payload, request)
        except ServiceError:
            return GONE
        invocation.request_id = event.id
        try:
            outcome, env = await self._run(request, invocation)
        except ServiceError as exc:
            if exc.status == 429:
                return THROTTLED
            if exc.status == 404:
                return GONE
            return Response(exc.body(), "Unhandled", config.version, error_type=exc.error_type)
        body = outcome.body
        if is_streaming(outcome) and env is not None:
            parts: list[bytes] = []

            async def collect(chunk: bytes) -> None:
                parts.append(chunk)

            await env.relay_stream(invocation, collect)
            body = b"".join(parts)
        failed = outcome.is_error or invocation.stream_error is not None
        return Response(body, "Unhandled" if failed else None, config.version,
                        error_type=outcome.error_type or (invocation.stream_error.error_type if invocation.stream_error
                                                          else None))

    # -- durable executions ------------------------------------------------------------------------

    def _service_env(self, config: FunctionConfig) -> dict[str, str]:
        """A durable function's SDK reaches the Lambda API here (its boto3 client reads
        AWS_ENDPOINT_URL_LAMBDA), with credentials to sign with when the host has none."""
        if config.durable is None or self.port is None:
            return {}
        env = {"AWS_ENDPOINT_URL_LAMBDA": f"http://{self.config.host}:{self.port}"}
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            env.update(AWS_ACCESS_KEY_ID="lambdalet", AWS_SECRET_ACCESS_KEY="lambdalet")
        return env

    async def _start_durable(self, nursery: trio.Nursery) -> None:
        """Durable executions, in the store the event queue uses; those a stopped server left
        running start again."""
        assert self.events is not None
        self.durable = DurableService(self.events.store, scale=self.config.durable_time_scale,
                                      lease_seconds=self.config.queue_lease)
        self.durable.find, self.durable.invoke, self.durable.chain = (
            self._durable_function, self._durable_invocation, self._chained_invoke)
        resumed = await nursery.start(self.durable.run)
        self._durable_api = durable_api.DurableApi(self.durable, self._durable_function)
        if resumed:
            log.warning("lambdalet: %d durable execution(s) left running by a server that stopped: they go on", resumed)
        if self.config.durable_time_scale != 1.0:
            log.warning("lambdalet: durable functions on a time scale of %g: a wait of one minute lasts %.3g s, and "
                        "so do step retry delays, callback timeouts and execution timeouts",
                        self.config.durable_time_scale, 60 * self.config.durable_time_scale)

    def _durable_function(self, name: str) -> Durable | None:
        config = self.configs.get(self._names.get(name.split(":")[-1] if name.startswith("arn:") else name, ""))
        if config is None or config.durable is None:
            return None
        return Durable(config.name, config.arn, config.version, config.durable.execution_timeout,
                       config.durable.retention_days)

    async def _durable_invocation(self, function_name: str, payload: bytes, request_id: str) -> Answer:
        """One invocation of a durable handler with its durable input. Throttled, it waits for an
        environment (Lambda retries a durable invocation it could not run)."""
        request = InvokeRequest(function_name, None, "Event", None, None, None, None)
        while True:
            try:
                _, config = self._function(function_name, None)
                invocation = self._invocation(config, payload, request)
                invocation.request_id = request_id
                outcome, env = await self._run(request, invocation)
                break
            except ServiceError as exc:
                if exc.status != 429:
                    return Answer(request_id, None, ErrorObject(error_type=exc.error_type, error_message=exc.message))
                await trio.sleep(0.05)
        body = await env.collect_stream(invocation) if is_streaming(outcome) else outcome.body
        if outcome.is_error:
            return Answer(invocation.request_id, None, _function_error(body, outcome.error_type))
        return Answer(invocation.request_id, body, None)

    async def _chained_invoke(self, function_name: str, payload: bytes, tenant_id: str | None
                              ) -> tuple[str, str | None, ErrorObject | None]:
        """A chained invoke of a function that is not durable: its response, or its error."""
        try:
            result = await self.invoke(function_name, payload, tenant_id=tenant_id)
        except ServiceError as exc:
            return "FAILED", None, ErrorObject(error_type=exc.error_type, error_message=exc.message)
        if result.function_error:
            return "FAILED", None, _function_error(result.payload, None)
        return DURABLE_SUCCEEDED, result.payload.decode(errors="replace"), None

    async def _start_durable_execution(self, config: FunctionConfig, payload: bytes, name: str | None,
                                       wait: bool) -> tuple[bytes, list[tuple[str, str]], bool]:
        """Invoke a durable function: start its execution (or find the one of that name) and,
        synchronously, wait for its end. (body, headers, function error)."""
        assert self.durable is not None
        if self.port is None:  # its SDK would reach AWS's own Lambda API instead
            raise ServiceError(400, "InvalidParameterValueException",
                               f"{config.name} is a durable function: its SDK needs lambdalet's Lambda API, which a "
                               "server without a port does not serve (use lambdalet serve)")
        function = self._durable_function(config.name)
        if name is not None and not (0 < len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name)):
            raise ServiceError(400, "InvalidParameterValueException",
                               "DurableExecutionName must be 1-64 letters, digits, '-' or '_'")
        execution, _ = await self.durable.start(function, payload, name)
        headers = [("X-Amz-Durable-Execution-Arn", execution.arn)]
        if not wait:
            return b"", headers, False
        ended = await self.durable.wait(execution.arn)
        if ended.status == DURABLE_SUCCEEDED:
            return (ended.result or "null").encode(), headers, False
        error = ended.error or ErrorObject()
        return json.dumps({"errorType": error.error_type or ended.status, "errorMessage": error.error_message or "",
                           **({"stackTrace": error.stack_trace} if error.stack_trace else {})}).encode(), headers, True

    async def _answer_durable(self, conn: http.Connection, request: http.Request, path, request_id: str) -> None:
        """The durable execution operations of the Lambda API (durable/api.py)."""
        assert self._durable_api is not None
        body, too_large = await conn.read_body(REQUEST_LIMIT)
        if too_large:
            raise ServiceError(413, "RequestTooLargeException", f"Request must be smaller than {REQUEST_LIMIT} bytes")
        status, answer = await self._durable_api.handle(request.method, path, request.query, body)
        await conn.respond(status, answer, [("Content-Type", "application/json"), ("X-Amzn-RequestId", request_id)])

    # -- the HTTP surface --------------------------------------------------------------------------

    async def _handle(self, conn: http.Connection, request: http.Request) -> None:
        request_id = new_request_id()
        try:
            found = INVOKE_PATH.match(request.path) or STREAM_INVOKE_PATH.match(request.path)
            if found is None and (config_path := event_invoke_api.PATH.match(request.path)) is not None:
                await self._answer_event_invoke_config(conn, request, config_path, request_id)
                return
            if found is None and (durable_path := durable_api.match(request.path)) is not None:
                await self._answer_durable(conn, request, durable_path, request_id)
                return
            if found is None or request.method != "POST":
                raise ServiceError(404, "UnknownOperationException", f"Unknown operation {request.method} {request.path}")
            streams = found.re is STREAM_INVOKE_PATH
            invoke = parse_invoke_request(request, found["name"])
            if streams and invoke.invocation_type == "Event":
                raise ServiceError(400, "InvalidParameterValueException",
                                   "InvokeWithResponseStream supports the RequestResponse and DryRun invocation types")
            _, config = self._function(invoke.function_name, invoke.qualifier)
            limit = EVENT_LIMIT if invoke.invocation_type == "Event" else REQUEST_LIMIT
            payload, too_large = await conn.read_body(limit)
            payload = check_payload(payload, too_large, limit)
            invocation = self._invocation(config, payload, invoke)
            invocation.request_id = request_id
            if invoke.invocation_type == "DryRun":
                await conn.respond(204, b"", [("X-Amzn-RequestId", request_id)], content_length=False)
                return
            if config.durable is not None and not streams:
                body, headers, failed = await self._start_durable_execution(
                    config, payload, request.header(b"x-amz-durable-execution-name"),
                    invoke.invocation_type != "Event")
                headers.append(("X-Amzn-RequestId", request_id))
                if invoke.invocation_type == "Event":
                    await conn.respond(202, b"", headers)
                else:
                    headers += [("Content-Type", "application/json"), ("X-Amz-Executed-Version", config.version)]
                    await conn.respond(200, body, headers + ([("X-Amz-Function-Error", "Unhandled")] if failed else []))
                return
            if invoke.invocation_type == "Event":
                await self._enqueue(config, invoke, invocation)
                await conn.respond(202, b"", [("X-Amzn-RequestId", request_id)])
                return
            outcome, env = await self._run(invoke, invocation)
        except ServiceError as exc:
            await send_service_error(conn, exc, request_id)
            return
        if streams:
            await self._answer_event_stream(conn, invocation, outcome, env, config, invoke.log_type == "Tail")
            return
        if not is_streaming(outcome):
            tail = invocation.tail() if invoke.log_type == "Tail" else None
            await conn.respond(200, outcome.body, result_headers(request_id, config.version, outcome, tail))
            return
        # Streamed: relayed as it arrives; a mid-stream error comes as trailers.
        await conn.start_stream(200, result_headers(request_id, config.version, outcome, None))
        await env.relay_stream(invocation, conn.send_data)
        await conn.end_stream(invocation.error_trailers())

    async def _answer_event_invoke_config(self, conn: http.Connection, request: http.Request, path, request_id: str) -> None:
        """PutFunctionEventInvokeConfig and its siblings (asynchronous/api.py)."""
        assert self._event_api is not None
        body, too_large = await conn.read_body(REQUEST_LIMIT)
        if too_large:
            raise ServiceError(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes")
        status, answer = await self._event_api.handle(request.method, path, request.query, body)
        await conn.respond(status, answer, [("Content-Type", "application/json"), ("X-Amzn-RequestId", request_id)],
                           content_length=status != 204)

    async def _answer_event_stream(self, conn, invocation, outcome, env, config, tail: bool) -> None:
        """InvokeWithResponseStream: PayloadChunk events as the runtime streams (one for a buffered
        answer), then InvokeComplete with the error, if any, and the log tail."""
        await conn.start_stream(200, [
            ("Content-Type", eventstream.CONTENT_TYPE),
            ("X-Amzn-RequestId", invocation.request_id),
            ("X-Amz-Executed-Version", config.version),
        ])

        async def chunk(data: bytes) -> None:
            await conn.send_data(eventstream.event_message("PayloadChunk", data, "application/octet-stream"))

        error: tuple[str, str] | None = None
        if is_streaming(outcome):
            await env.relay_stream(invocation, chunk)
            if invocation.stream_error is not None:
                error = (invocation.stream_error.error_type, invocation.stream_error.body())
        else:
            await chunk(outcome.body)
            if outcome.is_error:
                error = (outcome.error_type or "Unhandled", outcome.body.decode(errors="replace"))
        complete = {}
        if error is not None:
            complete["ErrorCode"], complete["ErrorDetails"] = error
        if tail:
            complete["LogResult"] = base64.b64encode(invocation.tail()).decode()
        await conn.send_data(eventstream.event_message("InvokeComplete", json.dumps(complete).encode(), "application/json"))
        await conn.end_stream()


def _function_error(body: bytes, error_type: str | None) -> ErrorObject:
    """A function's error body ({"errorType", "errorMessage", "stackTrace"}) as an ErrorObject."""
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        return ErrorObject(error_type=error_type or "Unhandled", error_message=body.decode(errors="replace"))
    trace = found.get("stackTrace")
    return ErrorObject(error_type=str(found.get("errorType") or error_type or "Unhandled"),
                       error_message=str(found.get("errorMessage", "")),
                       stack_trace=[str(line) for line in trace] if isinstance(trace, list) else None)


async def serve(config: ServerConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run lambdalet until cancelled."""
    async with trio.open_nursery() as nursery:
        server = Server(config)
        await server.start(nursery)
        task_status.started(server)
