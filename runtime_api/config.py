"""Function and server configuration (one msgspec Struct each), the TOML config file, and the
environment variables a runtime receives, as Lambda sets them.

Config file schema (`lambdalet serve --config FILE`):

    host = "127.0.0.1"          # optional, default 127.0.0.1
    port = 8080                 # optional, default 8080
    template = "template.yaml"  # optional: a SAM or CloudFormation template (relative to this file)
                                # whose functions are served beside the [[function]] entries
    parameter_overrides = { Stage = "dev" }  # the template's parameters (SAM's --parameter-overrides)
    env_vars = "env.json"       # SAM's --env-vars file: variables for every function, or for one
    layer_map = { "arn:aws:lambda:us-east-1:123456789012:layer:deps:3" = "./deps" }  # a layer ARN's local directory

    [[function]]
    name = "hello"              # required
    handler = "app.handler"     # _HANDLER
    code = "./hello"            # the task root (LAMBDA_TASK_ROOT), relative to the config file
    runtime_id = "python3.12"   # Lambda's runtime: python3.9-3.14, nodejs18.x-24.x, provided.al2,
                                # provided.al2023 (default: the Python runtime of lambdalet's own version)
    runtime = ["node", "index.mjs"]  # optional: a runtime command of your own instead (sandbox/managed.py)
    interpreters = { "3.12" = "/opt/py312/bin/python3.12" }  # where a Python is (--python-path)
    allow_other_python = false  # a Python runtime whose version is missing runs on lambdalet's own
    sdk = "bundled"             # bundled: the runtime's boto3 | none | a directory of your own
    timeout = 3.0               # seconds (Lambda: 1-900)
    memory = 128                # MB (Lambda: 128-10240)
    concurrency = 10            # environments at once; beyond that callers get 429
    idle_timeout = 300.0        # seconds before an idle environment is shut down
    init_timeout = 10.0         # seconds the init phase may take
    env = { GREETING = "hi" }   # the function's own environment variables
    isolation = "standard"      # none | standard | strict (default: standard where permitted, else none)
    ephemeral_storage = 512     # MB of the private /tmp (Lambda: 512-10240)
    cpu_model = "host"          # host: no CPU limit | lambda: Lambda's CPU share for the memory (1,769 MB = 1 vCPU)
    snapstart = false           # SnapStart: lambdalet's runtime restored by fork from a template; others: the contract
    snapstart_rotate = 1000     # optional: a new SnapStart template after this many restores
    provisioned = 0             # environments initialised ahead of demand and kept warm (<= concurrency)
    layers = ["./layer1", "./layer2"]  # up to 5 directories, relative to the config file, shown at /opt
                                # (later layers win; sandbox/layers.py)
    user = "sbx_user1051"       # optional: run the runtime as this user (a name, uid or uid:gid;
                                # sbx_user1051 is Lambda's, uid 993 gid 990); default: lambdalet's own
    architectures = ["x86_64"]  # x86_64 or arm64
    aliases = ["my-function"]   # other names the function answers to
    tenancy = "PER_TENANT"      # optional: every invocation must name its tenant
    log_format = "JSON"         # Text | JSON; application_log_level, system_log_level with JSON
    debug_port = 5678           # optional: the runtime waits for a debugger (debugpy) on this port
    # Asynchronous invocation, in Lambda's own shapes (runtime_api/asynchronous/invoke_config.py). A
    # destination: another function (its name or ARN), "file:records.jsonl" (relative to this file),
    # or an SQS queue, SNS topic, EventBridge bus or S3 bucket ARN (with --service-endpoint).
    event_invoke_config = { MaximumRetryAttempts = 1, MaximumEventAgeInSeconds = 600, DestinationConfig = { OnFailure = { Destination = "file:failed.jsonl" } } }
    dead_letter_config = { TargetArn = "file:dead-letters.jsonl" }

Server settings of the config file (the command line's flags win):

    state_dir = "~/.local/state/lambdalet"   # where Event invocations are queued (SQLite)
    queue = "postgresql://lambdalet@db/lambdalet"  # or a PostgreSQL queue shared by several servers
    async_time_scale = 0.01     # every asynchronous delay and age multiplied by this (local testing)
    service_endpoints = { sqs = "http://localhost:4566" }  # where records for AWS services go
    url = { auth_type = "NONE", invoke_mode = "BUFFERED", cors = { allow_origins = ["*"] } }
                                # optional: a Function URL (runtime_api/frontdoors/model.py FunctionUrl)

    front_door_port = 3000      # where Function URLs and APIs listen (by host name)
    jwks = { MyJwtAuthorizer = "keys.json" }  # a local JWKS file for a JWT authorizer (its signature check)

    [[api]]                     # an API Gateway API in front of the functions (model.py Api)
    name = "shop"
    kind = "HTTP"               # HTTP (payload 2.0 or 1.0) | REST (payload 1.0, a stage in the path)
    routes = [{ method = "GET", path = "/items/{id}", function = "hello" }]
"""

