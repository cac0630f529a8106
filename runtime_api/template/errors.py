"""What reading a template can go wrong with, each said in one line that names the file and line.

Two kinds, as CloudFormation itself draws the line:
* `TemplateError`: a template CloudFormation would refuse as a whole (it does not parse, names an
  unknown function or a missing parameter, has a circular dependency, a parameter value breaks its
  constraints). Nothing of it is configured.
* `TemplateProblem`: one function that cannot be configured offline (its code is in S3, a value
  comes from `Fn::ImportValue`), or a warning about one that is (a layer ARN with no local
  directory). The template's other functions are configured all the same.
"""

from __future__ import annotations

import msgspec


def where(file: str, line: int | None, function: str | None = None) -> str:
    """`template.yaml:12: function HelloFunction: ` (the line and the function when known)."""
    text = f"{file}:{line}: " if line else f"{file}: "
    return text + (f"function {function}: " if function else "")


class TemplateError(Exception):
    """The template cannot be read at all; `str()` is one line with the file and line."""

    def __init__(self, file: str, line: int | None, message: str, function: str | None = None) -> None:
        super().__init__(f"{where(file, line, function)}{message}")
        self.file, self.line, self.function, self.message = file, line, function, message


class TemplateProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A function that could not be configured (`warning` False), or a warning about one that was."""

    file: str
    line: int | None
    function: str | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{where(self.file, self.line, self.function)}{self.message}"


class Unresolved(Exception):
    """A value that cannot be had offline (or is not valid for Lambda): the function that needs it
    becomes a `TemplateProblem`, at `line` of the file being read."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line
