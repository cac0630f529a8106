"""Debugging a Python function with debugpy (`lambdalet serve --debug-port N`).

The function's managed Python runtime (bootstrap/managed.py) is told, by `_LAMBDALET_DEBUG` in its
environment, to start debugpy listening on 127.0.0.1:N and to wait there for a debugger to attach
(VS Code's "Remote Attach", or any Debug Adapter Protocol client) before it imports anything of the
function: breakpoints in init code work too. debugpy is found where this server's Python has it and
is on the runtime's `sys.path` only for its own import, so the handler sees the import path Lambda
gives it. While debugging, the function has one environment (one port), and no deadline ends an
invocation (the protocol's rule, runtime_api/protocol.py): a debugger may hold the runtime at a
breakpoint as long as it likes.
"""

from __future__ import annotations

import importlib.util
import os

from sandbox.isolation import Isolation

from .config import ConfigError, FunctionConfig

INSTALL_HINT = "pip install 'lambdalet[debug]' (or debugpy)"


def debugpy_location() -> str | None:
    """The directory holding this Python's debugpy package, or None without one."""
    spec = importlib.util.find_spec("debugpy")
    if spec is None or spec.origin is None:
        return None
    return os.path.dirname(os.path.dirname(spec.origin))


def debug_problem(config: FunctionConfig) -> str | None:
    """Why `config` cannot be debugged here (None: it can), said before anything starts."""
    if config.runtime or (config.runtime_id is not None and not config.runtime_id.startswith("python")):
        return (f"function {config.name}: --debug-port debugs Python functions run by a managed Python runtime; "
                f"this one runs {' '.join(config.runtime) or config.runtime_id}")
    if config.isolation is Isolation.STRICT:
        return (f"function {config.name}: --debug-port cannot work at isolation strict: the runtime's network "
                "namespace lets no debugger reach it (use --isolation standard)")
    if debugpy_location() is None:
        return f"function {config.name}: --debug-port needs debugpy: {INSTALL_HINT}"
    return None


DEBUG_ENV = "_LAMBDALET_DEBUG"  # read (and removed) by bootstrap/managed.py


def debug_environment(config: FunctionConfig) -> dict[str, str]:
    """The runtime environment that makes the managed Python runtime wait for a debugger on the
    function's debug port: `host:port:debugpy's directory`. ConfigError where it cannot."""
    problem = debug_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    return {DEBUG_ENV: f"127.0.0.1:{config.debug_port}:{debugpy_location()}"}
