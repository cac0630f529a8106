"""SAM and CloudFormation projects written by the template tests: a template and the files beside
it (code, layers, nested templates), as a user's project directory holds them."""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path

import pytest

HANDLER = "def handler(event, context):\n    return event\n"


def project(root: Path, template: str, files: dict[str, str] | None = None, name: str = "template.yaml") -> Path:
    """Write `template` (dedented) as `root/name` and each of `files` (path: text) under `root`;
    the template's path."""
    for relative, text in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(template).lstrip())
    return path


def inline_function(name: str, *, condition: str | None = None, **properties: str) -> str:
    """An `AWS::Lambda::Function` with inline Python code, as an entry of a template's Resources (two
    spaces in); each of `properties` is one more line `Key: value` of its Properties."""
    lines = [f"  {name}:", "    Type: AWS::Lambda::Function"]
    lines += [f"    Condition: {condition}"] if condition else []
    lines += ["    Properties:", "      Runtime: python3.12", "      Handler: index.handler",
              '      Code: {ZipFile: "def handler(event, context): return 1"}',
              "      Role: arn:aws:iam::123456789012:role/r"]
    lines += [f"      {key}: {value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def line_number(path: Path, text: str, after: str | None = None) -> int:
    """The number of the first line of `path` that is `text` (the first after the line `after`)."""
    lines = path.read_text().splitlines()
    return lines.index(text, lines.index(after) if after else 0) + 1


def zip_of(path: Path, files: dict[str, str], modes: dict[str, int] | None = None) -> Path:
    """A .zip of `files` (name: text), with a Unix mode per name where `modes` gives one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            bundle.writestr(info, text)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Extracted archives and inline code go to the test's own cache directory, not the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "lambdalet"
