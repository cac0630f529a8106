"""`load_template`: every function of a SAM or CloudFormation template (and of its nested stacks)
as a `FunctionConfig`, what could not be configured and why, and the files whose change means the
template should be read again.

One stack is read in this order, CloudFormation's: the file (document.py), the functions it calls
(validate.py), its parameters (parameters.py), the SAM transform where the template asks for it
(sam.py), the references of the CloudFormation that results (validate.py), then, evaluated lazily
(intrinsics.py): the conditions of its resources, its layers, its nested stacks (read the same way,
with the parameters the parent gives them), the provisioned concurrency of its aliases, the event
invoke configs of its functions (`AWS::Lambda::EventInvokeConfig`, which SAM makes of a function's
`EventInvokeConfig`), and last its
functions (functions.py). A function that cannot be configured offline is a problem and the others
are configured; a template CloudFormation would refuse is a TemplateError and nothing is.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from ..asynchronous.invoke_config import EventInvokeConfig, check_ranges
from ..config import FunctionConfig
from ..frontdoors.model import Api
from ..invoke_api import ServiceError
from . import apis, document, functions, parameters, resources, sam, validate
from .document import Mapping, line_of
from .errors import TemplateError, TemplateProblem, Unresolved
from .inputs import env_overrides
from .intrinsics import NO_VALUE, Evaluator, get_att_parts, intrinsic
from .parameters import Unavailable


class Stack(msgspec.Struct, kw_only=True):
    functions: list[FunctionConfig]  # every function that could be configured (with its Function URL)
    apis: list[Api]  # the API Gateway APIs in front of them (runtime_api/template/apis.py)
    problems: list[TemplateProblem]  # every function that could not, and warnings
    # Templates, code and layers: a change to any means "read it again" (a missing CodeUri is here
    # too, so that creating it is one).
    watched: list[str]


def load_template(path: str | Path, *, parameter_overrides: dict[str, str] | None = None,
                  env_vars: dict[str, dict[str, str]] | None = None, layer_map: dict[str, str] | None = None,
                  region: str = "us-east-1", account_id: str = "123456789012", stack_name: str = "local") -> Stack:
    """Read the template at `path`; TemplateError if it cannot be read at all.

    `parameter_overrides` are `--parameter-overrides` (inputs.parse_parameter_overrides),
    `env_vars` an `--env-vars` file (inputs.load_env_vars), `layer_map` the directory of each layer
    ARN the template names (`--layer-map ARN=DIR`); `region`, `account_id` and `stack_name` are
    the pseudo parameters' (`stack_name` "local", as `sam local` has it).
    """
    reading = _Reading(env_vars or {}, {arn: Path(directory) for arn, directory in (layer_map or {}).items()},
                       region, account_id)
    path = Path(path)
    reading.stack(path, dict(parameter_overrides or {}), stack_name, nesting=(), chain=(), caller=None)
    if not reading.functions and not any(problem.function for problem in reading.problems):
        why = (f"its conditions leave none of its functions ({', '.join(reading.skipped)})" if reading.skipped
               else "it declares no AWS::Serverless::Function or AWS::Lambda::Function")
        raise TemplateError(_shown(path), None, f"no function to serve: {why}")
    return Stack(functions=reading.functions, apis=reading.apis, problems=reading.problems,
                 watched=list(reading.watched))


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the current directory when it is under it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(absolute)


class _Reading:
    """One `load_template`: what every stack read so far has found."""

    def __init__(self, env_vars: dict[str, dict[str, str]], layer_map: dict[str, Path], region: str,
                 account_id: str) -> None:
        self.env_vars, self.layer_map = env_vars, layer_map
        self.region, self.account_id = region, account_id
        self.functions: list[FunctionConfig] = []
        self.apis: list[Api] = []
        self.problems: list[TemplateProblem] = []
        self.watched: dict[str, None] = {}  # ordered, without repeats
        self.skipped: list[str] = []  # functions whose Condition is false
        self.names: dict[str, str] = {}  # a name functions are served by -> where it is declared
        self.layers: dict[str, Callable[[], Path]] = {}  # ARN of a layer of the template -> its directory
        self.layer_dirs: dict[str, Path | Unresolved] = {}

    def problem(self, shown: str, line: int | None, function: str | None, message: str, warning: bool = False) -> None:
        self.problems.append(TemplateProblem(file=shown, line=line, function=function, message=message,
                                             warning=warning))

    def stack(self, path: Path, overrides: dict[str, object], stack_name: str, nesting: tuple[str, ...],
              chain: tuple[Path, ...], caller: tuple[str, int | None] | None) -> Callable[[str, int | None], object]:
        """Read one stack; its outputs, for the stack that nests it."""
        path = Path(os.path.abspath(path))
        shown = _shown(path)
        self.watched[str(path)] = None
        template = document.read(path, shown)
        validate.functions(template, shown)
        transforms = template.get("Transform")
        for transform in transforms if isinstance(transforms, list) else [transforms] if transforms else []:
            if transform != sam.SAM_TRANSFORM:
                self.problem(shown, line_of(template, "Transform"), None, f"the transform {transform} is not run: "
                             "lambdalet runs only the SAM transform, offline", warning=True)
        declared = template.get("Parameters") if isinstance(template.get("Parameters"), dict) else {}
        for name in overrides:
            if name in declared:
                continue
            if caller is not None:
                raise TemplateError(*caller, f"the nested stack's template {shown} has no parameter {name}")
            self.problem(shown, None, None, f"parameter override {name}: the template has no such parameter",
                         warning=True)
        values = parameters.resolve(template.get("Parameters"), overrides, shown)
        pseudo = parameters.pseudo(self.region, self.account_id, stack_name)
        refused: dict[str, str] = {}
        kinds = {}
        if sam.needed(template):
            kinds = {logical_id: resource.get("Type") for logical_id, resource in template["Resources"].items()
                     if isinstance(resource, dict)}
            given = {name: ",".join(value) if isinstance(value, list) else value
                     for name, value in values.items() if not isinstance(value, Unavailable)}
            given.update((name, value) for name, value in pseudo.items() if isinstance(value, str))
            template, refused = sam.transform(template, given, self.region, shown)
        if not isinstance(template.get("Resources"), dict) or not template["Resources"]:
            raise TemplateError(shown, template.lines.get("Resources"), "has no Resources")
        validate.references(template, shown, set(values), set(pseudo))
        evaluator = Evaluator(template, shown=shown, parameters=values, pseudo=pseudo, reference=resources.reference)
        stack_resources = evaluator.resources
        for logical_id, message in refused.items():
            line = line_of(stack_resources, logical_id)
            if kinds.get(logical_id) == "AWS::Serverless::Function":
                self.problem(shown, line, logical_id, f"the SAM transform refuses it: {message}")
            else:
                self.problem(shown, line, None, f"{kinds.get(logical_id)} {logical_id} is left out: the SAM "
                             f"transform refuses it: {message}", warning=True)

        def created(logical_id: str) -> bool:
            condition = stack_resources[logical_id].get("Condition")
            return not isinstance(condition, str) or evaluator.condition(condition, line_of(stack_resources, logical_id))

        assets = _cdk_assets(path)
        nested = {}
        for logical_id, resource in stack_resources.items():
            kind = resource.get("Type")
            try:
                if kind == "AWS::Lambda::LayerVersion" and created(logical_id):
                    self._layer(evaluator, logical_id, resource, path.parent, assets)
            except Unresolved as exc:
                self.problem(shown, exc.line or line_of(stack_resources, logical_id), None,
                             f"{kind} {logical_id} is left out: {exc.message}", warning=True)
            if kind == "AWS::CloudFormation::Stack":
                nested[logical_id] = _Nested(functools.partial(
                    self._nested, evaluator, logical_id, path, stack_name, nesting, chain))
                evaluator.nested[logical_id] = nested[logical_id].output
        # Nested stacks are read when first needed (one's parameters may be another's outputs), and
        # all of them by the end.
        for logical_id, stack in nested.items():
            try:
                if created(logical_id):
                    stack.read()
            except Unresolved as exc:
                stack.failure = exc
            if stack.failure is not None:
                self.problem(shown, stack.failure.line or line_of(stack_resources, logical_id), None,
                             f"AWS::CloudFormation::Stack {logical_id} is left out: {stack.failure.message}",
                             warning=True)
        provisioned = _provisioned(evaluator, created)
        event_invoke = _event_invoke_configs(evaluator, created)
        first = len(self.functions)
        for logical_id, resource in stack_resources.items():
            if resource.get("Type") == "AWS::Lambda::Function":
                self._function(evaluator, logical_id, resource, created, provisioned, path, assets, nesting,
                               event_invoke.get(logical_id))
        self._front_doors(evaluator, created, path, first)
        return _outputs(evaluator, template)

    def _front_doors(self, evaluator: Evaluator, created: Callable[[str], bool], path: Path, first: int) -> None:
        """The stack's APIs, and the Function URL of each of its functions."""
        found = apis.read(evaluator, created, path.parent)
        shown = evaluator.shown
        for message, line in found.problems:
            self.problem(shown, line, None, message, warning=True)
        for message, line in found.warnings:
            self.problem(shown, line, None, message, warning=True)
        self.watched.update(dict.fromkeys(found.watched))
        self.apis += found.apis
        for index in range(first, len(self.functions)):
            config = self.functions[index]
            url = next((found.urls[name] for name in config.names if name in found.urls), None)
            if url is not None:
                self.functions[index] = msgspec.structs.replace(config, url=url)

    def _function(self, evaluator: Evaluator, logical_id: str, resource: Mapping, created: Callable[[str], bool],
                  provisioned: dict[str, int | Unresolved], path: Path, assets: dict[str, str],
                  nesting: tuple[str, ...], event_invoke: EventInvokeConfig | Unresolved | None = None) -> None:
        shown, line = evaluator.shown, line_of(evaluator.resources, logical_id)
        context = functions.Context(evaluator=evaluator, base=path.parent, env_overrides={},
                                    layer_dir=self._layer_dir, assets=assets)
        try:
            if not created(logical_id):
                self.skipped.append(logical_id)
                return
            wanted = provisioned.get(logical_id, 0)
            if isinstance(wanted, Unresolved):
                raise wanted
            context.provisioned = wanted
            if isinstance(event_invoke, Unresolved):
                raise event_invoke
            context.event_invoke = event_invoke
            context.env_overrides = env_overrides(self.env_vars, [logical_id, *_other_names(evaluator, logical_id),
                                                                  "/".join((*nesting, logical_id))])
            config = functions.read(logical_id, resource, context, f"{shown}:{line}")
        except Unresolved as exc:
            self.problem(shown, exc.line or line, logical_id, exc.message)
            return
        finally:
            self.watched.update(dict.fromkeys(context.watched))
        for message, at in context.warnings:
            self.problem(shown, at or line, logical_id, message, warning=True)
        for name in (config.name, *config.aliases):
            if name in self.names:
                self.problem(shown, line, logical_id, f"the name {name} is already {self.names[name]}'s: a function "
                             "is served by its logical id and its FunctionName, so these must be unique")
                return
        self.names.update(dict.fromkeys((config.name, *config.aliases), f"{logical_id} at {shown}:{line}"))
        self.functions.append(config)

    def _layer(self, evaluator: Evaluator, logical_id: str, resource: Mapping, base: Path,
               assets: dict[str, str]) -> None:
        """Register a layer of the template by its ARN; its directory is made when a function uses it."""
        arn = resources.reference(evaluator, logical_id, None, line_of(resource))

        def directory() -> Path:
            watched: list[str] = []
            try:
                return functions.source(evaluator, resource, "Content", base, assets, watched)
            finally:
                self.watched.update(dict.fromkeys(watched))

        self.layers[arn] = directory

    def _layer_dir(self, arn: str, line: int | None) -> Path | None:
        """A layer's directory: the template's own layer, else --layer-map's, else None."""
        if arn not in self.layer_dirs:
            if arn in self.layers:
                try:
                    self.layer_dirs[arn] = self.layers[arn]()
                except Unresolved as exc:
                    self.layer_dirs[arn] = Unresolved(f"its layer {arn}: {exc.message}", exc.line)
            elif arn in self.layer_map:
                self.layer_dirs[arn] = Path(os.path.abspath(self.layer_map[arn]))
                self.watched[str(self.layer_dirs[arn])] = None
            else:
                return None
        found = self.layer_dirs[arn]
        if isinstance(found, Unresolved):
            raise found
        return found

    def _nested(self, evaluator: Evaluator, logical_id: str, path: Path, stack_name: str,
                nesting: tuple[str, ...], chain: tuple[Path, ...]) -> Callable[[str, int | None], object]:
        """Read a nested stack whose template is a local file (an `AWS::Serverless::Application` is one
        after the SAM transform)."""
        shown = evaluator.shown
        line = line_of(evaluator.resources, logical_id)
        properties = evaluator.resources[logical_id].get("Properties") or Mapping()
        url = evaluator.text(properties.get("TemplateURL"), line_of(properties, "TemplateURL", line), "TemplateURL")
        if url.startswith(sam.REPOSITORY):
            raise Unresolved(f"{url.removeprefix(sam.REPOSITORY)} of the Serverless Application Repository is not "
                             "available offline: its functions are not served", line)
        if "://" in url:
            raise Unresolved(f"its template is at {url}, which is not available offline: its functions are not "
                             "served", line)
        child = Path(os.path.abspath(path.parent / url))
        if not child.is_file():
            raise TemplateError(shown, line_of(properties, "TemplateURL", line),
                                f"nested stack {logical_id}: no template {url} (looked for {child})")
        if child in (*chain, path):
            raise TemplateError(shown, line, f"nested stack {logical_id}: its template {url} nests itself")
        given: dict[str, object] = {}
        nested_parameters = properties.get("Parameters") or Mapping()
        for name, node in (nested_parameters.items() if isinstance(nested_parameters, dict) else ()):
            at = line_of(nested_parameters, name, line)
            try:
                value = evaluator.value(node, at)
            except Unresolved as exc:
                given[name] = Unavailable(f"nested stack {logical_id}'s parameter {name} ({shown}:{exc.line or at}): "
                                          f"{exc.message}")
                continue
            if value is NO_VALUE:
                continue
            if isinstance(value, (dict, list)):
                raise TemplateError(shown, at, f"nested stack {logical_id}: parameter {name} must be a string (a "
                                    "list is passed to a nested stack joined, with Fn::Join)")
            given[name] = parameters.scalar_text(value)
        return self.stack(child, given, f"{stack_name}-{logical_id}", (*nesting, logical_id), (*chain, path),
                          caller=(shown, line))


