"""An `AWS::Lambda::Function` of a CloudFormation template (SAM's, after the transform, or `cdk
synth`'s) as a `FunctionConfig`: its code as a directory, Handler, Runtime, sizing, environment,
layers, concurrency, SnapStart, tenancy, logging and other names.

Every value is evaluated as CloudFormation evaluates it (intrinsics.py); numbers may come as
strings (a `Number` parameter's `Ref`), environment values become strings as CloudFormation makes
them. What cannot be had offline raises `Unresolved`, and the function is not configured; what
lambdalet reads but cannot honour is a warning and the function is configured without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..asynchronous.invoke_config import DeadLetterConfig, EventInvokeConfig, rebase
from ..config import ConfigError, DurableSettings, FunctionConfig
from . import code
from .document import Mapping, line_of
from .errors import Unresolved
from .intrinsics import NO_VALUE, Evaluator, intrinsic
from .parameters import scalar_text
from .resources import physical_name
from .sam import LOCAL_BUCKET

# Lambda's runtime identifiers (the Runtime enumeration of the Lambda API reference), deprecated
# ones included: a template may still name them, and Lambda still knows them.
RUNTIMES = frozenset({
    "nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x",
    "nodejs16.x", "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x",
    "python2.7", "python3.6", "python3.7", "python3.8", "python3.9", "python3.10", "python3.11", "python3.12",
    "python3.13", "python3.14",
    "java8", "java8.al2", "java11", "java17", "java21", "java25",
    "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet8", "dotnet10",
    "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3", "ruby3.4", "ruby4.0",
    "provided", "provided.al2", "provided.al2023",
})
# Properties lambdalet reads, or knows need nothing here (a role, tags, tracing, networking, keys).
_KNOWN = frozenset({
    "Architectures", "Code", "CodeSigningConfigArn", "DeadLetterConfig", "Description", "DurableConfig", "Environment", "EphemeralStorage",
    "FunctionName", "Handler", "ImageConfig", "KmsKeyArn", "Layers", "LoggingConfig", "MemorySize", "PackageType",
    "RecursiveLoop", "ReservedConcurrentExecutions", "Role", "Runtime", "RuntimeManagementConfig", "SnapStart",
    "Tags", "TenancyConfig", "Timeout", "TracingConfig", "VpcConfig",
})
# Properties that change what a function does, which lambdalet does not do: said, then ignored.
_NOT_HONOURED = {
    "FileSystemConfigs": "EFS file systems are not mounted here",
    "CapacityProviderConfig": "Lambda Managed Instances are not emulated: each environment takes one invocation "
                              "at a time",
}


@dataclass
class Context:
    """What reading a function needs beyond its own resource."""

    evaluator: Evaluator
    base: Path  # the template's directory, which relative paths are relative to
    env_overrides: dict[str, str]  # --env-vars values for this function
    layer_dir: object  # (arn, line) -> Path | None: a layer's directory, or None when not known here
    provisioned: int = 0  # from the function's aliases and versions
    event_invoke: EventInvokeConfig | None = None  # from its AWS::Lambda::EventInvokeConfig
    assets: dict[str, str] = field(default_factory=dict)  # a cdk.out asset manifest: S3 key -> path
    watched: list[str] = field(default_factory=list)  # where the code and layers come from
    warnings: list[tuple[str, int | None]] = field(default_factory=list)


def read(logical_id: str, resource: Mapping, context: Context, source: str) -> FunctionConfig:
    """The function `logical_id`; Unresolved if it cannot be configured offline."""
    evaluator = context.evaluator
    properties = resource.get("Properties") or Mapping()
    line = line_of(resource)
    if not isinstance(properties, dict):
        raise Unresolved("Properties must be a mapping", line)

    def get(key: str, default: object = None) -> object:
        if key not in properties:
            return default
        value = evaluator.value(properties[key], line_of(properties, key, line))
        return default if value is NO_VALUE else value

    def at(key: str) -> int | None:
        return line_of(properties, key, line)

    for key in properties:
        if key in _NOT_HONOURED:
            context.warnings.append((f"{key} is ignored: {_NOT_HONOURED[key]}", at(key)))
        elif key not in _KNOWN:
            context.warnings.append((f"{key} is not a property of AWS::Lambda::Function that lambdalet knows; "
                                     "ignored", at(key)))

    package_type = _text(get("PackageType", "Zip"), "PackageType", at("PackageType"))
    runtime_id = get("Runtime")
    if runtime_id is not None:
        runtime_id = _text(runtime_id, "Runtime", at("Runtime"))
        if runtime_id not in RUNTIMES:
            raise Unresolved(f"Runtime {runtime_id!r} is not one of Lambda's runtime identifiers", at("Runtime"))
    handler = get("Handler")
    if package_type == "Zip":
        if runtime_id is None or handler is None:
            raise Unresolved("a .zip function needs a Runtime and a Handler", line)
        handler = _text(handler, "Handler", at("Handler"))
        task_root = _code(resource, properties, runtime_id, context, at("Code"))
    else:
        handler = _text(handler, "Handler", at("Handler")) if handler is not None else "app.handler"
        task_root = context.base
    layers = _layers(_list(get("Layers", []), "Layers", at("Layers")), properties.get("Layers"), context,
                     at("Layers"))
    if package_type == "Zip":
        missing = code.missing_handler(handler, runtime_id, task_root, layers)
        if missing:
            context.warnings.append((missing, at("Handler")))

    environment = _evaluated_if_computed(evaluator, properties.get("Environment"), at("Environment"))
    if environment is not None and not isinstance(environment, dict):
        raise Unresolved("Environment must be a mapping", at("Environment"))
    variables_line = line_of(environment, "Variables", at("Environment"))
    variables = environment.get("Variables") if isinstance(environment, dict) else None
    env = _environment(_evaluated_if_computed(evaluator, variables, variables_line), context, variables_line)

    name = physical_name(evaluator, logical_id)
    logging = _mapping(get("LoggingConfig", {}), "LoggingConfig", at("LoggingConfig"))
    settings = dict(
        name=logical_id,
        handler=handler,
        code=str(task_root),
        timeout=float(_integer(get("Timeout", 3), "Timeout", at("Timeout"))),
        memory=_integer(get("MemorySize", 128), "MemorySize", at("MemorySize")),
        env=env,
        layers=[str(layer) for layer in layers],
        provisioned=context.provisioned,
        snapstart=_mapping(get("SnapStart", {}), "SnapStart", at("SnapStart")).get("ApplyOn") == "PublishedVersions",
        ephemeral_storage=_integer(_mapping(get("EphemeralStorage", {}), "EphemeralStorage", at("EphemeralStorage"))
                                   .get("Size", 512), "EphemeralStorage.Size", at("EphemeralStorage")),
        runtime_id=runtime_id,
        architectures=_list(get("Architectures", ["x86_64"]), "Architectures", at("Architectures")),
        aliases=[name] if name != logical_id else [],
        function_name=name if name != logical_id else None,
        package_type=package_type,
        tenancy=_mapping(get("TenancyConfig", {}), "TenancyConfig", at("TenancyConfig")).get("TenantIsolationMode"),
        log_format=logging.get("LogFormat"),
        application_log_level=logging.get("ApplicationLogLevel"),
        system_log_level=logging.get("SystemLogLevel"),
        source=source,
        region=evaluator.pseudo["AWS::Region"],
        account_id=evaluator.pseudo["AWS::AccountId"],
    )
    dead_letter = _mapping(get("DeadLetterConfig", {}), "DeadLetterConfig", at("DeadLetterConfig")).get("TargetArn")
    settings["event_invoke_config"], settings["dead_letter_config"] = rebase(
        context.event_invoke, DeadLetterConfig(_text(dead_letter, "DeadLetterConfig.TargetArn", at("DeadLetterConfig")))
        if dead_letter else None, context.base)
    durable = get("DurableConfig")
    if durable is not None:
        written = _mapping(durable, "DurableConfig", at("DurableConfig"))
        settings["durable"] = DurableSettings(
            execution_timeout=_integer(written.get("ExecutionTimeout", 86400), "DurableConfig.ExecutionTimeout",
                                       at("DurableConfig")),
            retention_days=_integer(written.get("RetentionPeriodInDays", 14), "DurableConfig.RetentionPeriodInDays",
                                    at("DurableConfig")))
    reserved = get("ReservedConcurrentExecutions")
    if reserved is not None:
        settings["concurrency"] = _integer(reserved, "ReservedConcurrentExecutions", at("ReservedConcurrentExecutions"))
        if settings["concurrency"] == 0:
            raise Unresolved("ReservedConcurrentExecutions 0: Lambda throttles every invocation of it",
                             at("ReservedConcurrentExecutions"))
    elif context.provisioned:
        # Without a reservation a function may use the account's unreserved concurrency, which holds
        # its provisioned environments however many there are.
        default = next(field.default for field in msgspec.structs.fields(FunctionConfig) if field.name == "concurrency")
        settings["concurrency"] = max(default, context.provisioned)
    try:
        return FunctionConfig(**settings)
    except ConfigError as exc:
        raise Unresolved(str(exc).removeprefix(f"function {logical_id}: "), line) from None


def _code(resource: Mapping, properties: Mapping, runtime_id: str, context: Context, line: int | None) -> Path:
    """The function's code as a directory (its task root)."""
    zipped = properties.get("Code")
    if isinstance(zipped, dict) and "ZipFile" in zipped:
        at = line_of(zipped, "ZipFile", line)
        return code.inline(context.evaluator.text(zipped["ZipFile"], at, "Code.ZipFile"), runtime_id, at)
    return source(context.evaluator, resource, "Code", context.base, context.assets, context.watched)


