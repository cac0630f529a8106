"""SAM templates read as `sam deploy` would deploy them: the transform's Globals and resource types,
every function property lambdalet honours, code from directories, archives and inline, layers,
nested stacks, and `--env-vars`."""

from __future__ import annotations

import os
from pathlib import Path

from runtime_api.template import load_template
from template_projects import HANDLER, private_cache, project, zip_of  # noqa: F401 (an autouse fixture)


def by_name(stack) -> dict:
    return {function.name: function for function in stack.functions}


def test_globals_merge_as_sam_merges_them(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function:
            Runtime: python3.12
            Handler: app.handler
            Timeout: 10
            MemorySize: 256
            Layers: [arn:aws:lambda:us-east-1:111111111111:layer:global:1]
            Environment:
              Variables: {STAGE: dev, SHARED: global}
        Resources:
          Inherits:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
          Overrides:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Timeout: 20
              Layers: [arn:aws:lambda:us-east-1:111111111111:layer:own:1]
              Environment:
                Variables: {SHARED: own, EXTRA: "1"}
        """, {"src/app.py": HANDLER})
    layers = {"arn:aws:lambda:us-east-1:111111111111:layer:global:1": tmp_path / "global",
              "arn:aws:lambda:us-east-1:111111111111:layer:own:1": tmp_path / "own"}
    for directory in layers.values():
        directory.mkdir()
    functions = by_name(load_template(path, layer_map={arn: str(directory) for arn, directory in layers.items()}))
    inherits, overrides = functions["Inherits"], functions["Overrides"]
    assert (inherits.timeout, inherits.memory, inherits.handler, inherits.runtime_id) == (10, 256, "app.handler",
                                                                                        "python3.12")
    assert inherits.env == {"STAGE": "dev", "SHARED": "global"}
    assert inherits.layers == [str(tmp_path / "global")]
    # A scalar is replaced, a mapping merged key by key, a list appended to the global one.
    assert (overrides.timeout, overrides.memory) == (20, 256)
    assert overrides.env == {"STAGE": "dev", "SHARED": "own", "EXTRA": "1"}
    assert overrides.layers == [str(tmp_path / "global"), str(tmp_path / "own")]
    assert inherits.code == overrides.code == str(tmp_path / "src")


def test_every_function_property_lambdalet_honours(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Everything:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.13
              FunctionName: everything-fn
              MemorySize: 1024
              Timeout: 30
              EphemeralStorage: {Size: 2048}
              Architectures: [arm64]
              ReservedConcurrentExecutions: 4
              AutoPublishAlias: live
              ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 2}
              SnapStart: {ApplyOn: PublishedVersions}
              LoggingConfig: {LogFormat: JSON, ApplicationLogLevel: DEBUG, SystemLogLevel: WARN}
              Environment:
                Variables: {GREETING: hello}
          PerTenant:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              TenancyConfig: {TenantIsolationMode: PER_TENANT}
          ManyProvisioned:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              AutoPublishAlias: live
              ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 25}
          Image:
            Type: AWS::Serverless::Function
            Properties:
              PackageType: Image
              ImageUri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest
        """, {"src/app.py": HANDLER})
    stack = load_template(path)
    assert stack.problems == []
    functions = by_name(stack)
    everything = functions["Everything"]
    assert (everything.handler, everything.runtime_id, everything.code) == ("app.handler", "python3.13",
                                                                            str(tmp_path / "src"))
    assert (everything.memory, everything.timeout, everything.ephemeral_storage) == (1024, 30.0, 2048)
    assert (everything.architectures, everything.concurrency, everything.provisioned) == (["arm64"], 4, 2)
    assert everything.snapstart is True
    assert (everything.log_format, everything.application_log_level, everything.system_log_level) == (
        "JSON", "DEBUG", "WARN")
    assert (everything.aliases, everything.env) == (["everything-fn"], {"GREETING": "hello"})
    assert everything.source == f"{path}:3"
    assert functions["PerTenant"].tenancy == "PER_TENANT"
    assert (functions["PerTenant"].concurrency, functions["PerTenant"].provisioned) == (10, 0)  # the defaults
    assert (functions["PerTenant"].timeout, functions["PerTenant"].memory) == (3.0, 128)
    # No reservation: the account's unreserved concurrency holds all its provisioned environments.
    assert (functions["ManyProvisioned"].concurrency, functions["ManyProvisioned"].provisioned) == (25, 25)
    assert functions["Image"].package_type == "Image"
    assert functions["Everything"].package_type == "Zip"
    assert str(tmp_path / "template.yaml") in stack.watched and str(tmp_path / "src") in stack.watched