class _Nested:
    """A nested stack, read once, when its outputs are first asked for or at the latest at the end."""

    def __init__(self, read: Callable[[], Callable[[str, int | None], object]]) -> None:
        self._read = read
        self._outputs: Callable[[str, int | None], object] | None = None
        self.failure: Unresolved | None = None

    def read(self) -> None:
        if self._outputs is None and self.failure is None:
            try:
                self._outputs = self._read()
            except Unresolved as exc:
                self.failure = exc

    def output(self, name: str, line: int | None) -> object:
        self.read()
        if self.failure is not None:
            raise Unresolved(f"Outputs.{name}: the nested stack is left out: {self.failure.message}", line)
        return self._outputs(name, line)


def _other_names(evaluator: Evaluator, logical_id: str) -> list[str]:
    try:
        return [resources.physical_name(evaluator, logical_id)]
    except Unresolved:
        return []


def _provisioned(evaluator: Evaluator, created: Callable[[str], bool]) -> dict[str, int | Unresolved]:
    """Each function's provisioned concurrency, from its aliases and versions (SAM puts a function's
    ProvisionedConcurrencyConfig on the alias AutoPublishAlias makes): the largest, since lambdalet
    serves one version of each function."""
    found: dict[str, int | Unresolved] = {}
    for logical_id, resource in evaluator.resources.items():
        properties = resource.get("Properties")
        if resource.get("Type") not in ("AWS::Lambda::Alias", "AWS::Lambda::Version") or \
                not isinstance(properties, dict) or "ProvisionedConcurrencyConfig" not in properties:
            continue
        target = _function_named(properties.get("FunctionName"))
        if target is None:
            continue
        line = line_of(properties, "ProvisionedConcurrencyConfig", line_of(resource))
        try:
            if not created(logical_id):
                continue
            config = evaluator.value(properties["ProvisionedConcurrencyConfig"], line)
            count = int(parameters.scalar_text(config.get("ProvisionedConcurrentExecutions", 0)))
        except Unresolved as exc:
            found[target] = exc
            continue
        except (AttributeError, ValueError):
            found[target] = Unresolved("ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions must be a "
                                       "whole number", line)
            continue
        previous = found.get(target, 0)
        if not isinstance(previous, Unresolved):
            found[target] = max(previous, count)
    return found


