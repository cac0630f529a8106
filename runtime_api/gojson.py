"""Go's encoding/json syntax error messages, which the real RIE returns verbatim when an
extension's register body is not valid JSON (`invalid character 'x' looking for beginning of
value`, `unexpected end of JSON input`).

A leaf module: a small recursive-descent scan that finds the first error where Go's decoder would,
and words it as Go does.
"""

from __future__ import annotations

END = "unexpected end of JSON input"


def go_json_error(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    i = 0

    def peek() -> str | None:
        """The next non-blank character (not consumed), or None at the end."""
        nonlocal i
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return text[i] if i < len(text) else None

    def bad(context: str) -> str:
        return f"invalid character {_go_quote(text[i])} {context}"

    def value() -> str | None:
        nonlocal i
        c = peek()
        if c is None:
            return END
        if c in "{[":
            close, element = ("}", "object key:value pair") if c == "{" else ("]", "array element")
            i += 1
            if peek() == close:
                i += 1
                return None
            while True:
                if c == "{":
                    key = peek()
                    if key is None:
                        return END
                    if key != '"':
                        return bad("looking for beginning of object key string")
                    if error := string():
                        return error
                    colon = peek()
                    if colon is None:
                        return END
                    if colon != ":":
                        return bad("after object key")
                    i += 1
                if error := value():
                    return error
                after = peek()
                if after is None:
                    return END
                i += 1
                if after == close:
                    return None
                if after != ",":
                    i -= 1
                    return bad(f"after {element}")
        if c == '"':
            return string()
        for word in ("true", "false", "null"):
            if c == word[0]:
                for expected in word[1:]:
                    i += 1
                    if i >= len(text):
                        return END
                    if text[i] != expected:
                        return bad(f"in literal {word} (expecting {_go_quote(expected)})")
                i += 1
                return None
        if c == "-" or c.isdigit():
            i += 1
            while i < len(text) and (text[i].isdigit() or text[i] in ".eE+-"):
                i += 1
            return None
        return bad("looking for beginning of value")

    def string() -> str | None:
        nonlocal i
        i += 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                i += 1
                return None
            if ord(text[i]) < 0x20:
                return bad("in string literal")
            i += 1
        return END

    error = value()
    if error is None and peek() is not None:
        error = bad("after top-level value")
    return error or "invalid JSON"


def _go_quote(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    if ord(char) < 0x20:
        return f"'\\x{ord(char):02x}'"
    return f"'{char}'"
