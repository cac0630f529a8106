"""Where a server's functions come from: a SAM or CloudFormation template, a TOML config file (which
may name a template too), or the command line's flags. Each is read the same way, at start-up and
again whenever a file it was read from changes (runtime_api/reload.py): `load()` gives the
FunctionConfigs to serve, the problems to say (one line each, with file and line), and what to watch.

A template is only another source of the same FunctionConfig: the template reader
(runtime_api/template) turns it into FunctionConfigs, and the settings given on the command line for
every function (`Overrides`: isolation, layers, SnapStart, the debugger...) are laid over them here,
as over a config file's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import msgspec

from sandbox.cgroups import CpuModel
from sandbox.isolation import Isolation

from .config import ConfigError, FunctionConfig, ServerConfig, load_config
from .debug import debug_problem
from .frontdoors.model import Api, with_jwks


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """What a source gave: the functions to serve, what to say about the ones it could not (or
    about how it read them), and the files and directories whose change means: read it again."""

    functions: list[FunctionConfig]
    problems: list[str] = dataclasses.field(default_factory=list)
    watched: tuple[str, ...] = ()
    apis: list[Api] = dataclasses.field(default_factory=list)  # the API Gateway APIs in front of them


@dataclasses.dataclass(frozen=True, slots=True)
class Overrides:
    """Settings given on the command line for every function a file describes (None: the file's)."""

    isolation: Isolation | None = None
    cpu_model: CpuModel | None = None
    ephemeral_storage: int | None = None
    snapstart: bool = False  # on for every function (a file may turn it on for some)
    provisioned: int | None = None
    layers: tuple[str, ...] = ()  # after each function's own
    user: str | None = None
    debug_port: int | None = None  # for `debug_function`, or the only function
    debug_function: str | None = None
    functions: tuple[str, ...] = ()  # serve only these (by any of their names); () = all
    # The runtime flags (--runtime, --python-path, --allow-other-python, --sdk), as FunctionConfig settings.
    runtime: dict = dataclasses.field(default_factory=dict)
    jwks: dict = dataclasses.field(default_factory=dict)  # --jwks: a JWT authorizer's local JWKS file, by its name

    def select(self, functions: list[FunctionConfig], where: str) -> list[FunctionConfig]:
        """The functions named by `functions` (all of them without); ConfigError for a name that is
        not there."""
        known = {name for f in functions for name in f.names}
        for name in (*self.functions, *([self.debug_function] if self.debug_function else [])):
            if name not in known:
                raise ConfigError(f"{where}: no function {name} (it has {', '.join(f.name for f in functions) or 'none'})")
        if not self.functions:
            return functions
        return [f for f in functions if set(f.names) & set(self.functions)]

    def apply(self, function: FunctionConfig, *, only: bool) -> FunctionConfig:
        """`function` with these settings laid over it (`only`: it is the one function served)."""
        changes: dict = {}
        if self.isolation is not None:
            changes["isolation"] = self.isolation
        if self.cpu_model is not None:
            changes["cpu_model"] = self.cpu_model
        if self.ephemeral_storage is not None:
            changes["ephemeral_storage"] = self.ephemeral_storage
        if self.snapstart:
            changes["snapstart"] = True
        if self.provisioned is not None:
            changes["provisioned"] = self.provisioned
        if self.layers:
            changes["layers"] = [*function.layers, *(str(Path(layer).resolve()) for layer in self.layers)]
        if self.user is not None:
            changes["user"] = self.user
        for name, value in self.runtime.items():
            changes[name] = {**function.interpreters, **value} if name == "interpreters" else value
        if self.debug_port is not None and (self.debug_function in function.names
                                            or (self.debug_function is None and only)):
            changes["debug_port"] = self.debug_port
        function = msgspec.structs.replace(function, **changes) if changes else function
        function.__post_init__()  # msgspec's replace does not validate
        function.check_layers()
        function.check_user()
        if function.debug_port is not None and (problem := debug_problem(function)) is not None:
            raise ConfigError(problem)
        return function

    def apply_all(self, functions: list[FunctionConfig], where: str) -> list[FunctionConfig]:
        """The functions to serve, with these settings; ConfigError where they cannot be served so."""
        chosen = self.select(functions, where)
        chosen = [self.apply(function, only=len(chosen) == 1) for function in chosen]
        if self.debug_port is not None and not any(f.debug_port is not None for f in chosen):
            raise ConfigError(f"{where}: --debug-port debugs one function: name it with --debug-function (or serve "
                              f"one with --function); this serves {', '.join(f.name for f in chosen) or 'none'}")
        return chosen


class StaticSource:
    """Functions given as they are (the command line's flags, an embedding program)."""

    def __init__(self, functions: list[FunctionConfig], apis: list[Api] = ()) -> None:
        self.functions = functions
        self.apis = list(apis)

    def load(self) -> Loaded:
        return Loaded(list(self.functions), apis=list(self.apis))


class TemplateSource:
    """A SAM or CloudFormation template, read by runtime_api.template."""

    def __init__(self, path: str, *, parameter_overrides: dict[str, str] | None = None,
                 env_vars: str | None = None, layer_map: dict[str, str] | None = None,
                 overrides: Overrides = Overrides()) -> None:
        self.path = str(Path(path).resolve())
        self.parameter_overrides = dict(parameter_overrides or {})
        self.env_vars = env_vars
        self.layer_map = dict(layer_map or {})
        self.overrides = overrides

    def load(self) -> Loaded:
        """ConfigError (one line: file, line, why) when the template cannot be read at all."""
        from .template import TemplateError, load_env_vars, load_template  # read only when a template is

        try:
            env_vars = load_env_vars(self.env_vars) if self.env_vars is not None else None
            stack = load_template(self.path, parameter_overrides=self.parameter_overrides, env_vars=env_vars,
                                  layer_map=self.layer_map)
        except (TemplateError, ConfigError) as exc:
            raise ConfigError(str(exc)) from None
        except ValueError as exc:  # an env-vars file that is not SAM's JSON
            raise ConfigError(f"{self.env_vars}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{exc.filename}: {exc.strerror}") from None
        configured = {name for f in stack.functions for name in f.names}
        for problem in stack.problems:  # a function asked for by name that could not be configured: why
            if problem.function in self.overrides.functions and problem.function not in configured:
                raise ConfigError(str(problem))
        functions = self.overrides.apply_all(stack.functions, _relative(self.path))
        watched = (*stack.watched, *([self.env_vars] if self.env_vars is not None else []))
        return Loaded(functions, [str(problem) for problem in stack.problems], tuple(watched),
                      with_jwks(stack.apis, self.overrides.jwks))


class ConfigFileSource:
    """A TOML config file: its `[[function]]` entries, and its template's functions when it names one."""

    def __init__(self, path: str, *, overrides: Overrides = Overrides(),
                 adjust: Callable[[ServerConfig], None] = lambda config: None) -> None:
        self.path = str(Path(path).resolve())
        self.overrides = overrides
        self.adjust = adjust  # host and port given on the command line
        self.config: ServerConfig | None = None  # as last read

    def load(self) -> Loaded:
        config = load_config(self.path)
        self.adjust(config)
        functions = list(config.function)
        apis = list(config.api)
        problems: list[str] = []
        watched: tuple[str, ...] = (self.path,)
        if config.template is not None:
            # Its functions as the template reader gives them; the command line's settings once, below.
            loaded = TemplateSource(config.template, parameter_overrides=config.parameter_overrides,
                                    env_vars=config.env_vars, layer_map=config.layer_map).load()
            functions += loaded.functions
            problems += loaded.problems
            watched += loaded.watched
            apis += loaded.apis
        self.config = config
        return Loaded(self.overrides.apply_all(functions, _relative(self.path)), problems, watched,
                      with_jwks(apis, {**config.jwks, **self.overrides.jwks}))


def _relative(path: str) -> str:
    """A path as messages show it: relative to the current directory when it is under it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