def _event_invoke_configs(evaluator: Evaluator,
                          created: Callable[[str], bool]) -> dict[str, EventInvokeConfig | Unresolved]:
    """Each function's `AWS::Lambda::EventInvokeConfig` (SAM's `EventInvokeConfig` becomes one, on
    the function or on its `AutoPublishAlias`): whatever its qualifier, since lambdalet serves one
    version of each function."""
    found: dict[str, EventInvokeConfig | Unresolved] = {}
    for logical_id, resource in evaluator.resources.items():
        properties = resource.get("Properties")
        if resource.get("Type") != "AWS::Lambda::EventInvokeConfig" or not isinstance(properties, dict):
            continue
        target = _function_named(properties.get("FunctionName"))
        if target is None:
            continue
        line = line_of(resource)
        try:
            if not created(logical_id):
                continue
            given = {key: evaluator.value(properties[key], line_of(properties, key, line))
                     for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
                     if key in properties}
            config = msgspec.convert(given, EventInvokeConfig, strict=False)
            check_ranges(config)
        except Unresolved as exc:
            found[target] = exc
        except msgspec.ValidationError as exc:
            found[target] = Unresolved(f"{logical_id} (AWS::Lambda::EventInvokeConfig): {exc}", line)
        except ServiceError as exc:
            found[target] = Unresolved(f"{logical_id} (AWS::Lambda::EventInvokeConfig): {exc.message}", line)
        else:
            found[target] = config
    return found


