"""A stand-in for runtime_api.template (the template reader, written beside the serving side) until
it is merged: the same interface over the few things the serving tests write (literal properties,
`Ref` to a parameter, `Fn::FindInMap`, `Globals.Function`), no line numbers. `install()` puts it in
place only where the real reader is missing, so the tests run against the real one once it is there.

    python -c "import template_standin; template_standin.install(); ..."   # a lambdalet process
"""

from __future__ import annotations

import json
import shlex
import sys
import types
from pathlib import Path

import msgspec
import yaml


class TemplateError(Exception):
    def __init__(self, file: str, line: int | None, message: str, function: str | None = None) -> None:
        where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(where + (f"function {function}: " if function else "") + message)
        self.file, self.line, self.function, self.message = file, line, function, message


class TemplateProblem(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    line: int | None
    function: str | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.file}: function {self.function}: {self.message}"


class Stack(msgspec.Struct):
    functions: list
    problems: list
    watched: list[str]


def find_template(directory=".") -> Path | None:
    for name in ("template.yaml", "template.yml", ".aws-sam/build/template.yaml"):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def parse_parameter_overrides(text: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"{token!r} is not Key=Value")
        pairs[key] = value
    return pairs


def load_env_vars(path) -> dict:
    return json.loads(Path(path).read_text())


def load_template(path, *, parameter_overrides=None, env_vars=None, layer_map=None, region="us-east-1",
                  account_id="123456789012", stack_name="local"):
    from runtime_api.config import FunctionConfig

    path = Path(path)
    name = path.name
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TemplateError(name, mark.line + 1 if mark else None, f"not YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(name, None, "no Resources")
    parameters = {key: str(spec.get("Default", "")) for key, spec in (document.get("Parameters") or {}).items()}
    parameters.update(parameter_overrides or {})
    mappings = document.get("Mappings") or {}

    def resolve(value):
        if isinstance(value, dict) and list(value) == ["Ref"]:
            if value["Ref"] not in parameters:
                raise TemplateError(name, None, f"Ref to {value['Ref']}, which is not a parameter")
            return parameters[value["Ref"]]
        if isinstance(value, dict) and list(value) == ["Fn::FindInMap"]:
            table, key, field = (resolve(part) for part in value["Fn::FindInMap"])
            return mappings[table][key][field]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    globals_ = resolve((document.get("Globals") or {}).get("Function") or {})
    functions, problems = [], []
    for logical_id, resource in document["Resources"].items():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        props = {**globals_, **resolve(resource.get("Properties") or {})}
        variables = dict((props.get("Environment") or {}).get("Variables") or {})
        for scope in ("Parameters", logical_id, props.get("FunctionName")):
            variables.update((env_vars or {}).get(scope) or {})
        code = path.parent / str(props.get("CodeUri", "."))
        if props.get("PackageType") != "Image" and not code.is_dir():
            problems.append(TemplateProblem(file=name, line=None, function=logical_id,
                                            message=f"CodeUri {props.get('CodeUri')}: no such directory"))
            continue
        logging = props.get("LoggingConfig") or {}
        functions.append(FunctionConfig(
            name=logical_id, code=str(code.resolve()), handler=props.get("Handler", "app.handler"),
            runtime_id=props.get("Runtime"), timeout=float(props.get("Timeout", 3)),
            memory=int(props.get("MemorySize", 128)), env={k: str(v) for k, v in variables.items()},
            aliases=[props["FunctionName"]] if props.get("FunctionName") else [],
            package_type=props.get("PackageType", "Zip"),
            tenancy=(props.get("TenancyConfig") or {}).get("TenantIsolationMode"),
            log_format=logging.get("LogFormat"), application_log_level=logging.get("ApplicationLogLevel"),
            system_log_level=logging.get("SystemLogLevel"), source=name, region=region, account_id=account_id))
    return Stack(functions, problems, [str(path.resolve())])


def installed() -> bool:
    """Whether the real template reader is there."""
    try:
        import runtime_api.template as reader
    except ImportError:
        return False
    return not getattr(reader, "STANDIN", False)


def install() -> None:
    """Make `runtime_api.template` this stand-in, unless the real reader is there."""
    if installed():
        return
    module = types.ModuleType("runtime_api.template")
    for name in ("TemplateError", "TemplateProblem", "find_template", "parse_parameter_overrides",
                 "load_env_vars", "load_template"):
        setattr(module, name, globals()[name])
    module.STANDIN = True
    sys.modules["runtime_api.template"] = module


# How tests run lambdalet as a process: with the stand-in where the real reader is missing.
LAUNCHER = "import sys, template_standin; template_standin.install(); from runtime_api.cli import main; sys.exit(main())"
