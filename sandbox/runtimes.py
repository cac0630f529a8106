"""Lambda's runtimes, by their identifiers: what each one is made of and where it runs.

One table, `RUNTIMES`, read on 2026-12-06 from the AWS Lambda Developer Guide:

* "Lambda runtimes" (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html): the identifiers and
  the operating system of each (Amazon Linux 2 for python3.9-3.11 and nodejs18.x; Amazon Linux 2023
  for python3.12 and later, nodejs20.x and later, provided.al2023), the OS-only runtimes
  `provided.al2` and `provided.al2023`;
* "Building Lambda functions with Python", section "Runtime-included SDK versions": it names no
  versions any more (they "depend on the runtime version and your AWS Region"; it shows a handler
  that prints `boto3.__version__`). The pins below are the versions the python3.12 and python3.13
  runtimes reported when last published (boto3 and botocore 1.38.36, boto/boto3 and
  terricain/aioboto3#381, August 2025); AWS updates the SDK of every Python runtime together, so all
  share them. boto3's own dependencies (s3transfer, jmespath, python-dateutil, urllib3, six) are
  what pip resolves for those two pins on each Python version.
* "Lambda SnapStart runtime hooks for Python": the Snapshot Restore for Python library
  (snapshot-restore-py, 1.0.0 on PyPI) "is included in Python managed runtimes";
* "Deploy Python Lambda functions with container images", on where the runtime-included libraries
  live: for Python 3.11 and later in /var/lang/lib/python3.X/site-packages, ahead of /var/runtime on
  sys.path; for 3.8-3.10 in /var/runtime, ahead of site-packages.

The glibc of each operating system: Amazon Linux 2 has 2.26, Amazon Linux 2023 has 2.34 (with GCC
11's libstdc++; AL2 has GCC 7's). Java, .NET and Ruby runtimes are Lambda's too, but nothing here can run them
(`NotRunnable` says so, naming the function).

Pure data: nothing here looks at the host (sandbox/interpreters.py finds the interpreters,
sandbox/runtime_cache.py the runtime clients and the SDK).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Family(enum.Enum):
    PYTHON = "python"
    NODEJS = "nodejs"
    PROVIDED = "provided"  # OS-only: the function's own `bootstrap`


@dataclass(frozen=True, slots=True)
class OperatingSystem:
    name: str
    glibc: tuple[int, int]
    glibcxx: tuple[int, int, int]  # the libstdc++ symbol version it provides
    cxxabi: tuple[int, int, int]


AMAZON_LINUX_2 = OperatingSystem("Amazon Linux 2", (2, 26), (3, 4, 24), (1, 3, 11))  # GCC 7
AMAZON_LINUX_2023 = OperatingSystem("Amazon Linux 2023", (2, 34), (3, 4, 29), (1, 3, 13))  # GCC 11

# boto3 and botocore as the Python runtimes bundle them, and the other library they include (see
# the module's docstring).
PYTHON_SDK = (("boto3", "1.38.36"), ("botocore", "1.38.36"))
PYTHON_LIBRARIES = (("snapshot-restore-py", "1.0.0"),)


@dataclass(frozen=True, slots=True)
class Runtime:
    """One of Lambda's runtimes. `version` is the language's (3, 12) or Node.js's major (20,);
    empty for the OS-only runtimes."""

    id: str
    family: Family
    version: tuple[int, ...]
    os: OperatingSystem
    sdk: tuple[tuple[str, str], ...] = ()  # the AWS SDK it includes: (distribution, version)
    libraries: tuple[tuple[str, str], ...] = ()  # the other libraries it includes

    @property
    def execution_env(self) -> str | None:
        """AWS_EXECUTION_ENV: `AWS_Lambda_` and the identifier; not defined for OS-only runtimes."""
        return None if self.family is Family.PROVIDED else f"AWS_Lambda_{self.id}"

    @property
    def python(self) -> str:
        """`3.12` for a Python runtime."""
        return ".".join(map(str, self.version))

    @property
    def sdk_label(self) -> str:
        return label(self.sdk)


def label(pins: tuple[tuple[str, str], ...]) -> str:
    """`boto3 1.38.36, botocore 1.38.36`"""
    return ", ".join(f"{name} {version}" for name, version in pins)


def _python(minor: int) -> Runtime:
    system = AMAZON_LINUX_2 if minor <= 11 else AMAZON_LINUX_2023
    return Runtime(f"python3.{minor}", Family.PYTHON, (3, minor), system, PYTHON_SDK, PYTHON_LIBRARIES)


def _nodejs(major: int) -> Runtime:
    return Runtime(f"nodejs{major}.x", Family.NODEJS, (major,), AMAZON_LINUX_2 if major <= 18 else AMAZON_LINUX_2023)


RUNTIMES: dict[str, Runtime] = {
    runtime.id: runtime for runtime in (
        *(_python(minor) for minor in range(9, 15)),
        *(_nodejs(major) for major in (18, 20, 22, 24)),
        Runtime("provided.al2", Family.PROVIDED, (), AMAZON_LINUX_2),
        Runtime("provided.al2023", Family.PROVIDED, (), AMAZON_LINUX_2023),
    )
}

# Lambda's runtimes that nothing here can run: the identifier's start, and what it is.
NOT_RUNNABLE = (("java", "Java"), ("dotnet", ".NET"), ("ruby", "Ruby"))


class UnknownRuntime(ValueError):
    """An identifier lambdalet cannot run; the message says why and names the function."""


def lookup(runtime_id: str, function: str) -> Runtime:
    """The runtime `runtime_id` names, or UnknownRuntime naming `function`."""
    found = RUNTIMES.get(runtime_id)
    if found is not None:
        return found
    for prefix, language in NOT_RUNNABLE:
        if runtime_id.startswith(prefix):
            raise UnknownRuntime(f"function {function}: runtime {runtime_id} ({language}) cannot run here: lambdalet "
                                 "runs Python, Node.js and OS-only (provided.al2, provided.al2023) runtimes")
    raise UnknownRuntime(f"function {function}: {runtime_id!r} is not a runtime lambdalet knows; one of "
                         f"{', '.join(RUNTIMES)}")


def for_python(version: tuple[int, int]) -> Runtime | None:
    """The Python runtime of `version` (3, 12), if Lambda has one."""
    return RUNTIMES.get("python{}.{}".format(*version))
