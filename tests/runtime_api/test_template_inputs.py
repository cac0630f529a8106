"""What users give besides the template, in the SAM CLI's formats: where the template is found,
`--parameter-overrides` and `--env-vars`."""

from __future__ import annotations

import json

import pytest

from runtime_api.template import TemplateError, find_template, load_env_vars, parse_parameter_overrides


def test_the_template_is_found_where_sam_looks_first(tmp_path):
    assert find_template(tmp_path) is None
    for name in ("template.json", "template.yml", "template.yaml", ".aws-sam/build/template.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("Resources: {}\n")
        assert find_template(tmp_path) == tmp_path / name  # each outranks the ones before it


@pytest.mark.parametrize(("given", "parsed"), [
    ("", {}),
    ("Stage=dev Seconds=30", {"Stage": "dev", "Seconds": "30"}),
    ("ParameterKey=Stage,ParameterValue=dev ParameterKey=Names,ParameterValue=a,b", {"Stage": "dev",
                                                                                     "Names": "a,b"}),
    ('Greeting="hello there" Other=\'single quoted\'', {"Greeting": "hello there", "Other": "single quoted"}),
    (r"Greeting=hello\ there Quote=say\"hi\" Path=C:\dir", {"Greeting": "hello there", "Quote": 'say"hi"',
                                                            "Path": r"C:\dir"}),
    ("Url=https://x.test/?a=b   Empty=", {"Url": "https://x.test/?a=b", "Empty": ""}),
])
def test_parameter_overrides_in_sams_formats(given, parsed):
    assert parse_parameter_overrides(given) == parsed


@pytest.mark.parametrize(("given", "message"), [
    ("Stage=dev loose", "parameter override 'loose' is not Key=Value (or ParameterKey=Key,ParameterValue=Value)"),
    ("Stage dev", "parameter override 'Stage' is not Key=Value (or ParameterKey=Key,ParameterValue=Value)"),
    ("ParameterKey=Stage", "parameter override 'ParameterKey=Stage' is not Key=Value (or "
                           "ParameterKey=Key,ParameterValue=Value)"),
    ('Stage="dev', "parameter overrides 'Stage=\"dev': a \" is not closed"),
])
def test_parameter_overrides_that_are_not_pairs(given, message):
    with pytest.raises(ValueError) as raised:
        parse_parameter_overrides(given)
    assert str(raised.value) == message


def test_env_vars_file(tmp_path):
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"Parameters": {"STAGE": "local", "DEBUG": True, "RETRIES": 3, "NOTHING": None},
                                "HelloFunction": {"TABLE": "local-table"}}))
    assert load_env_vars(path) == {"Parameters": {"STAGE": "local", "DEBUG": "true", "RETRIES": "3", "NOTHING": ""},
                                   "HelloFunction": {"TABLE": "local-table"}}


@pytest.mark.parametrize(("text", "message"), [
    ('{"Parameters": {"A": "1",}}', ":1: malformed JSON: Expecting property name enclosed in double quotes"),
    ('["Parameters"]', ': must be an object: {"Parameters": {...}, "FunctionName": {...}}'),
    ('{"Parameters": "A=1"}', ": Parameters: must be an object of variable names and values"),
    ('{"Fn": {"A": {"nested": 1}}}', ": Fn.A: a variable's value must be a string"),
])
def test_env_vars_files_that_are_not_sams_format(tmp_path, text, message):
    path = tmp_path / "env.json"
    path.write_text(text)
    with pytest.raises(TemplateError) as raised:
        load_env_vars(path)
    assert str(raised.value) == f"{path}{message}"
    with pytest.raises(TemplateError) as raised:
        load_env_vars(tmp_path / "missing.json")
    assert str(raised.value) == f"{tmp_path / 'missing.json'}: cannot be read: No such file or directory"
