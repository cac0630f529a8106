"""The checks CloudFormation makes before it creates anything, so a template it would refuse is
refused here too, as a whole, with the line: a function it does not know (`Fn::Foo`, `!Foo`), a
`Ref`, `Fn::GetAtt` or `${...}` naming nothing the template declares, a condition that does not
exist, and resources that depend on each other in a circle (through `Ref`, `Fn::GetAtt`, `Fn::Sub`
or `DependsOn`).
"""

from __future__ import annotations

from .document import Mapping, line_of
from .errors import TemplateError
from .intrinsics import FUNCTIONS, SUB_PLACEHOLDER, get_att_parts, intrinsic

# Functions of the AWS::LanguageExtensions transform, named as such when a template uses them.
_LANGUAGE_EXTENSIONS = ("Fn::ForEach", "Fn::Length", "Fn::ToJsonString")


def functions(template: Mapping, shown: str) -> None:
    """Every function the template calls is one CloudFormation knows (before the SAM transform,
    whose own resources take the same functions). Metadata and Rules are not evaluated here."""
    for section in ("Resources", "Outputs", "Conditions", "Globals"):
        _walk(template.get(section), line_of(template, section), lambda node, function, line: None, shown)


def references(template: Mapping, shown: str, parameters: set[str], pseudo: set[str]) -> None:
    """Every name the template refers to exists, and no resources depend on each other in a circle
    (after the SAM transform, on the CloudFormation it made)."""
    resources = template.get("Resources")
    if not isinstance(resources, dict):
        raise TemplateError(shown, line_of(template, "Resources"), "Resources must be a mapping of resources")
    conditions = template.get("Conditions") or {}
    names = parameters | pseudo | set(resources)
    depends: dict[str, set[str]] = {}

    def check(node: object, function: str, line: int | None, found: set[str]) -> None:
        argument = node[function]
        if function == "Ref":
            if isinstance(argument, str):
                _known(argument, names | {"AWS::NoValue"}, f"Ref {argument}", shown, line)
                found.add(argument)
        elif function == "Fn::GetAtt":
            target, _ = get_att_parts(argument)
            if isinstance(target, str):
                _known(target, set(resources), f"Fn::GetAtt {target}", shown, line, "resource")
                found.add(target)
        elif function == "Fn::Sub":
            text, variables = (argument + [{}])[:2] if isinstance(argument, list) else (argument, {})
            for name in SUB_PLACEHOLDER.findall(text) if isinstance(text, str) else ():
                if name.startswith("!") or (isinstance(variables, dict) and name in variables):
                    continue
                target = name if name in names else name.partition(".")[0]
                _known(target, names, f"Fn::Sub ${{{name}}}", shown, line)
                found.add(target)
        elif function in ("Fn::If", "Condition"):
            name = argument[0] if function == "Fn::If" and isinstance(argument, list) and argument else argument
            if isinstance(name, str) and name not in conditions:
                raise TemplateError(shown, line, f"{function} {name}: no condition {name} in Conditions")

    for logical_id, resource in resources.items():
        line = line_of(resources, logical_id)
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise TemplateError(shown, line, f"resource {logical_id} needs a Type")
        found: set[str] = set()
        _walk(resource.get("Properties"), line_of(resource, "Properties", line),
              lambda node, function, at: check(node, function, at, found), shown)
        condition = resource.get("Condition")
        if isinstance(condition, str) and condition not in conditions:
            raise TemplateError(shown, line_of(resource, "Condition", line),
                                f"resource {logical_id}: no condition {condition} in Conditions")
        after = resource.get("DependsOn", [])
        for name in [after] if isinstance(after, str) else after if isinstance(after, list) else []:
            _known(name, set(resources), f"resource {logical_id}: DependsOn {name}", shown,
                   line_of(resource, "DependsOn", line), "resource")
            found.add(name)
        depends[logical_id] = found & set(resources)
    for section in ("Outputs", "Conditions"):
        _walk(template.get(section), line_of(template, section),
              lambda node, function, at: check(node, function, at, set()), shown)
    _no_circle(depends, resources, shown)


def _known(name: str, names: set[str], what: str, shown: str, line: int | None, kind: str = "") -> None:
    if name not in names:
        kind = kind or "parameter, resource or pseudo parameter"
        raise TemplateError(shown, line, f"{what}: no {kind} {name} in this template")


def _walk(node: object, line: int | None, visit, shown: str) -> None:
    line = line_of(node, default=line) if isinstance(node, (dict, list)) else line
    function = intrinsic(node)
    if function is not None:
        if function not in FUNCTIONS:
            _unknown(function, line, shown)
        visit(node, function, line)
    if isinstance(node, dict):
        for key, item in node.items():
            if isinstance(key, str) and key.startswith("Fn::ForEach"):  # a loop among other resources
                _unknown(key, line_of(node, key, line), shown)
            _walk(item, line_of(node, key, line), visit, shown)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, line_of(node, index, line), visit, shown)


def _unknown(function: str, line: int | None, shown: str) -> None:
    hint = (" (it needs the AWS::LanguageExtensions transform, which lambdalet does not run)"
            if function.startswith(_LANGUAGE_EXTENSIONS) else "")
    raise TemplateError(shown, line, f"unknown function {function}{hint}")


def _no_circle(depends: dict[str, set[str]], resources: Mapping, shown: str) -> None:
    """CloudFormation's "Circular dependency between resources", found by a depth-first walk."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circle = path[path.index(name):] + [name]
            raise TemplateError(shown, line_of(resources, circle[0]),
                                f"circular dependency between resources: {' -> '.join(circle)}")
        if name in done:
            return
        path.append(name)
        for child in sorted(depends.get(name, ())):
            visit(child, path)
        path.pop()
        done.add(name)

    for name in depends:
        visit(name, [])