from __future__ import annotations

import os
import secrets
import time
import tomllib
from pathlib import Path

import msgspec

from sandbox import layers as opt
from sandbox import runtime_user
from sandbox.cgroups import CpuModel
from sandbox.isolation import DEFAULT_EPHEMERAL_MB, EPHEMERAL_RANGE, Isolation
from sandbox.managed import ManagedRuntime, RuntimeOptions, RuntimeUnavailable, SdkChoice, default_runtime_id, prepare
from sandbox.runtimes import Family, Runtime, UnknownRuntime, lookup

from .asynchronous.invoke_config import SERVICES, DeadLetterConfig, EventInvokeConfig, check_ranges, rebase
from .invoke_api import ServiceError
from .frontdoors.model import Api, FunctionUrl, JwtAuthorizer, with_jwks


# Reserved by Lambda: a function's own `env` cannot override these.
RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})
CREDENTIALS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class ConfigError(ValueError):
    """A configuration a user wrote is not valid; the message says what and where."""


class DurableSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A durable function's settings (DurableConfig in templates and the Lambda API)."""

    execution_timeout: int = 86400  # seconds an execution may run, waits included (Lambda: 1 s to 1 year)
    retention_days: int = 14  # days an ended execution's history is kept (Lambda: 1-90)

    def problem(self) -> str | None:
        if not 1 <= self.execution_timeout <= 31_622_400:
            return f"execution_timeout {self.execution_timeout} s is outside Lambda's 1-31622400 s"
        if not 1 <= self.retention_days <= 90:
            return f"retention_days {self.retention_days} is outside Lambda's 1-90 days"
        return None


class FunctionConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    handler: str = "app.handler"
    code: str = "."
    runtime: list[str] = msgspec.field(default_factory=list)
    timeout: float = 3.0
    memory: int = 128
    concurrency: int = 10
    idle_timeout: float = 300.0
    init_timeout: float = 10.0
    env: dict[str, str] = msgspec.field(default_factory=dict)
    version: str = "$LATEST"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    isolation: Isolation | None = None  # None: standard where the host permits it, else none
    ephemeral_storage: int = DEFAULT_EPHEMERAL_MB
    cpu_model: CpuModel = CpuModel.HOST
    snapstart: bool = False
    snapstart_rotate: int | None = None  # build a new SnapStart template after this many restores
    provisioned: int = 0
    layers: list[str] = msgspec.field(default_factory=list)  # directories shown at /opt, in Lambda's order
    user: str | None = None  # the runtime's user (sandbox/runtime_user.py); None: lambdalet's own
    # Lambda's own function settings, as a template (or this file) gives them.
    runtime_id: str | None = None  # Lambda's runtime identifier: python3.12, nodejs20.x, provided.al2023
    interpreters: dict[str, str] = msgspec.field(default_factory=dict)  # "3.12" -> a Python 3.12 (--python-path)
    allow_other_python: bool = False  # a missing Python version runs on lambdalet's own, with a warning
    sdk: str = "bundled"  # bundled | none | a directory holding the SDK (sandbox/managed.py)
    architectures: list[str] = msgspec.field(default_factory=lambda: ["x86_64"])  # x86_64 | arm64
    aliases: list[str] = msgspec.field(default_factory=list)  # other names it answers to (a FunctionName)
    # Lambda's name for it, as a template's FunctionName gives it (its ARN, AWS_LAMBDA_FUNCTION_NAME,
    # its log group); None: `name`. The function answers to it too.
    function_name: str | None = None
    package_type: str = "Zip"  # Zip | Image (an image is run by its own lambdalet-rie, not served here)
    tenancy: str | None = None  # PER_TENANT: every invocation names its tenant
    log_format: str | None = None  # Text | JSON (AWS_LAMBDA_LOG_FORMAT)
    application_log_level: str | None = None  # AWS_LAMBDA_LOG_LEVEL under JSON
    system_log_level: str | None = None  # the platform's own lines under JSON
    source: str | None = None  # where it was declared ("template.yaml:12"), for messages
    debug_port: int | None = None  # Python: the runtime waits for a debugger (debugpy) here; no deadlines
    # Asynchronous invocation: retries, maximum age, destinations; the dead-letter queue.
    event_invoke_config: EventInvokeConfig | None = None
    dead_letter_config: DeadLetterConfig | None = None
    url: FunctionUrl | None = None  # its Function URL (FunctionUrlConfig), if it has one
    durable: DurableSettings | None = None  # a durable function (runtime_api/durable/)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64 or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(f"function name {self.name!r}: 1-64 letters, digits, '-' or '_'")
        if not 1 <= self.timeout <= 900:
            raise ConfigError(f"function {self.name}: timeout {self.timeout} s is outside Lambda's 1-900 s")
        if not 128 <= self.memory <= 10240:
            raise ConfigError(f"function {self.name}: memory {self.memory} MB is outside Lambda's 128-10240 MB")
        if self.concurrency < 1:
            raise ConfigError(f"function {self.name}: concurrency must be at least 1")
        if not 0 <= self.provisioned <= self.concurrency:
            raise ConfigError(f"function {self.name}: provisioned {self.provisioned} must be between 0 and "
                              f"the concurrency, {self.concurrency}")
        if isinstance(self.isolation, str):
            try:
                self.isolation = Isolation(self.isolation)
            except ValueError:
                raise ConfigError(f"function {self.name}: isolation {self.isolation!r} is not one of "
                                  "none, standard, strict") from None
        if isinstance(self.cpu_model, str):
            try:
                self.cpu_model = CpuModel(self.cpu_model)
            except ValueError:
                raise ConfigError(f"function {self.name}: cpu_model {self.cpu_model!r} is not one of "
                                  "host, lambda") from None
        low, high = EPHEMERAL_RANGE
        if not low <= self.ephemeral_storage <= high:
            raise ConfigError(f"function {self.name}: ephemeral storage {self.ephemeral_storage} MB is outside "
                              f"Lambda's {low}-{high} MB")
        for key in self.env:
            if key in RESERVED_ENV:
                raise ConfigError(f"function {self.name}: {key} is a reserved environment variable")
        if len(self.layers) > opt.MAX_LAYERS:
            raise ConfigError(f"function {self.name}: {len(self.layers)} layers; Lambda allows at most "
                              f"{opt.MAX_LAYERS} per function")
        if self.debug_port is not None and not 1 <= self.debug_port <= 65535:
            raise ConfigError(f"function {self.name}: debug port {self.debug_port} is not a TCP port (1-65535)")
        if self.event_invoke_config is not None:
            try:
                check_ranges(self.event_invoke_config)
            except ServiceError as exc:
                raise ConfigError(f"function {self.name}: event_invoke_config: {exc.message}") from None
        if self.durable is not None and (problem := self.durable.problem()) is not None:
            raise ConfigError(f"function {self.name}: durable: {problem}")
        if self.runtime_id is not None:
            try:
                lookup(self.runtime_id, self.name)
            except UnknownRuntime as exc:
                raise ConfigError(str(exc)) from None
        for version in self.interpreters:
            if not version.startswith("3.") or not version[2:].isdigit():
                raise ConfigError(f"function {self.name}: interpreters: {version!r} is not a Python version "
                                  "like 3.12")
        if self.user is not None:
            try:
                runtime_user.parse(self.user)
            except ValueError as exc:
                raise ConfigError(f"function {self.name}: {exc}") from None
        for setting, value, allowed in (
            ("architectures", tuple(self.architectures), (("x86_64",), ("arm64",))),
            ("package_type", self.package_type, ("Zip", "Image")),
            ("tenancy", self.tenancy, (None, "PER_TENANT")),
            ("log_format", self.log_format, (None, "Text", "JSON")),
            ("application_log_level", self.application_log_level,
             (None, "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")),
            ("system_log_level", self.system_log_level, (None, "DEBUG", "INFO", "WARN")),
        ):
            if value not in allowed:
                choices = ", ".join(str(list(a)) if isinstance(a, tuple) else str(a) for a in allowed)
                raise ConfigError(f"function {self.name}: {setting} {value!r} is not one of {choices}")

    def check_layers(self) -> None:
        """ConfigError unless every layer is a directory (once paths are resolved: the config
        file's directory, or the current one, is not known when the Struct is made)."""
        problem = opt.problem([str(Path(layer).resolve()) for layer in self.layers])
        if problem is not None:
            raise ConfigError(f"function {self.name}: {problem}")

    def check_user(self) -> None:
        """ConfigError where lambdalet cannot switch to the runtime's user (checked before the
        server starts, so `lambdalet serve` can say it plainly)."""
        user = self.run_as
        if user is None:
            return
        if os.geteuid() != 0 and user.uid != os.geteuid():
            raise ConfigError(f"function {self.name}: running the runtime as user {self.user} needs lambdalet "
                              "to run as root")
        if runtime_user.setpriv() is None:
            raise ConfigError(f"function {self.name}: running the runtime as user {self.user} needs "
                              "util-linux's setpriv")

    @property
    def run_as(self) -> runtime_user.RuntimeUser | None:
        return runtime_user.parse(self.user) if self.user is not None else None

    @property
    def arn(self) -> str:
        return function_arn(self.lambda_name, self.region, self.account_id)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: its own, Lambda's, and its other names."""
        return tuple(dict.fromkeys((self.name, self.lambda_name, *self.aliases)))

    @property
    def lambda_name(self) -> str:
        """The name the function has on Lambda: its FunctionName where it has one."""
        return self.function_name or self.name

    @property
    def lambda_runtime(self) -> Runtime | None:
        """The Lambda runtime the function names, if any (validated when the config is made)."""
        return lookup(self.runtime_id, self.name) if self.runtime_id is not None else None

    def managed_runtime(self) -> ManagedRuntime | None:
        """The function's managed runtime, found and made ready on this host (its interpreter, its
        runtime client, its bundled SDK, installed once): `runtime_id`, or the Python runtime of
        lambdalet's own version. None for a runtime command of the function's own (`runtime`).
        ConfigError when it cannot be had here, saying what is missing and how to get it."""
        if self.runtime:
            return None
        try:
            sdk = SdkChoice(self.sdk)
        except ValueError as exc:
            raise ConfigError(f"function {self.name}: {exc}") from None
        try:
            return prepare(self.runtime_id or default_runtime_id(), self.name, str(Path(self.code).resolve()),
                           tuple(str(Path(layer).resolve()) for layer in self.layers),
                           RuntimeOptions(dict(self.interpreters), self.allow_other_python, sdk))
        except RuntimeUnavailable as exc:
            raise ConfigError(str(exc)) from None


