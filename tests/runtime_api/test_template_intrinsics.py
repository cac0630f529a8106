"""CloudFormation's intrinsic functions, parameters, mappings, conditions and pseudo parameters, as
the functions of a template see them: each environment variable below is one function at work."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from runtime_api.template import TemplateError, load_template
from runtime_api.template.document import parse
from template_projects import inline_function, line_number, private_cache, project  # noqa: F401 (an autouse fixture)

TEMPLATE = """
    AWSTemplateFormatVersion: 2010-09-09
    Parameters:
      Stage:
        Type: String
        Default: dev
        AllowedValues: [dev, prod]
      Seconds:
        Type: Number
        Default: 9
      Names:
        Type: CommaDelimitedList
        Default: "a, b ,c"
    Mappings:
      Stages:
        dev: {Memory: 512, Label: development, Timeout: 4}
        prod: {Memory: 1024, Label: production, Timeout: 6}
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      IsDev: !Not [!Condition IsProd]
      DevNine: !And [!Condition IsDev, !Equals [!Ref Seconds, 9]]
      ProdOrNine: !Or [!Condition IsProd, !Equals ["9", !Ref Seconds]]
    Resources:
      Table:
        Type: AWS::DynamoDB::Table
        Properties: {TableName: orders}
      Queue:
        Type: AWS::SQS::Queue
      Bucket:
        Type: AWS::S3::Bucket
      Role:
        Type: AWS::IAM::Role
        Properties: {AssumeRolePolicyDocument: {}}
      Api:
        Type: AWS::ApiGateway::RestApi
      Worker:
        Type: AWS::Lambda::Function
        Properties:
          FunctionName: !Sub "worker-${Stage}"
          Runtime: python3.12
          Handler: app.handler
          Code: {ZipFile: !Sub "# ${Stage}\\ndef handler(event, context):\\n    return event\\n"}
          Role: !GetAtt Role.Arn
          Timeout: !FindInMap [Stages, !Ref Stage, Timeout]
      Fn:
        Type: AWS::Lambda::Function
        Properties:
          Runtime: python3.12
          Handler: index.handler
          Code: {ZipFile: "def handler(event, context):\\n    return event\\n"}
          Role: !GetAtt Role.Arn
          MemorySize: !FindInMap [Stages, !Ref Stage, Memory]
          Timeout: !Ref Seconds
          Environment:
            Variables:
              REF_PARAMETER: !Ref Stage
              REF_NUMBER: !Ref Seconds
              REGION: !Ref AWS::Region
              ACCOUNT: !Ref AWS::AccountId
              PARTITION: !Ref AWS::Partition
              STACK_NAME: !Ref AWS::StackName
              STACK_ID: !Ref AWS::StackId
              URL_SUFFIX: !Ref AWS::URLSuffix
              SUB: !Sub "${Stage}-${AWS::Region}-${!Literal}"
              SUB_VARIABLES: !Sub ["${Prefix}/${Table}", {Prefix: !Ref Stage}]
              SUB_ATTRIBUTE: !Sub "${Worker.Arn}"
              GETATT_DOTTED: !GetAtt Worker.Arn
              GETATT_LIST: !GetAtt [Table, Arn]
              REF_FUNCTION: !Ref Worker
              JOIN: !Join ["+", !Ref Names]
              SELECT: !Select [1, !Ref Names]
              SPLIT: !Select [2, !Split ["/", "x/y/z"]]
              FIND_IN_MAP: !FindInMap [Stages, !Ref Stage, Label]
              IF: !If [IsProd, production-only, not-production]
              AND: !If [DevNine, dev-and-nine, neither]
              OR: !If [ProdOrNine, prod-or-nine, neither]
              BASE64: !Base64 hello
              AZ: !Select [0, !GetAZs ""]
              CIDR: !Select [1, !Cidr ["10.0.0.0/16", 3, 8]]
              NO_VALUE: !If [IsProd, only-in-production, !Ref AWS::NoValue]
              QUEUE: !Ref Queue
              QUEUE_ARN: !GetAtt Queue.Arn
              BUCKET: !Ref Bucket
              ROLE_ARN: !GetAtt Role.Arn
              API: !Ref Api
              NUMBER: 5
              BOOLEAN: true
              LONG_FORM: {"Fn::Join": ["", [{"Ref": "Stage"}, {"Fn::Sub": "-${Seconds}"}]]}
