"""Templates that cannot be served: each gets one line naming the file and line (and the function,
where one is at fault). A template CloudFormation would refuse is refused whole (TemplateError,
nothing configured); a function that cannot be configured offline is a problem, and the template's
other functions are configured all the same."""

from __future__ import annotations

import sys

import pytest

from runtime_api.template import TemplateError, load_template
from template_projects import HANDLER, line_number, private_cache, project  # noqa: F401 (an autouse fixture)

FUNCTION = """\
  {name}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.12
"""


def refused(path, **options) -> str:
    with pytest.raises(TemplateError) as raised:
        load_template(path, **options)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("template", "line", "message"), [
    ("Resources:\n  Fn:\n    Type: [AWS::Lambda::Function\n  Other: 1\n", 4,
     "malformed YAML or JSON: while parsing a flow sequence did not find expected ',' or ']'"),
    ("Resources:\n  Fn: {Type: AWS::Lambda::Function}\n  Fn: {Type: AWS::Lambda::Function}\n", 3,
     "duplicate key 'Fn' (first at line 2)"),
    ('{\n  "Resources": {\n    "Fn": {"Type": "AWS::Lambda::Function",}\n  }\n}\n', 3,
     "malformed JSON: Expecting property name enclosed in double quotes"),
    ("- just\n- a list\n", None, "is not a template: its top level is not a mapping"),
], ids=["yaml", "duplicate-key", "json", "not-a-mapping"])
def test_a_file_that_does_not_parse(tmp_path, template, line, message):
    path = project(tmp_path, template, name="template.json" if template.startswith("{") else "template.yaml")
    assert refused(path) == f"{path}:{line}: {message}" if line else f"{path}: {message}"


def test_a_file_that_cannot_be_read(tmp_path):
    assert refused(tmp_path / "template.yaml") == f"{tmp_path / 'template.yaml'}: cannot be read: No such file or " \
                                                  "directory"


@pytest.mark.parametrize(("properties", "line", "message"), [
    ("Timeout: !Foo 3", 8, "unknown function Fn::Foo"),
    ("Timeout: {Fn::Foo: 3}", 8, "unknown function Fn::Foo"),
    ("Timeout: !Length [1, 2]", 8, "unknown function Fn::Length (it needs the AWS::LanguageExtensions transform, "
                                   "which lambdalet does not run)"),
    ("Timeout: !Ref Secondz", 8, "Ref Secondz: no parameter, resource or pseudo parameter Secondz in this template"),
    ("Timeout: !GetAtt Nothing.Arn", 8, "Fn::GetAtt Nothing: no resource Nothing in this template"),
    ("FunctionName: !Sub '${Stage}-${Nothing}'", 8,
     "Fn::Sub ${Nothing}: no parameter, resource or pseudo parameter Nothing in this template"),
    ("Timeout: !If [NoSuchCondition, 3, 4]", 8, "Fn::If NoSuchCondition: no condition NoSuchCondition in Conditions"),
], ids=["short-form", "long-form", "language-extensions", "ref", "getatt", "sub", "condition"])
def test_a_function_or_name_cloudformation_does_not_know(tmp_path, properties, line, message):
    path = project(tmp_path, f"""
        Transform: AWS::Serverless-2016-10-31
        Parameters:
          Stage: {{Type: String, Default: dev}}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              {properties}
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
        """, {"src/app.py": HANDLER})
    assert refused(path) == f"{path}:{line}: {message}"


def test_a_circular_fn_sub(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
        Resources:
          Ping:
            Type: AWS::Serverless::Function
            Properties:
              Environment: {Variables: {PEER: !Sub "${Pong.Arn}"}}
          Pong:
            Type: AWS::Serverless::Function
            Properties:
              Environment: {Variables: {PEER: !Sub "${Ping}"}}
          Alone:
            Type: AWS::Serverless::Function
        """, {"src/app.py": HANDLER})
    assert refused(path) == f"{path}:5: circular dependency between resources: Ping -> Pong -> Ping"


def test_circular_conditions(tmp_path):
    path = project(tmp_path, """
        Conditions:
          A: !Condition B
          B: !Not [!Condition A]
        Resources:
          Fn:
            Type: AWS::Lambda::Function
            Condition: A
            Properties: {Runtime: python3.12, Handler: index.handler, Code: {ZipFile: "x = 1"}, Role: r}
        """)
    assert refused(path) == f"{path}:2: circular conditions: A -> B -> A"


@pytest.mark.parametrize(("overrides", "line", "message"), [
    ({"Stage": "qa"}, 3, "parameter Stage: 'qa' is not one of its AllowedValues: dev, prod"),
    ({"Seconds": "ten"}, 7, "parameter Seconds: 'ten' is not a number (its Type is Number)"),
    ({}, 8, "parameter Bucket has no value: give one with --parameter-overrides Bucket=VALUE or a Default"),
], ids=["allowed-values", "number", "no-value"])
def test_a_parameter_value_cloudformation_refuses(tmp_path, overrides, line, message):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Parameters:
          Stage:
            Type: String
            AllowedValues: [dev, prod]
            Default: dev
          Seconds: {Type: Number, Default: 3}
          Bucket: {Type: String}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12, Timeout: !Ref Seconds}
        """, {"src/app.py": HANDLER})
    assert refused(path, parameter_overrides={"Bucket": "b", **overrides}
                   if "Bucket" not in message else overrides) == f"{path}:{line}: {message}"