def function_arn(name: str, region: str = "us-east-1", account_id: str = "123456789012") -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    function: list[FunctionConfig] = msgspec.field(default_factory=list)
    api: list[Api] = msgspec.field(default_factory=list)  # API Gateway APIs in front of the functions
    front_door_port: int = 3000  # Function URLs and APIs by host name (and APIs on the plain address)
    jwks: dict[str, str] = msgspec.field(default_factory=dict)  # JWT authorizer name -> a local JWKS file
    # A template whose functions are served beside `function`, and what reading it takes.
    template: str | None = None
    parameter_overrides: dict[str, str] = msgspec.field(default_factory=dict)
    env_vars: str | None = None
    layer_map: dict[str, str] = msgspec.field(default_factory=dict)
    # Asynchronous invocation: where Event invocations are queued (a SQLite file under `state_dir`,
    # ":memory:" for nothing that outlives the server; None: the user's state directory for
    # `lambdalet serve`, memory for an embedded server), or a PostgreSQL `queue` shared by servers.
    state_dir: str | None = None
    queue: str | None = None
    async_time_scale: float = 1.0  # every delay and age of asynchronous invocation multiplied by this
    queue_lease: float = 10.0  # seconds a host holds an event it runs without renewing (shared queue)
    service_endpoints: dict[str, str] = msgspec.field(default_factory=dict)  # sqs|sns|events|s3 -> URL
    durable_time_scale: float = 1.0  # every durable wait, retry delay and timeout multiplied by this

    def __post_init__(self) -> None:
        if not self.durable_time_scale > 0:
            raise ConfigError(f"durable_time_scale {self.durable_time_scale}: it must be more than 0")
        if not self.async_time_scale > 0:
            raise ConfigError(f"async_time_scale {self.async_time_scale}: it must be more than 0")
        if not self.queue_lease > 0:
            raise ConfigError(f"queue_lease {self.queue_lease}: it must be more than 0 seconds")
        for service in self.service_endpoints:
            if service not in SERVICES:
                raise ConfigError(f"service endpoint {service}: lambdalet sends records to {', '.join(SERVICES)}")