"""


def functions_of(path, **options) -> dict:
    stack = load_template(path, **options)
    assert [problem for problem in stack.problems if not problem.warning] == []
    return {function.name: function for function in stack.functions}


def test_every_intrinsic_function_short_and_long_form(tmp_path):
    functions = functions_of(project(tmp_path, TEMPLATE))
    env = functions["Fn"].env
    worker_arn = "arn:aws:lambda:us-east-1:123456789012:function:worker-dev"
    assert env == {
        "REF_PARAMETER": "dev", "REF_NUMBER": "9", "REGION": "us-east-1", "ACCOUNT": "123456789012",
        "PARTITION": "aws", "STACK_NAME": "local", "STACK_ID": env["STACK_ID"], "URL_SUFFIX": "amazonaws.com",
        "SUB": "dev-us-east-1-${Literal}", "SUB_VARIABLES": "dev/orders", "SUB_ATTRIBUTE": worker_arn,
        "GETATT_DOTTED": worker_arn, "GETATT_LIST": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
        "REF_FUNCTION": "worker-dev", "JOIN": "a+b+c", "SELECT": "b", "SPLIT": "z", "FIND_IN_MAP": "development",
        "IF": "not-production", "AND": "dev-and-nine", "OR": "prod-or-nine",
        "BASE64": base64.b64encode(b"hello").decode(), "AZ": "us-east-1a", "CIDR": "10.0.1.0/24",
        "QUEUE": "https://sqs.us-east-1.amazonaws.com/123456789012/Queue",
        "QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:Queue", "BUCKET": "bucket",
        "ROLE_ARN": "arn:aws:iam::123456789012:role/Role", "API": "Api", "NUMBER": "5", "BOOLEAN": "true",
        "LONG_FORM": "dev-9",
    }
    assert env["STACK_ID"].startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/local/")
    assert (functions["Fn"].memory, functions["Fn"].timeout) == (512, 9.0)  # from a mapping, from a Number
    assert functions["Worker"].timeout == 4.0  # a Timeout from a mapping
    assert functions["Worker"].aliases == ["worker-dev"]


def test_parameter_overrides_change_what_depends_on_them(tmp_path):
    functions = functions_of(project(tmp_path, TEMPLATE),
                             parameter_overrides={"Stage": "prod", "Seconds": "12", "Names": "x,y"})
    env = functions["Fn"].env
    assert (env["IF"], env["AND"], env["OR"], env["NO_VALUE"]) == ("production-only", "neither", "prod-or-nine",
                                                                    "only-in-production")
    assert (env["JOIN"], env["SELECT"], env["REF_NUMBER"]) == ("x+y", "y", "12")
    assert (functions["Fn"].memory, functions["Fn"].timeout, functions["Worker"].timeout) == (1024, 12.0, 6.0)
    assert functions["Worker"].aliases == ["worker-prod"]
    assert (Path(functions["Worker"].code) / "index.py").read_text().startswith("# prod")


def test_region_account_and_stack_name_are_the_pseudo_parameters(tmp_path):
    functions = functions_of(project(tmp_path, TEMPLATE), region="cn-north-1", account_id="210987654321",
                             stack_name="shop")
    env = functions["Fn"].env
    assert (env["REGION"], env["ACCOUNT"], env["PARTITION"], env["URL_SUFFIX"], env["STACK_NAME"]) == (
        "cn-north-1", "210987654321", "aws-cn", "amazonaws.com.cn", "shop")
    assert env["GETATT_DOTTED"] == "arn:aws-cn:lambda:cn-north-1:210987654321:function:worker-dev"
    assert (functions["Fn"].region, functions["Fn"].account_id) == ("cn-north-1", "210987654321")


def test_the_same_template_in_json_reads_the_same(tmp_path):
    from_yaml = functions_of(project(tmp_path / "yaml", TEMPLATE))
    document = parse((tmp_path / "yaml" / "template.yaml").read_text(), "template.yaml")
    text = json.dumps(document, indent=2)  # the long forms of the short tags
    path = project(tmp_path / "json", text, name="template.json")
    from_json = functions_of(path)
    for name in from_yaml:
        assert from_json[name].env == from_yaml[name].env
        assert (from_json[name].memory, from_json[name].timeout) == (from_yaml[name].memory, from_yaml[name].timeout)
    line = text.splitlines().index('    "Fn": {') + 1
    assert from_json["Fn"].source == f"{path}:{line}"


def test_a_condition_removes_a_function_and_what_only_it_needs(tmp_path):
    path = project(tmp_path, "\n".join([
        "Parameters:", "  Stage: {Type: String, Default: dev}",
        "Conditions:", "  IsProd: !Equals [!Ref Stage, prod]",
        "Resources:", inline_function("Always"),
        inline_function("ProdOnly", condition="IsProd").replace(
            'ZipFile: "def handler(event, context): return 1"', "S3Bucket: only-in-aws, S3Key: code.zip")]))
    stack = load_template(path)
    assert [function.name for function in stack.functions] == ["Always"]
    assert stack.problems == []  # its S3 code is never asked for
    stack = load_template(path, parameter_overrides={"Stage": "prod"})
    assert [function.name for function in stack.functions] == ["Always"]
    assert [(problem.function, "s3://only-in-aws/code.zip" in problem.message) for problem in stack.problems] == [
        ("ProdOnly", True)]


def test_a_parameter_is_checked_against_its_type_and_constraints(tmp_path):
    path = project(tmp_path, "\n".join([
        "Parameters:",
        "  Name:", "    Type: String", "    Default: ok", '    AllowedPattern: "[a-z]+"', "    MinLength: 2",
        "    MaxLength: 5",
        "  Size:", "    Type: Number", "    Default: 5", "    MinValue: 1", "    MaxValue: 10",
        "Resources:", inline_function("Fn", Environment="{Variables: {NAME: !Ref Name, SIZE: !Ref Size}}")]))
    assert functions_of(path, parameter_overrides={"Name": "abcde", "Size": "10"})["Fn"].env == {
        "NAME": "abcde", "SIZE": "10"}
    for overrides, why in (({"Name": "ABC"}, "'ABC' does not match its AllowedPattern [a-z]+"),
                           ({"Name": "a"}, "'a' is 1 characters, outside its MinLength 2"),
                           ({"Name": "abcdef"}, "'abcdef' is 6 characters, outside its MaxLength 5"),
                           ({"Size": "11"}, "11 is outside its MaxValue 10"),
                           ({"Size": "0"}, "0 is outside its MinValue 1"),
                           ({"Size": "five"}, "'five' is not a number (its Type is Number)")):
        with pytest.raises(TemplateError) as raised:
            load_template(path, parameter_overrides=overrides)
        name = next(iter(overrides))
        line = 2 if name == "Name" else 8
        assert str(raised.value) == f"{path}:{line}: parameter {name}: {why}"


def test_unavailable_offline_is_a_problem_for_the_functions_that_need_it(tmp_path):
    path = project(tmp_path, "\n".join([
        "Parameters:", "  Version:", "    Type: AWS::SSM::Parameter::Value<String>", "    Default: /app/version",
        "Resources:", "  Api:", "    Type: AWS::ApiGateway::RestApi",
        inline_function("Fine", Environment="{Variables: {API: !Ref Api}}"),
        inline_function("Imports", Environment="{Variables: {TABLE: !ImportValue shared-table}}"),
        inline_function("ReadsSsm", Environment="{Variables: {VERSION: !Ref Version}}"),
        inline_function("Dynamic", Environment='{Variables: {SECRET: "{{resolve:secretsmanager:db:SecretString:'
                                               'password}}"}}'),
        inline_function("RootId", Environment="{Variables: {ROOT: !GetAtt Api.RootResourceId}}")]))

    def line(name: str) -> int:
        return line_number(path, "      Role: arn:aws:iam::123456789012:role/r", f"  {name}:") + 1

    stack = load_template(path)
    assert [function.name for function in stack.functions] == ["Fine"]
    assert stack.functions[0].env == {"API": "Api"}  # Ref of an unknown type: its logical id
    assert [str(problem) for problem in stack.problems] == [
        f"{path}:{line('Imports')}: function Imports: Environment.Variables.TABLE: Fn::ImportValue shared-table: another "
        "stack's export is not available offline (or give it with --env-vars)",
        f"{path}:{line('ReadsSsm')}: function ReadsSsm: Environment.Variables.VERSION: parameter Version is read from the SSM "
        "parameter /app/version, which is not available offline: give its value with --parameter-overrides "
        "Version=VALUE (or give it with --env-vars)",
        f"{path}:{line('Dynamic')}: function Dynamic: Environment.Variables.SECRET: the dynamic reference in "
        "'{{resolve:secretsmanager:db:SecretString:password}}' is resolved by AWS (Parameter Store, Secrets "
        "Manager) and is not available offline (or give it with --env-vars)",
        f"{path}:{line('RootId')}: function RootId: Environment.Variables.ROOT: Fn::GetAtt Api.RootResourceId: the attributes "
        "of a AWS::ApiGateway::RestApi are known only once AWS has created it (or give it with --env-vars)",
    ]
    # What only AWS has, given here: an SSM parameter's value by override, a variable by --env-vars.
    stack = load_template(path, parameter_overrides={"Version": "1.2"},
                          env_vars={"Imports": {"TABLE": "local-table"}, "Parameters": {"SECRET": "s3cret"}})
    configured = {function.name: function.env for function in stack.functions}
    assert (configured["Imports"], configured["ReadsSsm"], configured["Dynamic"]) == (
        {"TABLE": "local-table"}, {"VERSION": "1.2"}, {"SECRET": "s3cret"})