def test_code_from_a_zip_is_extracted_once_per_content(tmp_path, private_cache):
    archive = zip_of(tmp_path / "build" / "function.zip", {"app.py": HANDLER, "bin/tool": "#!/bin/sh\n"},
                     modes={"bin/tool": 0o755})
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Zipped:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: build/function.zip
              Handler: app.handler
              Runtime: python3.12
        """)
    first = load_template(path)
    code = Path(first.functions[0].code)
    assert code.parent == private_cache / "code"
    assert (code / "app.py").read_text() == HANDLER
    assert os.access(code / "bin" / "tool", os.X_OK) and not os.access(code / "app.py", os.X_OK)
    assert str(archive) in first.watched
    assert load_template(path).functions[0].code == str(code)  # the same bytes: the same directory
    zip_of(archive, {"app.py": HANDLER + "# changed\n"})
    changed = Path(load_template(path).functions[0].code)
    assert changed != code and (changed / "app.py").read_text().endswith("# changed\n")


def test_inline_code_is_written_as_lambda_names_it(tmp_path, private_cache):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          InPython:
            Type: AWS::Serverless::Function
            Properties:
              InlineCode: "def handler(event, context):\\n    return 'python'\\n"
              Handler: index.handler
              Runtime: python3.12
          InNode:
            Type: AWS::Serverless::Function
            Properties:
              InlineCode: "exports.handler = async () => 'node';"
              Handler: index.handler
              Runtime: nodejs20.x
          InRuby:
            Type: AWS::Serverless::Function
            Properties:
              InlineCode: "def handler(event:, context:) end"
              Handler: index.handler
              Runtime: ruby3.3
        """)
    stack = load_template(path)
    functions = by_name(stack)
    python, node = Path(functions["InPython"].code), Path(functions["InNode"].code)
    assert [entry.name for entry in python.iterdir()] == ["index.py"]
    assert (python / "index.py").read_text() == "def handler(event, context):\n    return 'python'\n"
    assert [entry.name for entry in node.iterdir()] == ["index.js"]
    assert python.parent == private_cache / "inline"
    assert [str(problem) for problem in stack.problems] == [
        f"{path}:18: function InRuby: inline code (ZipFile) is taken for Node.js and Python runtimes only, "
        "not ruby3.3"]


