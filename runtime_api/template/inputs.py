"""What a user gives besides the template, in the formats of the SAM CLI (`sam local`), so the same
files and flags work here: where the template is, `--parameter-overrides` and `--env-vars`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TemplateError
from .parameters import scalar_text

# Where `sam local` looks when no template is named, in its order: a built template first.
TEMPLATE_NAMES = (".aws-sam/build/template.yaml", "template.yaml", "template.yml", "template.json")


def find_template(cwd: str | Path = ".") -> Path | None:
    for name in TEMPLATE_NAMES:
        path = Path(cwd) / name
        if path.is_file():
            return path
    return None


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """`Key=Value Key2="a value"` or CloudFormation's `ParameterKey=Key,ParameterValue=Value ...`:
    pairs separated by spaces; a value with spaces is quoted ("..." or '...') or has them escaped
    (`\\ `). ValueError names a pair that is neither form."""
    values = {}
    for token in _tokens(text):
        if token.startswith("ParameterKey="):
            key, separator, value = token.removeprefix("ParameterKey=").partition(",ParameterValue=")
        else:
            key, separator, value = token.partition("=")
        if not separator or not key or not all(c.isalnum() for c in key):
            raise ValueError(f"parameter override {token!r} is not Key=Value (or "
                             "ParameterKey=Key,ParameterValue=Value)")
        values[key] = value
    return values


def _tokens(text: str) -> list[str]:
    """Split at spaces outside quotes, dropping the quotes and the escaping backslashes of `\\ `,
    `\\"` and `\\'` (other backslashes are kept, as the SAM CLI keeps them)."""
    tokens, current, quote, started = [], [], None, False
    characters = iter(text)
    for character in characters:
        if character == "\\":
            following = next(characters, "")
            current.append(following if following in " \"'" else character + following)
            started = True
        elif quote:
            if character == quote:
                quote = None
            else:
                current.append(character)
        elif character in "\"'":
            quote, started = character, True
        elif character.isspace():
            if started:
                tokens.append("".join(current))
            current, started = [], False
        else:
            current.append(character)
            started = True
    if quote:
        raise ValueError(f"parameter overrides {text!r}: a {quote} is not closed")
    if started:
        tokens.append("".join(current))
    return tokens


def load_env_vars(path: str | Path) -> dict[str, dict[str, str]]:
    """A `--env-vars` file: {"Parameters": {...}} for every function, {"LogicalIdOrName": {...}} for
    one (the SAM CLI's JSON format). Values become strings as CloudFormation writes them; a file
    that is not that shape is a TemplateError naming it."""
    shown = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(shown, None, f"cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TemplateError(shown, exc.lineno, f"malformed JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(shown, None, f"cannot be read: {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError(shown, None, 'must be an object: {"Parameters": {...}, "FunctionName": {...}}')
    result = {}
    for target, variables in document.items():
        if not isinstance(variables, dict):
            raise TemplateError(shown, None, f"{target}: must be an object of variable names and values")
        for name, value in variables.items():
            if isinstance(value, (dict, list)):
                raise TemplateError(shown, None, f"{target}.{name}: a variable's value must be a string")
        result[target] = {name: scalar_text(value) for name, value in variables.items()}
    return result


def env_overrides(env_vars: dict[str, dict[str, str]] | None, names: list[str]) -> dict[str, str]:
    """The --env-vars values for the function known by `names` (its logical id, its FunctionName,
    its path through nested stacks, first found first): its own over `Parameters`, as `sam local`
    gives them."""
    if not env_vars:
        return {}
    own = next((env_vars[name] for name in names if name in env_vars), {})
    return {**env_vars.get("Parameters", {}), **own}