def load_config(path: str | Path) -> ServerConfig:
    """Read a TOML config file; relative paths (`code`, `layers`, `sdk`, `interpreters`) are taken
    from the file's directory."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
        config = msgspec.convert(raw, ServerConfig)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    names = [f.name for f in config.function]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: function names must be unique")
    if config.template is not None:
        config.template = str((path.parent / config.template).resolve())
    if config.env_vars is not None:
        config.env_vars = str((path.parent / config.env_vars).resolve())
    config.layer_map = {arn: str((path.parent / layer).resolve()) for arn, layer in config.layer_map.items()}
    if config.state_dir is not None and config.state_dir != ":memory:":
        config.state_dir = str((path.parent / Path(config.state_dir).expanduser()).resolve())
    config.jwks = {name: str((path.parent / keys).resolve()) for name, keys in config.jwks.items()}
    config.api = with_jwks(config.api, {authorizer.name: str((path.parent / authorizer.jwks).resolve())
                                        for api in config.api for authorizer in api.authorizers
                                        if isinstance(authorizer, JwtAuthorizer) and authorizer.jwks})
    for function in config.function:
        function.code = str((path.parent / function.code).resolve())
        function.layers = [str((path.parent / layer).resolve()) for layer in function.layers]
        if function.sdk not in ("bundled", "none"):
            function.sdk = str((path.parent / function.sdk).resolve())
        function.interpreters = {version: str(path.parent / python) for version, python in function.interpreters.items()}
        function.event_invoke_config, function.dead_letter_config = rebase(
            function.event_invoke_config, function.dead_letter_config, path.parent)
        try:
            function.check_layers()
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config


_DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w", "central": "c", "northeast": "ne",
               "northwest": "nw", "southeast": "se", "southwest": "sw"}


def availability_zone_id(region: str) -> str:
    """The first zone's ID as AWS spells it: us-east-1 -> use1-az1, ap-northeast-1 -> apne1-az1."""
    parts = region.split("-")
    if len(parts) != 3:
        return f"{region}-az1"
    return f"{parts[0]}{_DIRECTIONS.get(parts[1], parts[1][:1])}{parts[2]}-az1"