def test_layers_local_zipped_and_by_arn(tmp_path):
    zip_of(tmp_path / "zipped-layer.zip", {"python/zipped.py": "VALUE = 1\n"})
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Uses:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Layers:
                - !Ref Shared
                - !Ref Zipped
                - !GetAtt Raw.LayerVersionArn
                - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7
                - arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:3
          Shared:
            Type: AWS::Serverless::LayerVersion
            Properties:
              ContentUri: shared/
          Zipped:
            Type: AWS::Serverless::LayerVersion
            Properties:
              LayerName: zipped-layer
              ContentUri: zipped-layer.zip
          Raw:
            Type: AWS::Lambda::LayerVersion
            Metadata: {aws:asset:path: raw-layer, aws:asset:property: Content}
            Properties:
              Content: {S3Bucket: assets, S3Key: raw.zip}
        """, {"src/app.py": HANDLER, "shared/python/shared.py": "", "raw-layer/bin/tool": ""})
    powertools = tmp_path / "powertools"
    (powertools / "python").mkdir(parents=True)
    stack = load_template(path, layer_map={
        "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7": str(powertools)})
    (uses,) = stack.functions
    assert len(uses.layers) == 4  # in the template's order; the last one only AWS has
    assert uses.layers[0] == str(tmp_path / "shared")
    assert (Path(uses.layers[1]) / "python" / "zipped.py").read_text() == "VALUE = 1\n"
    assert uses.layers[2:] == [str(tmp_path / "raw-layer"), str(powertools)]
    assert [(problem.warning, str(problem)) for problem in stack.problems] == [(True, (
        f"{path}:14: function Uses: layer arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:3 is not "
        "available offline: the function runs without it (give its directory with --layer-map ARN=DIR)"))]
    assert {str(tmp_path / "shared"), str(tmp_path / "zipped-layer.zip"), str(tmp_path / "raw-layer"),
            str(powertools)} <= set(stack.watched)


def test_nested_stacks_by_application_and_by_cloudformation_stack(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Parameters:
          Stage: {Type: String, Default: dev}
        Resources:
          Orders:
            Type: AWS::Serverless::Application
            Properties:
              Location: orders/template.yaml
              Parameters:
                Stage: !Ref Stage
                Seconds: 8
          Payments:
            Type: AWS::CloudFormation::Stack
            Properties:
              TemplateURL: payments.yaml
              Parameters:
                OrdersArn: !GetAtt Orders.Outputs.FunctionArn
          Front:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Environment:
                Variables:
                  ORDERS: !GetAtt Orders.Outputs.FunctionName
                  PAYMENTS: !GetAtt Payments.Outputs.Queue
          Remote:
            Type: AWS::CloudFormation::Stack
            Properties:
              TemplateURL: https://s3.amazonaws.com/bucket/remote.yaml
          FromRepository:
            Type: AWS::Serverless::Application
            Properties:
              Location:
                ApplicationId: arn:aws:serverlessrepo:us-east-1:123456789012:applications/thumbnails
                SemanticVersion: 1.0.0
        """, {
            "src/app.py": HANDLER, "orders/src/app.py": HANDLER,
            "orders/template.yaml": """Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String}
  Seconds: {Type: Number}
Resources:
  TakeOrder:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "take-order-${Stage}"
      CodeUri: src
      Handler: app.handler
      Runtime: python3.12
      Timeout: !Ref Seconds
      Environment:
        Variables: {STACK: !Ref "AWS::StackName"}
Outputs:
  FunctionArn: {Value: !GetAtt TakeOrder.Arn}
  FunctionName: {Value: !Ref TakeOrder}
""",
            "payments.yaml": """Parameters:
  OrdersArn: {Type: String}
Resources:
  Queue: {Type: AWS::SQS::Queue, Properties: {QueueName: payments}}
  Pay:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Code: {ZipFile: "def handler(event, context): return 1"}
      Role: arn:aws:iam::123456789012:role/r
      Environment: {Variables: {ORDERS_ARN: !Ref OrdersArn}}
Outputs:
  Queue: {Value: !Ref Queue}
""",
        })
    stack = load_template(path, env_vars={"Orders/TakeOrder": {"STACK": "by-path"}})
    functions = by_name(stack)
    assert sorted(functions) == ["Front", "Pay", "TakeOrder"]
    take_order = functions["TakeOrder"]
    assert (take_order.aliases, take_order.timeout, take_order.code) == (["take-order-dev"], 8.0,
                                                                          str(tmp_path / "orders" / "src"))
    assert take_order.env == {"STACK": "by-path"}
    assert take_order.source == f"{tmp_path / 'orders' / 'template.yaml'}:6"
    assert functions["Pay"].env == {
        "ORDERS_ARN": "arn:aws:lambda:us-east-1:123456789012:function:take-order-dev"}
    assert functions["Front"].env == {"ORDERS": "take-order-dev",
                                      "PAYMENTS": "https://sqs.us-east-1.amazonaws.com/123456789012/payments"}
    assert [(problem.warning, str(problem)) for problem in stack.problems] == [(True, (
        f"{path}:29: AWS::CloudFormation::Stack Remote is left out: its template is at "
        "https://s3.amazonaws.com/bucket/remote.yaml, which is not available offline: its functions are not "
        "served")), (True, (
        f"{path}:32: AWS::CloudFormation::Stack FromRepository is left out: "
        "arn:aws:serverlessrepo:us-east-1:123456789012:applications/thumbnails of the Serverless Application "
        "Repository is not available offline: its functions are not served"))]
    assert {str(tmp_path / "orders" / "template.yaml"), str(tmp_path / "payments.yaml")} <= set(stack.watched)
    without_child = load_template(path, env_vars={"TakeOrder": {"STACK": "by-id"}})
    assert by_name(without_child)["TakeOrder"].env == {"STACK": "by-id"}
    # The child's own stack name is its parent's and its logical id, as CloudFormation names it.
    assert by_name(load_template(path))["TakeOrder"].env == {"STACK": "local-Orders"}


