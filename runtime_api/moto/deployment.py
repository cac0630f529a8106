"""A moto Lambda function as lambdalet serves it: the `FunctionConfig` of its deployment as moto
holds it now (code and layers as moto's zip bytes, handler, runtime, environment, timeout, memory,
SnapStart), and the environment that points its AWS SDK at moto.

Read again at every invocation, so `update_function_code` and `update_function_configuration` take
effect on the next one: a changed package is a new cache directory, so a new configuration, which
the server replaces (`Server.apply`); an unchanged one keeps its warm environments.
"""

from __future__ import annotations

import base64
import binascii
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.runtimes import UnknownRuntime, lookup

from ..config import FunctionConfig
from ..template import code

# What the function's AWS SDK is given, as moto's documentation has tests use: any key works, and
# a key moto's IAM does not know is the default account's.
SDK_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class NotDeployable(ValueError):
    """The function's package cannot be run (a zip that is not one); the message says why."""


@dataclass(frozen=True)
class Options:
    """What `install()` was given, for every function it serves."""

    snapstart: bool = False  # every function restored from a SnapStart template, configured or not
    allow_other_python: bool = True  # python3.9 in an old test runs on this Python, with a warning
    isolation: str | None = None  # None: standard where the host permits it (runtime_api/config.py)
    idle_timeout: float = 300.0


def served_by_lambdalet(function) -> bool:
    """Whether lambdalet runs this function; moto's own path keeps container images and runtimes
    lambdalet has no runtime for (Java, .NET, Ruby), which need moto's Docker."""
    if function.package_type == "Image" or not function.run_time:
        return False
    try:
        lookup(function.run_time, function.function_name)
    except UnknownRuntime:
        return False
    return True


def service_environment(endpoint: str) -> dict[str, str]:
    """The variables that send the function's SDK calls to moto at `endpoint`: the SDKs' own
    AWS_ENDPOINT_URL, the credentials, and moto's own names its Docker path sets (MOTO_HOST,
    MOTO_PORT, MOTO_HTTP_ENDPOINT), which functions written for moto read."""
    host, _, port = endpoint.rpartition(":")
    return {"AWS_ENDPOINT_URL": endpoint, **SDK_CREDENTIALS,
            "MOTO_HOST": host, "MOTO_PORT": port, "MOTO_HTTP_ENDPOINT": endpoint}


def function_config(function, layers: list, endpoint: str, options: Options) -> FunctionConfig:
    """The FunctionConfig of moto's `function` (a LambdaFunction) with its `layers` (moto's
    LayerVersions, in the function's order). Raises NotDeployable, or ConfigError for settings
    Lambda would refuse."""
    version = str(function.version)
    return FunctionConfig(
        name=function.function_name,
        handler=function.handler or "",
        code=str(_package(function.code_bytes, function.code_sha_256, f"function {function.function_name}")),
        runtime_id=function.run_time,
        timeout=float(function.timeout),
        memory=int(function.memory_size),
        env={**service_environment(endpoint), **{key: str(value) for key, value in function.environment_vars.items()}},
        version=version,
        region=function.region,
        account_id=function.account_id,
        isolation=options.isolation,
        ephemeral_storage=int(function.ephemeral_storage),
        snapstart=options.snapstart or snapstart_configured(function),
        layers=[str(_package(layer.code_bytes, layer.code_sha_256, f"layer {layer.arn}")) for layer in layers],
        architectures=list(function.architectures),
        allow_other_python=options.allow_other_python,
        idle_timeout=options.idle_timeout,
    )


def snapstart_configured(function) -> bool:
    """SnapStart as create_function or update_function_configuration gave it (moto does not keep
    it; `install()` records it on the function). Lambda restores published versions only; like
    `lambdalet serve` with a template, lambdalet restores every invocation of such a function."""
    setting = getattr(function, "lambdalet_snapstart", None) or {}
    return setting.get("ApplyOn") == "PublishedVersions"


def _package(data: bytes, sha256: str, what: str) -> Path:
    """moto's zip bytes as a directory, extracted once per CodeSha256 (which moto computed: the
    base64 of the SHA-256 the cache is keyed by)."""
    if not data:
        raise NotDeployable(f"{what}: moto holds no code for it (an S3 object it could not read?)")
    try:
        digest = base64.b64decode(sha256, validate=True).hex()
    except (binascii.Error, TypeError):
        raise NotDeployable(f"{what}: CodeSha256 {sha256!r} is not base64") from None
    try:
        return code.unpacked(data, digest)
    except zipfile.BadZipFile as exc:
        raise NotDeployable(f"{what}: its package is not a zip file ({exc})") from None
