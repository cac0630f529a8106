"""A template file (YAML or JSON) as plain dicts and lists that remember their line numbers.

JSON is read by the same YAML parser (JSON is YAML's flow style), so both keep lines the same way.
CloudFormation's short-form tags become their long form as they are read: `!Ref X` is
`{"Ref": "X"}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, any other `!Name` is
`{"Fn::Name": ...}`, so the rest of the package sees one form only (an unknown `!Name` is reported
as the unknown `Fn::Name` it stands for, with its line). As CloudFormation does, dates stay strings
(`AWSTemplateFormatVersion: 2010-09-09`), mapping keys are strings, and a key given twice in one
mapping is an error.
"""

from __future__ import annotations

from pathlib import Path

from .errors import TemplateError


class Mapping(dict):
    """A mapping of the template: `line` where it starts, `lines[key]` where each key stands."""

    __slots__ = ("line", "lines")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.lines: dict[str, int] = {}


class Sequence(list):
    """A list of the template: `line` where it starts, `lines[index]` where each item stands."""

    __slots__ = ("line", "lines")

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.line = 0
        self.lines: list[int] = []


def line_of(node: object, key: object = None, default: int | None = None) -> int | None:
    """The line of `node[key]` (of `node` itself without a key), or `default` where unknown: a value
    made by the SAM transform rather than read from the file has no line of its own."""
    if key is not None:
        lines = getattr(node, "lines", None)
        if isinstance(lines, dict) and key in lines:
            return lines[key]
        if isinstance(lines, list) and isinstance(key, int) and 0 <= key < len(lines):
            return lines[key]
    line = getattr(node, "line", 0)
    return line or default


def read(path: Path, shown: str) -> Mapping:
    """The template at `path` (`shown` is how messages name it); TemplateError if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(shown, None, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse(text, shown, json_rules=path.suffix.lower() == ".json")


def parse(text: str, shown: str, json_rules: bool = False) -> Mapping:
    """The template in `text`; with `json_rules` (a .json file) it must also be JSON, as written."""
    import yaml

    if json_rules:
        # JSON's own parser first, for JSON's rules and messages (YAML would let `"b": }` pass);
        # then the YAML one below for the lines.
        import json

        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(shown, exc.lineno, f"malformed JSON: {exc.msg}") from None
    loader = _loader_class()(text)
    loader.shown = shown
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise TemplateError(shown, mark.line + 1 if mark else None, f"malformed YAML or JSON: {what}") from None
    except yaml.YAMLError as exc:
        raise TemplateError(shown, None, f"malformed YAML or JSON: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(document, Mapping):
        raise TemplateError(shown, None, "is not a template: its top level is not a mapping")
    return document


_LOADER = None


def _loader_class():
    """The YAML loader with CloudFormation's tags, made on first use (PyYAML is imported only when
    a template is read). libyaml's parser where PyYAML has it, the pure-Python one otherwise."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _make_loader()
    return _LOADER


def _make_loader():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class CloudFormationLoader(base):
        shown = "template"

        def construct_cfn_mapping(self, node):
            mapping = Mapping()
            mapping.line = node.start_mark.line + 1
            self.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (dict, list)):
                    raise TemplateError(self.shown, key_node.start_mark.line + 1, "a mapping key must be a string")
                key = _string(key)
                if key in mapping:
                    raise TemplateError(self.shown, key_node.start_mark.line + 1,
                                        f"duplicate key {key!r} (first at line {mapping.lines[key]})")
                mapping[key] = self.construct_object(value_node, deep=True)
                mapping.lines[key] = key_node.start_mark.line + 1
            return mapping

        def construct_cfn_sequence(self, node):
            sequence = Sequence(self.construct_object(child, deep=True) for child in node.value)
            sequence.line = node.start_mark.line + 1
            sequence.lines = [child.start_mark.line + 1 for child in node.value]
            return sequence

        def construct_timestamp_as_text(self, node):
            return self.construct_scalar(node)

        def construct_intrinsic(self, suffix, node):
            if isinstance(node, yaml.ScalarNode):
                value = self.construct_scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                value = self.construct_cfn_sequence(node)
            else:
                value = self.construct_cfn_mapping(node)
            if suffix == "GetAtt" and isinstance(value, str):
                # The short form's dotted string: the resource is before the first dot, the
                # attribute (which may hold dots, as Outputs.Name does) after it.
                resource, _, attribute = value.partition(".")
                parts = Sequence([resource, attribute])
                parts.line, parts.lines = node.start_mark.line + 1, [node.start_mark.line + 1] * 2
                value = parts
            name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
            intrinsic = Mapping({name: value})
            intrinsic.line = node.start_mark.line + 1
            intrinsic.lines = {name: intrinsic.line}
            return intrinsic

    CloudFormationLoader.add_constructor("tag:yaml.org,2002:map", CloudFormationLoader.construct_cfn_mapping)
    CloudFormationLoader.add_constructor("tag:yaml.org,2002:seq", CloudFormationLoader.construct_cfn_sequence)
    CloudFormationLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                         CloudFormationLoader.construct_timestamp_as_text)
    CloudFormationLoader.add_multi_constructor("!", CloudFormationLoader.construct_intrinsic)
    return CloudFormationLoader


def _string(key: object) -> str:
    """A mapping key as CloudFormation reads it: always a string (`200:` is "200", `true:` "true")."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)