def _function_named(node: object) -> str | None:
    """The logical id in an alias's `FunctionName: !Ref F` (or `!GetAtt F.Arn`)."""
    function = intrinsic(node)
    if function == "Ref" and isinstance(node["Ref"], str):
        return node["Ref"]
    if function == "Fn::GetAtt":
        target, _ = get_att_parts(node["Fn::GetAtt"])
        return target if isinstance(target, str) else None
    return None


def _outputs(evaluator: Evaluator, template: Mapping) -> Callable[[str, int | None], object]:
    """A stack's `Outputs.Name`, for `Fn::GetAtt Stack.Outputs.Name` in the stack that nests it (what
    cannot be resolved says where in this stack's template)."""

    def output(name: str, line: int | None) -> object:
        outputs = template.get("Outputs")
        if not isinstance(outputs, dict) or not isinstance(outputs.get(name), dict):
            raise Unresolved(f"the nested stack {evaluator.shown} has no output {name}", line)
        declared = outputs[name]
        try:
            condition = declared.get("Condition")
            if isinstance(condition, str) and not evaluator.condition(condition, line_of(declared)):
                raise Unresolved(f"its Condition {condition} is false", line_of(declared))
            return evaluator.value(declared.get("Value"), line_of(declared, "Value", line_of(declared)))
        except Unresolved as exc:
            raise Unresolved(f"output {name} of the nested stack {evaluator.shown} (line {exc.line}): "
                             f"{exc.message}", line) from None

    return output


def _cdk_assets(path: Path) -> dict[str, str]:
    """{S3 key: local path} from the asset manifest `cdk synth` writes beside `<Stack>.template.json`
    (for templates whose resources do not name their asset in Metadata)."""
    if not path.name.endswith(".template.json"):
        return {}
    manifest = path.with_name(path.name.removesuffix(".template.json") + ".assets.json")
    try:
        files = json.loads(manifest.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    found = {}
    for asset in files.values() if isinstance(files, dict) else ():
        try:
            for destination in asset["destinations"].values():
                found[destination["objectKey"]] = asset["source"]["path"]
        except (KeyError, TypeError, AttributeError):
            continue
    return found