def source(evaluator: Evaluator, resource: Mapping, key: str, base: Path, assets: dict[str, str],
           watched: list[str]) -> Path:
    """A function's `Code` or a layer's `Content` as a local directory (noted in `watched`): a local
    path SAM's CodeUri or ContentUri gave, or the asset `cdk synth` staged beside the template."""
    metadata = resource.get("Metadata")
    properties = resource.get("Properties") or {}
    line = line_of(properties, key, line_of(resource))
    if isinstance(metadata, dict) and isinstance(metadata.get("aws:asset:path"), str) and \
            metadata.get("aws:asset:property", key) == key:
        asset = metadata["aws:asset:path"]
        return _local(base, asset, f"the CDK asset {asset}", watched, line_of(metadata))
    location = properties.get(key)
    if not isinstance(location, dict):
        raise Unresolved(f"it needs its {key}", line)
    bucket = evaluator.text(location.get("S3Bucket"), line_of(location, "S3Bucket", line), f"{key}.S3Bucket")
    object_key = evaluator.text(location.get("S3Key"), line_of(location, "S3Key", line), f"{key}.S3Key")
    if bucket == LOCAL_BUCKET and not object_key.startswith("s3://"):
        what = "CodeUri" if key == "Code" else "ContentUri"
        return _local(base, object_key, f"{what} {object_key}", watched, line)
    if object_key in assets:
        return _local(base, assets[object_key], f"the CDK asset {assets[object_key]}", watched, line)
    where = object_key if object_key.startswith("s3://") else f"s3://{bucket}/{object_key}"
    raise Unresolved(f"its {key} is in S3 ({where}), which is not available offline: give a local directory "
                     f"({'CodeUri' if key == 'Code' else 'ContentUri'})", line)