def test_env_vars_override_the_template_variables(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Environment:
              Variables: {TABLE: prod-table, STAGE: prod, LEVEL: info}
        Resources:
          ById:
            Type: AWS::Serverless::Function
          ByName:
            Type: AWS::Serverless::Function
            Properties:
              FunctionName: by-name
          Untouched:
            Type: AWS::Serverless::Function
            Properties:
              Environment:
                Variables: {OWN: !ImportValue only-in-aws}
        """, {"src/app.py": HANDLER})
    env_vars = {
        "Parameters": {"STAGE": "local", "LEVEL": "debug", "NOT_DECLARED": "ignored"},
        "ById": {"TABLE": "local-table", "LEVEL": 5},
        "by-name": {"TABLE": "named-table"},
        "Untouched": {"OWN": "given"},
    }
    from runtime_api.template import load_env_vars
    (tmp_path / "env.json").write_text(__import__("json").dumps(env_vars))
    functions = by_name(load_template(path, env_vars=load_env_vars(tmp_path / "env.json")))
    assert functions["ById"].env == {"TABLE": "local-table", "STAGE": "local", "LEVEL": "5"}
    assert functions["ByName"].env == {"TABLE": "named-table", "STAGE": "local", "LEVEL": "debug"}
    assert functions["Untouched"].env == {"TABLE": "prod-table", "STAGE": "local", "LEVEL": "debug", "OWN": "given"}


def test_warnings_leave_the_function_configured(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          NoModule:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: missing.handler
              Runtime: python3.12
              FileSystemConfigs:
                - Arn: arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-1
                  LocalMountPath: /mnt/efs
          NodeModule:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: lib/index.handler
              Runtime: nodejs20.x
          Custom:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: bootstrap
              Runtime: provided.al2023
          InLayer:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: vendored.handler
              Runtime: python3.12
              Layers: [!Ref Deps]
          Deps:
            Type: AWS::Serverless::LayerVersion
            Properties:
              ContentUri: deps
        """, {"src/app.py": HANDLER, "src/lib/index.mjs": "export const handler = async () => 1;\n",
              "deps/python/lib/python3.12/site-packages/vendored/__init__.py": HANDLER})
    stack = load_template(path)
    assert sorted(by_name(stack)) == ["Custom", "InLayer", "NoModule", "NodeModule"]
    assert [(problem.warning, str(problem)) for problem in stack.problems] == [
        (True, f"{path}:9: function NoModule: FileSystemConfigs is ignored: EFS file systems are not mounted here"),
        (True, f"{path}:7: function NoModule: Handler missing.handler: no module missing (missing.py) in "
               f"{tmp_path / 'src'}: invoking it fails with Runtime.ImportModuleError"),
    ]


def test_one_name_serves_one_function(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
        Resources:
          First:
            Type: AWS::Serverless::Function
            Properties: {FunctionName: shared-name}
          Second:
            Type: AWS::Serverless::Function
            Properties: {FunctionName: First}
        """, {"src/app.py": HANDLER})
    stack = load_template(path)
    assert [function.name for function in stack.functions] == ["First"]
    assert [str(problem) for problem in stack.problems] == [
        f"{path}:8: function Second: the name First is already First at {path}:5's: a function is served by its "
        "logical id and its FunctionName, so these must be unique"]


def test_a_resource_sam_refuses_is_left_out_and_what_needs_it_is_a_problem(tmp_path):
    path = project(tmp_path, """
        Transform: [AWS::Serverless-2016-10-31, AWS::LanguageExtensions]
        Globals:
          Function: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
        Resources:
          Api:
            Type: AWS::Serverless::Api
            Properties: {StageName: [not, a, name]}
          NeedsApi:
            Type: AWS::Serverless::Function
            Properties:
              Environment: {Variables: {API: !Ref Api}}
          Independent:
            Type: AWS::Serverless::Function
        """, {"src/app.py": HANDLER})
    stack = load_template(path)
    assert [function.name for function in stack.functions] == ["Independent"]
    assert [(problem.warning, str(problem)) for problem in stack.problems] == [
        (True, f"{path}:1: the transform AWS::LanguageExtensions is not run: lambdalet runs only the SAM transform, "
               "offline"),
        (True, f"{path}:5: AWS::Serverless::Api Api is left out: the SAM transform refuses it: Type of property "
               "'StageName' is invalid."),
        (False, f"{path}:11: function NeedsApi: Environment.Variables.API: Api is left out: Type of property "
                "'StageName' is invalid. (or give it with --env-vars)"),
    ]


def test_durable_config_makes_a_durable_function(tmp_path):
    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Workflow:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.13
              DurableConfig:
                ExecutionTimeout: 3600
                RetentionPeriodInDays: 7
          Defaults:
            Type: AWS::Lambda::Function
            Properties:
              Code: {ZipFile: "def handler(event, context): return 1"}
              Handler: index.handler
              Runtime: python3.13
              DurableConfig: {}
          Plain:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.13}
        """, {"src/app.py": HANDLER})
    stack = load_template(path)
    functions = by_name(stack)
    assert (functions["Workflow"].durable.execution_timeout, functions["Workflow"].durable.retention_days) == (3600, 7)
    assert (functions["Defaults"].durable.execution_timeout, functions["Defaults"].durable.retention_days) == (86400, 14)
    assert functions["Plain"].durable is None
    assert not [problem for problem in stack.problems if "DurableConfig" in str(problem)]
