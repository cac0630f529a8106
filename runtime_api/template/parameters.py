"""A template's `Parameters` given their values, and the pseudo parameters, as CloudFormation
resolves them when a stack is created.

A parameter's value is its override (`--parameter-overrides`, or a nested stack's `Parameters`),
else its `Default`; it is checked against its `Type` and constraints, and a value that breaks them
refuses the whole template, as CloudFormation refuses to create the stack. `Ref` to a parameter
gives a string (a `Number` too: CloudFormation hands numbers on as strings) or, for the list types,
a list of strings. An `AWS::SSM::Parameter::Value<...>` parameter names a value kept in Parameter
Store, which is not reachable offline: without an override it is `Unavailable`, and an override is
taken as the value itself.
"""

from __future__ import annotations

import re
import uuid

from .document import Mapping, line_of
from .errors import TemplateError, Unresolved

_SSM_VALUE = "AWS::SSM::Parameter::Value<"


class Unavailable:
    """A value that exists in AWS but not here; whatever needs it becomes a problem saying why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unavailable({self.reason!r})"

    def fail(self, line: int | None) -> Unresolved:
        return Unresolved(self.reason, line)


def scalar_text(value: object) -> str:
    """A scalar as CloudFormation turns it into a string: `true`/`false`, `30`, `1.5`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def resolve(parameters: object, overrides: dict[str, object], shown: str) -> dict[str, object]:
    """{name: value} for every parameter of the template's `Parameters` section."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise TemplateError(shown, line_of(parameters), "Parameters must be a mapping")
    values: dict[str, object] = {}
    for name, declaration in parameters.items():
        line = line_of(parameters, name)
        if not isinstance(declaration, dict) or not isinstance(declaration.get("Type"), str):
            raise TemplateError(shown, line, f"parameter {name}: needs a Type")
        values[name] = _value(name, declaration, overrides, shown, line)
    return values


def _value(name: str, declaration: Mapping, overrides: dict[str, object], shown: str, line: int | None) -> object:
    kind = declaration["Type"]
    if name in overrides:
        raw = overrides[name]
        if isinstance(raw, Unavailable):
            return raw
    elif "Default" in declaration:
        raw = declaration["Default"]
        if kind.startswith(_SSM_VALUE):
            return Unavailable(f"parameter {name} is read from the SSM parameter {scalar_text(raw)}, which is "
                               f"not available offline: give its value with --parameter-overrides {name}=VALUE")
        line = line_of(declaration, "Default", line)
    else:
        raise TemplateError(shown, line, f"parameter {name} has no value: give one with --parameter-overrides "
                                         f"{name}=VALUE or a Default")

    def refuse(why: str) -> TemplateError:
        return TemplateError(shown, line, f"parameter {name}: {why}")

    if isinstance(raw, (dict, list)) and not (isinstance(raw, list) and _is_list(kind)):
        raise refuse("a value must be a string or a number")
    if isinstance(raw, list):
        members = [scalar_text(item) for item in raw]
    else:
        text = scalar_text(raw)
        members = [member.strip() for member in text.split(",")] if _is_list(kind) else [text]
    for member in members:
        _check(member, kind, declaration, refuse)
    return members if _is_list(kind) else members[0]


def _is_list(kind: str) -> bool:
    inner = kind[len(_SSM_VALUE):-1] if kind.startswith(_SSM_VALUE) else kind
    return inner == "CommaDelimitedList" or inner.startswith("List<")


def _check(value: str, kind: str, declaration: Mapping, refuse) -> None:
    """The constraints CloudFormation checks a value (each member of a list) against."""
    if kind in ("Number", "List<Number>"):
        try:
            number = float(value)
        except ValueError:
            raise refuse(f"{value!r} is not a number (its Type is {kind})") from None
        for bound, ok in (("MinValue", lambda limit: number >= limit), ("MaxValue", lambda limit: number <= limit)):
            if bound in declaration and not ok(_number(declaration[bound], bound, refuse)):
                raise refuse(f"{value} is outside its {bound} {scalar_text(declaration[bound])}")
    allowed = declaration.get("AllowedValues")
    if allowed is not None:
        choices = [scalar_text(choice) for choice in allowed] if isinstance(allowed, list) else [scalar_text(allowed)]
        if value not in choices and not _same_number(value, choices, kind):
            raise refuse(f"{value!r} is not one of its AllowedValues: {', '.join(choices)}")
    pattern = declaration.get("AllowedPattern")
    if pattern is not None:
        try:
            matched = re.fullmatch(scalar_text(pattern), value)
        except re.error as exc:
            raise refuse(f"AllowedPattern {pattern!r} is not a regular expression: {exc}") from None
        if not matched:
            raise refuse(f"{value!r} does not match its AllowedPattern {pattern}")
    for bound, ok in (("MinLength", lambda limit: len(value) >= limit), ("MaxLength", lambda limit: len(value) <= limit)):
        if bound in declaration and not ok(_number(declaration[bound], bound, refuse)):
            raise refuse(f"{value!r} is {len(value)} characters, outside its {bound} {declaration[bound]}")


def _number(value: object, what: str, refuse) -> float:
    try:
        return float(scalar_text(value))
    except ValueError:
        raise refuse(f"{what} {value!r} is not a number") from None


def _same_number(value: str, choices: list[str], kind: str) -> bool:
    if kind not in ("Number", "List<Number>"):
        return False
    try:
        return any(float(choice) == float(value) for choice in choices)
    except ValueError:
        return False


def partition(region: str) -> str:
    for prefix, name in (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"),
                         ("us-iso-", "aws-iso")):
        if region.startswith(prefix):
            return name
    return "aws"


_URL_SUFFIX = {"aws-cn": "amazonaws.com.cn", "aws-iso": "c2s.ic.gov", "aws-iso-b": "sc2s.sgov.gov"}


def pseudo(region: str, account_id: str, stack_name: str) -> dict[str, object]:
    """The pseudo parameters of a stack with this name, in this region and account. The stack's id
    is made up, the same for the same stack every time (a real one ends in a UUID CloudFormation
    draws when the stack is created)."""
    name = partition(region)
    return {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": name,
        "AWS::URLSuffix": _URL_SUFFIX.get(name, "amazonaws.com"),
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id(region, account_id, stack_name),
        "AWS::NotificationARNs": [],
    }


def stack_id(region: str, account_id: str, stack_name: str) -> str:
    stack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"lambdalet:{account_id}:{region}:{stack_name}")
    return f"arn:{partition(region)}:cloudformation:{region}:{account_id}:stack/{stack_name}/{stack_uuid}"