def _local(base: Path, written: str, what: str, watched: list[str], line: int | None) -> Path:
    path = Path(os.path.abspath(base / written))
    watched.append(str(path))
    return code.local(path, what, line)


def _layers(arns: list[str], written: object, context: Context, line: int | None) -> list[Path]:
    """The directories of the layers that have one here, in the template's order; a warning for each
    of the others (at its own line where the list is written out)."""
    lines = ([line_of(written, index, line) for index in range(len(arns))]
             if isinstance(written, list) and len(written) == len(arns) else [line] * len(arns))
    found = []
    for arn, at in zip(arns, lines):
        directory = context.layer_dir(arn, at)
        if directory is None:
            context.warnings.append((f"layer {arn} is not available offline: the function runs without it (give "
                                     "its directory with --layer-map ARN=DIR)", at))
        else:
            found.append(directory)
    return found


def _environment(variables: object, context: Context, line: int | None) -> dict[str, str]:
    """The function's variables, each a string; a variable --env-vars gives is not evaluated, so a
    value only AWS has (an imported export) can be given a local one."""
    if variables is None or variables is NO_VALUE:
        return {}
    if not isinstance(variables, dict):
        raise Unresolved("Environment.Variables must be a mapping", line)
    env = {}
    for key, item in variables.items():
        if key in context.env_overrides:
            env[key] = context.env_overrides[key]
            continue
        at = line_of(variables, key, line)
        try:
            item = context.evaluator.value(item, at)
        except Unresolved as exc:
            raise Unresolved(f"Environment.Variables.{key}: {exc.message} (or give it with --env-vars)",
                             exc.line) from None
        if item is NO_VALUE:
            continue
        if isinstance(item, (dict, list)):
            raise Unresolved(f"Environment.Variables.{key} must be a string, not a "
                             f"{'mapping' if isinstance(item, dict) else 'list'}", at)
        env[key] = scalar_text(item)
    return env


def _evaluated_if_computed(evaluator: Evaluator, node: object, line: int | None) -> object:
    """A mapping whose whole value is computed (`Environment: !If [...]`) is evaluated; a written one
    is left for its items to be evaluated one by one."""
    return evaluator.value(node, line) if intrinsic(node) else node


def _text(value: object, what: str, line: int | None) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise Unresolved(f"{what} must be a string", line)
    return scalar_text(value)


def _integer(value: object, what: str, line: int | None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise Unresolved(f"{what} must be a whole number, not {value!r}", line)


def _list(value: object, what: str, line: int | None) -> list[str]:
    if not isinstance(value, list) or any(isinstance(item, (dict, list)) for item in value):
        raise Unresolved(f"{what} must be a list of strings", line)
    return [scalar_text(item) for item in value]


def _mapping(value: object, what: str, line: int | None) -> dict:
    if not isinstance(value, dict):
        raise Unresolved(f"{what} must be a mapping", line)
    return value
