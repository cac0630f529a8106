"""The real programs our behaviour is compared against, fetched from the package registries once and
cached between runs: AWS's Runtime Interface Emulator (inside the aws-sam-cli wheel on PyPI) and the
Node.js runtime interface client (npm `aws-lambda-ric`, which compiles a native addon for ~90 s; the
nodejs runtimes use the same copy: sandbox/runtime_cache.py).

In lambdalet's cache (sandbox/runtime_cache.py): set LAMBDALET_CACHE to move it (default:
~/.cache/lambdalet).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from sandbox.runtime_cache import cache_dir, locked, node_runtime_client

SAM_CLI_VERSION = "1.170.0"
RIE_MEMBER = "samcli/local/rapid/aws-lambda-rie-x86_64"
RIE_ARCHES = ("x86_64", "arm64")

def rie_binary(arch: str = "x86_64") -> Path:
    """Path of the real `aws-lambda-rie-<arch>` (x86_64 or arm64), extracted from the aws-sam-cli wheel.

    One download extracts every architecture's RIE that is not cached yet (the wheel itself is not kept).
    """
    if arch not in RIE_ARCHES:
        raise ValueError(f"no RIE for {arch!r}; the wheel has {', '.join(RIE_ARCHES)}")
    target = _rie_path(arch)
    if target.exists():
        return target
    with locked("rie"):
        if target.exists():
            return target
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 f"aws-sam-cli=={SAM_CLI_VERSION}", "-d", tmp],
                check=True,
            )
            (wheel,) = Path(tmp).glob("aws_sam_cli-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                for each in RIE_ARCHES:
                    if _rie_path(each).exists():
                        continue
                    with zf.open(f"samcli/local/rapid/aws-lambda-rie-{each}") as src:
                        partial = _rie_path(each).with_suffix(".part")
                        with open(partial, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        partial.chmod(0o755)
                        partial.rename(_rie_path(each))
    return target


def _rie_path(arch: str) -> Path:
    return cache_dir() / f"aws-lambda-rie-{SAM_CLI_VERSION}-{arch}"


OTEL_EXTENSION = "@serverless/aws-lambda-otel-extension-dist"
OTEL_EXTENSION_VERSION = "0.1.11"


def otel_extension_layer() -> Path:
    """A real third-party Lambda extension as its publisher ships it through npm: Serverless Inc.'s
    OpenTelemetry extension (`@serverless/aws-lambda-otel-extension-dist`), whose package holds the
    layer's zip (`extensions/otel-extension`, a Node.js program that registers, subscribes to the
    Logs API at http://sandbox:4243 and takes INVOKE and SHUTDOWN). Unpacked once, as Lambda
    extracts a layer (modes kept), and cached."""
    def make(partial: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "--silent", f"{OTEL_EXTENSION}@{OTEL_EXTENSION_VERSION}"], cwd=tmp,
                           check=True, stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tarball) as archive:
                archive.extractall(tmp, filter="data")
            with zipfile.ZipFile(Path(tmp) / "package" / "extension.zip") as layer:
                for member in layer.infolist():
                    path = Path(layer.extract(member, partial))
                    mode = member.external_attr >> 16 & 0o777
                    if mode:
                        path.chmod(mode)

    return _made_once(cache_dir() / f"serverless-otel-extension-{OTEL_EXTENSION_VERSION}", "otel-extension", make)


DURABLE_JS = "@aws/durable-execution-sdk-js"
DURABLE_JS_VERSION = "2.4.0"


def durable_js_sdk() -> Path:
    """A directory holding node_modules/@aws/durable-execution-sdk-js (AWS's durable execution SDK
    for JavaScript, with the AWS SDK's Lambda client it calls), installed once from npm and cached."""
    def make(partial: Path) -> None:
        # Its package asks for Node.js 22; the machine's may be older, and the SDK runs on it.
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--engine-strict=false",
                        f"{DURABLE_JS}@{DURABLE_JS_VERSION}"], cwd=partial, check=True, stdout=subprocess.DEVNULL)

    return _made_once(cache_dir() / f"durable-execution-sdk-js-{DURABLE_JS_VERSION}", "durable-js", make)


def _made_once(target: Path, lock: str, make) -> Path:
    """`target`, made by `make(partial directory)` the first time (one process at a time) and cached."""
    if target.exists():
        return target
    with locked(lock):
        if target.exists():
            return target
        partial = target.with_suffix(".part")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        make(partial)
        partial.rename(target)
    return target
    with locked("durable-js"):
        if target.exists():
            return target
        partial = target.with_suffix(".part")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        # Its package asks for Node.js 22; the machine's may be older, and the SDK runs on it.
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--engine-strict=false",
                        f"{DURABLE_JS}@{DURABLE_JS_VERSION}"], cwd=partial, check=True, stdout=subprocess.DEVNULL)
        partial.rename(target)
    return target


def node_ric() -> Path:
    """Directory holding node_modules/aws-lambda-ric (built once, then reused)."""
    return node_runtime_client()