def log_stream_name(version: str) -> str:
    """A new environment's log stream, as Lambda names them: YYYY/MM/DD/[version]<32 hex>."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{secrets.token_hex(16)}"


def runtime_environment(
    function: FunctionConfig,
    runtime_api: str,
    *,
    initialization_type: str = "on-demand",
    metadata_token: str = "",
    host_env: dict[str, str] | None = None,
    layers_at_opt: bool = True,
    managed: ManagedRuntime | None = None,
) -> dict[str, str]:
    """The environment variables of a runtime process, as Lambda sets them (the AWS Lambda
    Developer Guide, "Defined runtime environment variables"), with host paths: at `standard` and
    `strict` the runtime sees them at /var/task, /var/lang, /var/runtime and /opt
    (sandbox.isolation.PrivateFilesystem.present).

    A `managed` runtime gets Lambda's: PATH `/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin`,
    LD_LIBRARY_PATH `/var/lang/lib:/lib64:/usr/lib64:$LAMBDA_RUNTIME_DIR:$LAMBDA_RUNTIME_DIR/lib:
    $LAMBDA_TASK_ROOT:$LAMBDA_TASK_ROOT/lib:/opt/lib`, AWS_EXECUTION_ENV `AWS_Lambda_<runtime>` (not
    for the OS-only provided.*), NODE_PATH `/opt/nodejs/node<major>/node_modules:/opt/nodejs/
    node_modules:$LAMBDA_RUNTIME_DIR/node_modules` for Node.js; Python's PYTHONPATH
    (`$LAMBDA_RUNTIME_DIR`) is set by its bootstrap, for the function's child processes, as
    Lambda's does. A runtime command of the function's own keeps the host's PATH and
    LD_LIBRARY_PATH (it may need them), /opt/bin and /opt/lib at their ends. Nothing else of the
    host's environment leaks in but the credentials.

    Without `layers_at_opt` (isolation none: no mount namespace to show them in) the layers' own
    bin, lib and python directories stand in for /opt's (sandbox.layers.search_paths), PYTHONPATH
    included; the function's own `env` still overrides any of them, as on Lambda.
    """
    host_env = os.environ if host_env is None else host_env
    task_root = str(Path(function.code).resolve())
    if managed is None and not function.runtime:  # a caller that did not prepare it (it is cached once made)
        managed = function.managed_runtime()
    runtime = managed.runtime if managed is not None else function.lambda_runtime
    python = runtime.python if runtime is not None and runtime.family is Family.PYTHON else None
    found = {"PATH": ["/opt/bin"], "LD_LIBRARY_PATH": ["/opt/lib"], "PYTHONPATH": []}
    if function.layers and not layers_at_opt:
        found = opt.search_paths(tuple(str(Path(layer).resolve()) for layer in function.layers), python)
    if managed is not None:
        runtime_dir = managed.runtime_dir
        path = [managed.bin_dir, "/usr/local/bin", "/usr/bin/", "/bin"]
        libraries = [managed.lib_dir, "/lib64", "/usr/lib64", runtime_dir, f"{runtime_dir}/lib"]
    else:
        runtime_dir = str(Path(function.runtime[0]).resolve().parent)
        path = [host_env.get("PATH", "/usr/local/bin:/usr/bin:/bin")]
        libraries = [host_env.get("LD_LIBRARY_PATH")]
    env = {
        "LANG": "en_US.UTF-8",
        "PATH": ":".join(filter(None, [*path, *found["PATH"]])),
        "LD_LIBRARY_PATH": ":".join(filter(None, [*libraries, task_root, f"{task_root}/lib",
                                                  *found["LD_LIBRARY_PATH"]])),
        "TZ": ":UTC",
    }
    if runtime is not None and runtime.family is Family.NODEJS:
        env["NODE_PATH"] = (f"/opt/nodejs/node{runtime.version[0]}/node_modules:/opt/nodejs/node_modules:"
                            f"{runtime_dir}/node_modules")
    if found["PYTHONPATH"]:
        env["PYTHONPATH"] = ":".join(found["PYTHONPATH"])
    env.update(function.env)
    env.update({
        "_HANDLER": function.handler,
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_LAMBDA_FUNCTION_NAME": function.lambda_name,
        "AWS_LAMBDA_FUNCTION_VERSION": function.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.lambda_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(function.version),
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_METADATA_API": runtime_api,
        "AWS_LAMBDA_METADATA_TOKEN": metadata_token,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": runtime_dir,
    })
    if function.log_format is not None:
        # Lambda's advanced logging controls reach the runtime as these two (the application log level
        # only with JSON, INFO unless set; awslambdaric and lambdalet's bootstrap read them).
        env["AWS_LAMBDA_LOG_FORMAT"] = function.log_format
        if function.log_format == "JSON":
            env["AWS_LAMBDA_LOG_LEVEL"] = function.application_log_level or "INFO"
    if runtime is not None and runtime.execution_env is not None:
        env["AWS_EXECUTION_ENV"] = runtime.execution_env
    for key in CREDENTIALS_ENV:
        if host_env.get(key):
            env[key] = host_env[key]
    return env


def snapstart_configuration(function: FunctionConfig) -> bytes:
    """What of the function's configuration a SnapStart template was made with (the snapshot of a
    published version covers its configuration too): a change makes a new template."""
    return msgspec.json.encode({
        "handler": function.handler, "runtime": function.runtime or function.runtime_id, "sdk": function.sdk,
        "memory": function.memory,
        "timeout": function.timeout, "env": dict(sorted(function.env.items())), "layers": function.layers,
        "user": function.user,
    })
