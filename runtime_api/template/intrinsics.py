"""CloudFormation's intrinsic functions and conditions, evaluated offline for one stack.

`Evaluator.value(node, line)` gives what CloudFormation would put in a resource's property: `Ref`,
`Fn::GetAtt`, `Fn::Sub` (both forms, `${!Literal}` included), `Fn::Join`, `Fn::Select`,
`Fn::Split`, `Fn::FindInMap`, `Fn::If` with the `Conditions` (`Fn::Equals`, `Fn::Not`, `Fn::And`,
`Fn::Or`, `Condition`), `Fn::Base64`, `Fn::GetAZs`, `Fn::Cidr` and `AWS::NoValue` (the key or item
is dropped). What AWS knows and this machine does not (`Fn::ImportValue`, a parameter kept in
Parameter Store, a dynamic reference `{{resolve:...}}`, an attribute only a created resource has)
raises `Unresolved`: the one function that needs it is not configured. Evaluation is lazy, so
nothing is asked of a value no function uses. What `Ref` and `Fn::GetAtt` give for each kind of
resource is resources.py's; the checks made before anything is evaluated (unknown functions,
unknown names, circular dependencies) are validate.py's.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import TYPE_CHECKING

from .document import Mapping, line_of
from .errors import TemplateError, Unresolved
from .parameters import Unavailable, scalar_text

if TYPE_CHECKING:
    from collections.abc import Callable


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()  # Ref AWS::NoValue: the property (or list item) is left out

# `${Name}`, `${Resource.Attribute}` and the literal `${!Text}` of Fn::Sub.
SUB_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# Functions CloudFormation knows and this package evaluates (validate.py refuses the others).
FUNCTIONS = frozenset({
    "Ref", "Condition", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::FindInMap",
    "Fn::If", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Base64", "Fn::ImportValue", "Fn::GetAZs",
    "Fn::Cidr", "Fn::Transform",
})


def intrinsic(node: object) -> str | None:
    """The function a node calls (`Ref`, `Fn::Sub`, ...), or None for plain data."""
    if isinstance(node, dict) and len(node) == 1:
        (key,) = node
        if key == "Ref" or key == "Condition" or (isinstance(key, str) and key.startswith("Fn::")):
            return key
    return None


class Evaluator:
    """The values of one stack: its parameters, pseudo parameters, mappings, conditions, and, through
    `reference`, what `Ref` and `Fn::GetAtt` give for its resources."""

    def __init__(self, template: Mapping, *, shown: str, parameters: dict[str, object], pseudo: dict[str, object],
                 reference: Callable[[Evaluator, str, str | None, int | None], object]) -> None:
        self.shown = shown
        self.parameters = parameters
        self.pseudo = pseudo
        self.resources: Mapping = template.get("Resources") or Mapping()
        self.mappings: Mapping = template.get("Mappings") or Mapping()
        self.conditions: Mapping = template.get("Conditions") or Mapping()
        self._reference = reference
        # Nested stacks read: {logical id: its output by name}.
        self.nested: dict[str, Callable[[str, int | None], object]] = {}
        self._decided: dict[str, bool] = {}
        self._deciding: list[str] = []

    # --- values ------------------------------------------------------------------------------

    def value(self, node: object, line: int | None = None) -> object:
        """`node` with every intrinsic function evaluated (NO_VALUE where it is AWS::NoValue)."""
        line = line_of(node, default=line) if isinstance(node, (dict, list)) else line
        function = intrinsic(node)
        if function is not None:
            handler = _HANDLERS.get(function)
            if handler is None:  # validate.py refuses these before anything is evaluated
                raise TemplateError(self.shown, line, f"unknown function {function}")
            return handler(self, node[function], line)
        if isinstance(node, dict):
            resolved = {}
            for key, item in node.items():
                item = self.value(item, line_of(node, key, line))
                if item is not NO_VALUE:
                    resolved[key] = item
            return resolved
        if isinstance(node, list):
            items = (self.value(item, line_of(node, index, line)) for index, item in enumerate(node))
            return [item for item in items if item is not NO_VALUE]
        if isinstance(node, str) and "{{resolve:" in node:
            raise Unresolved(f"the dynamic reference in {node!r} is resolved by AWS (Parameter Store, Secrets "
                             "Manager) and is not available offline", line)
        return node

    def text(self, node: object, line: int | None, what: str) -> str:
        """A value that must be a string (a number or boolean is one, as CloudFormation writes it)."""
        value = self.value(node, line)
        if isinstance(value, (dict, list)) or value is NO_VALUE or value is None:
            raise Unresolved(f"{what} must be a string, not {_shown(value)}", line)
        return scalar_text(value)

    def strings(self, node: object, line: int | None, what: str) -> list[str]:
        value = self.value(node, line)
        if not isinstance(value, list) or any(isinstance(item, (dict, list)) for item in value):
            raise Unresolved(f"{what} must be a list of strings, not {_shown(value)}", line)
        return [scalar_text(item) for item in value]

    # --- names -------------------------------------------------------------------------------

    def ref(self, name: str, line: int | None) -> object:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            if isinstance(value, Unavailable):
                raise value.fail(line)
            return value
        if name in self.resources:
            return self.attribute(name, None, line)
        raise TemplateError(self.shown, line, f"Ref {name}: no parameter, resource or pseudo parameter "
                                              "of that name")

    def attribute(self, logical_id: str, attribute: str | None, line: int | None) -> object:
        """`Ref` (attribute None) or `Fn::GetAtt` of a resource of this stack."""
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict):
            raise TemplateError(self.shown, line, f"Fn::GetAtt {logical_id}.{attribute}: no resource {logical_id}")
        condition = resource.get("Condition")
        if isinstance(condition, str) and not self.condition(condition, line):
            raise Unresolved(f"{logical_id} is not created: its Condition {condition} is false", line)
        return self._reference(self, logical_id, attribute, line)

    # --- conditions --------------------------------------------------------------------------

    def condition(self, name: str, line: int | None) -> bool:
        if name in self._decided:
            return self._decided[name]
        if name not in self.conditions:
            raise TemplateError(self.shown, line, f"no condition {name} in Conditions")
        if name in self._deciding:
            cycle = " -> ".join([*self._deciding[self._deciding.index(name):], name])
            raise TemplateError(self.shown, line_of(self.conditions, name), f"circular conditions: {cycle}")
        self._deciding.append(name)
        try:
            decided = self.truth(self.conditions[name], line_of(self.conditions, name, line))
        finally:
            self._deciding.pop()
        self._decided[name] = decided
        return decided

    def truth(self, node: object, line: int | None) -> bool:
        value = self.value(node, line)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TemplateError(self.shown, line, f"a condition must be true or false, not {_shown(value)}")


def _shown(value: object) -> str:
    if value is NO_VALUE:
        return "AWS::NoValue"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _arguments(evaluator: Evaluator, function: str, argument: object, line: int | None, count: range) -> list:
    if not isinstance(argument, list) or len(argument) not in count:
        wanted = f"{count.start}" if len(count) == 1 else f"{count.start} to {count.stop - 1}"
        raise TemplateError(evaluator.shown, line, f"{function} takes a list of {wanted} arguments")
    return argument


# --- the functions ---------------------------------------------------------------------------

def _ref(evaluator: Evaluator, argument: object, line: int | None) -> object:
    if not isinstance(argument, str):
        raise TemplateError(evaluator.shown, line, "Ref takes the name of a parameter or resource")
    return evaluator.ref(argument, line)


def get_att_parts(argument: object) -> tuple[object, object]:
    """(resource, attribute) of `Fn::GetAtt`'s argument, `[resource, attribute]` or the string
    `resource.attribute` (the attribute may hold dots, as `Outputs.Name` does); (None, None) if it is
    neither."""
    if isinstance(argument, str):
        resource, _, attribute = argument.partition(".")
        return resource, attribute
    if isinstance(argument, list) and len(argument) == 2:
        return argument[0], argument[1]
    return None, None


def _get_att(evaluator: Evaluator, argument: object, line: int | None) -> object:
    logical_id, attribute = get_att_parts(argument)
    if not isinstance(logical_id, str) or not attribute:
        raise TemplateError(evaluator.shown, line, "Fn::GetAtt takes [resource, attribute] or \"resource.attribute\"")
    return evaluator.attribute(logical_id, evaluator.text(attribute, line, "Fn::GetAtt's attribute"), line)


def _sub(evaluator: Evaluator, argument: object, line: int | None) -> str:
    variables: dict = {}
    if isinstance(argument, list):
        text, variables = _arguments(evaluator, "Fn::Sub", argument, line, range(2, 3))
        if not isinstance(variables, dict):
            raise TemplateError(evaluator.shown, line, "Fn::Sub's second argument must be a mapping of variables")
    else:
        text = argument
    if not isinstance(text, str):
        raise TemplateError(evaluator.shown, line, "Fn::Sub takes a string, or [string, {variables}]")

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return evaluator.text(variables[name], line_of(variables, name, line), f"Fn::Sub variable {name}")
        if "." in name and name not in evaluator.parameters:
            logical_id, _, attribute = name.partition(".")
            value = evaluator.attribute(logical_id, attribute, line)
        else:
            value = evaluator.ref(name, line)
        if isinstance(value, (dict, list)) or value is NO_VALUE:
            raise Unresolved(f"Fn::Sub ${{{name}}}: {_shown(value)} cannot be put in a string", line)
        return scalar_text(value)

    if "{{resolve:" in text:
        evaluator.value(text, line)  # raises: a dynamic reference
    return SUB_PLACEHOLDER.sub(substitute, text)


def _join(evaluator: Evaluator, argument: object, line: int | None) -> str:
    delimiter, items = _arguments(evaluator, "Fn::Join", argument, line, range(2, 3))
    delimiter = evaluator.text(delimiter, line, "Fn::Join's delimiter")
    return delimiter.join(evaluator.strings(items, line, "Fn::Join's values"))


def _select(evaluator: Evaluator, argument: object, line: int | None) -> object:
    index, items = _arguments(evaluator, "Fn::Select", argument, line, range(2, 3))
    index = evaluator.text(index, line, "Fn::Select's index")
    items = evaluator.value(items, line)
    if not index.isdigit() or not isinstance(items, list):
        raise Unresolved(f"Fn::Select takes an index and a list, not {index!r} and {_shown(items)}", line)
    if int(index) >= len(items):
        raise Unresolved(f"Fn::Select index {index} is past the end of a list of {len(items)}", line)
    return items[int(index)]


def _split(evaluator: Evaluator, argument: object, line: int | None) -> list[str]:
    delimiter, text = _arguments(evaluator, "Fn::Split", argument, line, range(2, 3))
    delimiter = evaluator.text(delimiter, line, "Fn::Split's delimiter")
    if not delimiter:
        raise Unresolved("Fn::Split's delimiter must not be empty", line)
    return evaluator.text(text, line, "Fn::Split's string").split(delimiter)


def _find_in_map(evaluator: Evaluator, argument: object, line: int | None) -> object:
    keys = _arguments(evaluator, "Fn::FindInMap", argument, line, range(3, 4))
    name, top, second = (evaluator.text(key, line, "Fn::FindInMap's key") for key in keys)
    mapping = evaluator.mappings.get(name)
    if not isinstance(mapping, dict):
        raise TemplateError(evaluator.shown, line, f"Fn::FindInMap: no mapping {name} in Mappings")
    level = mapping.get(top)
    if not isinstance(level, dict) or second not in level:
        missing = top if not isinstance(level, dict) else f"{top}.{second}"
        raise Unresolved(f"Fn::FindInMap: mapping {name} has no {missing}", line)
    return evaluator.value(level[second], line_of(level, second, line))


def _if(evaluator: Evaluator, argument: object, line: int | None) -> object:
    name, when_true, when_false = _arguments(evaluator, "Fn::If", argument, line, range(3, 4))
    if not isinstance(name, str):
        raise TemplateError(evaluator.shown, line, "Fn::If's first argument is the name of a condition")
    return evaluator.value(when_true if evaluator.condition(name, line) else when_false, line)


def _condition(evaluator: Evaluator, argument: object, line: int | None) -> bool:
    if not isinstance(argument, str):
        raise TemplateError(evaluator.shown, line, "Condition takes the name of a condition")
    return evaluator.condition(argument, line)


def _equals(evaluator: Evaluator, argument: object, line: int | None) -> bool:
    left, right = (evaluator.value(side, line) for side in _arguments(evaluator, "Fn::Equals", argument, line,
                                                                         range(2, 3)))
    return _comparable(left) == _comparable(right)


def _comparable(value: object) -> object:
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value if isinstance(value, dict) else scalar_text(value)


def _not(evaluator: Evaluator, argument: object, line: int | None) -> bool:
    (condition,) = _arguments(evaluator, "Fn::Not", argument, line, range(1, 2))
    return not evaluator.truth(condition, line)


def _and(evaluator: Evaluator, argument: object, line: int | None) -> bool:
    conditions = _arguments(evaluator, "Fn::And", argument, line, range(2, 11))
    return all(evaluator.truth(condition, line) for condition in conditions)


def _or(evaluator: Evaluator, argument: object, line: int | None) -> bool:
    conditions = _arguments(evaluator, "Fn::Or", argument, line, range(2, 11))
    return any(evaluator.truth(condition, line) for condition in conditions)


def _base64(evaluator: Evaluator, argument: object, line: int | None) -> str:
    return base64.b64encode(evaluator.text(argument, line, "Fn::Base64's value").encode()).decode()


def _import_value(evaluator: Evaluator, argument: object, line: int | None) -> object:
    name = evaluator.text(argument, line, "Fn::ImportValue's name")
    raise Unresolved(f"Fn::ImportValue {name}: another stack's export is not available offline", line)


def _get_azs(evaluator: Evaluator, argument: object, line: int | None) -> list[str]:
    region = evaluator.text(argument, line, "Fn::GetAZs's region") or evaluator.pseudo["AWS::Region"]
    return [f"{region}{zone}" for zone in "abc"]  # as many as the smallest regions have


def _cidr(evaluator: Evaluator, argument: object, line: int | None) -> list[str]:
    block, count, bits = (evaluator.text(item, line, "Fn::Cidr's argument")
                          for item in _arguments(evaluator, "Fn::Cidr", argument, line, range(3, 4)))
    try:
        network = ipaddress.ip_network(block, strict=False)
        prefix = network.max_prefixlen - int(bits)
        subnets = network.subnets(new_prefix=prefix)
        return [str(next(subnets)) for _ in range(int(count))]
    except (ValueError, StopIteration):
        raise Unresolved(f"Fn::Cidr cannot make {count} subnets of {bits} host bits from {block}", line) from None


def _transform(evaluator: Evaluator, argument: object, line: int | None) -> object:
    name = argument.get("Name") if isinstance(argument, dict) else None
    raise Unresolved(f"Fn::Transform {name}: macros run in AWS and are not run offline", line)


_HANDLERS: dict[str, Callable[[Evaluator, object, int | None], object]] = {
    "Ref": _ref, "Condition": _condition, "Fn::GetAtt": _get_att, "Fn::Sub": _sub, "Fn::Join": _join,
    "Fn::Select": _select, "Fn::Split": _split, "Fn::FindInMap": _find_in_map, "Fn::If": _if,
    "Fn::Equals": _equals, "Fn::Not": _not, "Fn::And": _and, "Fn::Or": _or, "Fn::Base64": _base64,
    "Fn::ImportValue": _import_value, "Fn::GetAZs": _get_azs, "Fn::Cidr": _cidr, "Fn::Transform": _transform,
}
assert set(_HANDLERS) == FUNCTIONS