def test_no_function_to_serve(tmp_path):
    path = project(tmp_path, "Resources:\n  Queue: {Type: AWS::SQS::Queue}\n")
    assert refused(path) == f"{path}: no function to serve: it declares no AWS::Serverless::Function or " \
                            "AWS::Lambda::Function"
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Conditions:
          Never: !Equals [a, b]
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Condition: Never
            Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
        """)
    assert refused(path) == f"{path}: no function to serve: its conditions leave none of its functions (Fn)"
    path = project(tmp_path, "AWSTemplateFormatVersion: 2010-09-09\n")
    assert refused(path) == f"{path}: has no Resources"


def test_a_nested_stack_whose_template_is_missing_or_nests_itself(tmp_path):
    path = project(tmp_path, """
        Resources:
          Child:
            Type: AWS::CloudFormation::Stack
            Properties: {TemplateURL: child.yaml}
        """)
    assert refused(path) == f"{path}:4: nested stack Child: no template child.yaml (looked for {tmp_path}/child.yaml)"
    project(tmp_path, """
        Resources:
          Again:
            Type: AWS::CloudFormation::Stack
            Properties: {TemplateURL: template.yaml}
        """, name="child.yaml")
    assert refused(path) == f"{tmp_path / 'child.yaml'}:2: nested stack Again: its template template.yaml nests itself"
    project(tmp_path, """
        Resources:
          Child:
            Type: AWS::CloudFormation::Stack
            Properties: {TemplateURL: child.yaml, Parameters: {Unknown: x}}
        """)
    project(tmp_path, "Resources:\n" + FUNCTION.format(name="Fn"), {"src/app.py": HANDLER}, name="child.yaml")
    assert refused(path) == f"{path}:2: the nested stack's template {tmp_path / 'child.yaml'} has no parameter Unknown"


def test_a_function_that_cannot_be_configured_leaves_the_others_configured(tmp_path):
    path = project(tmp_path, "\n".join(["Transform: AWS::Serverless-2016-10-31", "Resources:",
                                        FUNCTION.format(name="Fine"),
                                        FUNCTION.format(name="MissingCode").replace("CodeUri: src", "CodeUri: gone/"),
                                        FUNCTION.format(name="BadRuntime").replace("python3.12", "python3.99"),
                                        FUNCTION.format(name="TooLong") + "      Timeout: 901\n",
                                        FUNCTION.format(name="FromS3").replace("CodeUri: src",
                                                                                "CodeUri: s3://bucket/code.zip"),
                                        FUNCTION.format(name="Refused") + "      AutoPublishAlias: [not, a, name]\n",
                                        FUNCTION.format(name="Throttled") + "      ReservedConcurrentExecutions: 0\n",
                                        ]), {"src/app.py": HANDLER})
    stack = load_template(path)
    assert [function.name for function in stack.functions] == ["Fine"]

    def line(text: str, after: str) -> int:
        return line_number(path, text, after)

    assert [str(problem) for problem in stack.problems] == [
        f"{path}:{line('  Refused:', '  Refused:')}: function Refused: the SAM transform refuses it: Type of property "
        "'AutoPublishAlias' is invalid.",
        f"{path}:{line('      CodeUri: gone/', '  MissingCode:')}: function MissingCode: CodeUri gone/: no such "
        f"directory or .zip file ({tmp_path / 'gone'})",
        f"{path}:{line('      Runtime: python3.99', '  BadRuntime:')}: function BadRuntime: Runtime 'python3.99' is "
        "not one of Lambda's runtime identifiers",
        f"{path}:{line('  TooLong:', '  TooLong:')}: function TooLong: timeout 901.0 s is outside Lambda's 1-900 s",
        f"{path}:{line('      CodeUri: s3://bucket/code.zip', '  FromS3:')}: function FromS3: its Code is in S3 "
        "(s3://bucket/code.zip), which is not available offline: give a local directory (CodeUri)",
        f"{path}:{line('      ReservedConcurrentExecutions: 0', '  Throttled:')}: function Throttled: "
        "ReservedConcurrentExecutions 0: Lambda throttles every invocation of it",
    ]


def test_a_sam_template_without_the_sam_transform_installed(tmp_path, monkeypatch):
    path = project(tmp_path, "Transform: AWS::Serverless-2016-10-31\nResources:\n" + FUNCTION.format(name="Fn"),
                   {"src/app.py": HANDLER})
    for name in ["samtranslator", *(name for name in sys.modules if name.startswith("samtranslator."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    assert refused(path) == f"{path}:1: a SAM template needs the SAM transform, aws-sam-translator: pip install " \
                            "'lambdalet[sam]'"
