"""A real CDK app (aws-cdk-lib from PyPI, run on Node.js through jsii), synthesised into cdk.out/,
and its template read as lambdalet serves it: functions and layers found through their assets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime_api.template import load_template
from template_projects import HANDLER, private_cache  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="aws-cdk-lib runs on Node.js (through jsii), and there is no node here")

APP = """
    import aws_cdk as cdk
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_lambda as lambda_

    # What the CDK CLI's `cdk synth` asks for: each asset named in its resource's Metadata.
    app = cdk.App(outdir="cdk.out", context={"aws:cdk:enable-asset-metadata": True})
    stack = cdk.Stack(app, "Shop")
    layer = lambda_.LayerVersion(stack, "Shared", code=lambda_.Code.from_asset("layer"))
    orders = lambda_.Function(
        stack, "Orders", runtime=lambda_.Runtime.PYTHON_3_12, handler="app.handler",
        code=lambda_.Code.from_asset("orders"), timeout=cdk.Duration.seconds(7), memory_size=256,
        environment={"GREETING": "hello"}, layers=[layer], function_name="shop-orders",
        architecture=lambda_.Architecture.ARM_64)
    lambda_.Alias(stack, "Live", alias_name="live", version=orders.current_version,
                  provisioned_concurrent_executions=2)
    lambda_.Function(
        stack, "Notify", runtime=lambda_.Runtime.NODEJS_20_X, handler="index.handler",
        code=lambda_.Code.from_inline("exports.handler = async () => 'sent';"),
        environment={"ORDERS_ARN": orders.function_arn, "ORDERS_NAME": orders.function_name})
    lambda_.DockerImageFunction(
        stack, "Report", code=lambda_.DockerImageCode.from_ecr(
            ecr.Repository.from_repository_name(stack, "Images", "reports")))
    app.synth()
"""


@pytest.fixture(scope="module")
def cdk_out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cdk-app")
    (root / "app.py").write_text(textwrap.dedent(APP))
    (root / "orders").mkdir()
    (root / "orders" / "app.py").write_text(HANDLER)
    (root / "layer" / "python").mkdir(parents=True)
    (root / "layer" / "python" / "shared.py").write_text("VALUE = 1\n")
    environment = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    done = subprocess.run([sys.executable, "app.py"], cwd=root, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return root / "cdk.out"


def check(stack, cdk_out: Path) -> None:
    functions = {function.name.rstrip("0123456789ABCDEF"): function for function in stack.functions}
    assert sorted(functions) == ["Notify", "Orders", "Report"]
    orders, notify, report = functions["Orders"], functions["Notify"], functions["Report"]
    assert Path(orders.code).parent == cdk_out and (Path(orders.code) / "app.py").read_text() == HANDLER
    assert [(Path(layer).parent, (Path(layer) / "python" / "shared.py").is_file()) for layer in orders.layers] == [
        (cdk_out, True)]
    assert (orders.handler, orders.runtime_id, orders.timeout, orders.memory) == ("app.handler", "python3.12", 7, 256)
    assert (orders.env, orders.aliases, orders.architectures, orders.provisioned) == (
        {"GREETING": "hello"}, ["shop-orders"], ["arm64"], 2)
    assert notify.env == {"ORDERS_ARN": "arn:aws:lambda:us-east-1:123456789012:function:shop-orders",
                          "ORDERS_NAME": "shop-orders"}
    assert (Path(notify.code) / "index.js").read_text() == "exports.handler = async () => 'sent';"
    assert report.package_type == "Image"
    assert stack.problems == []
    assert orders.code in stack.watched and orders.layers[0] in stack.watched


def test_a_cdk_app_is_read_through_its_asset_metadata(cdk_out):
    check(load_template(cdk_out / "Shop.template.json"), cdk_out)


def test_without_asset_metadata_the_asset_manifest_says_where_each_asset_is(cdk_out, tmp_path):
    # `app.synth()` run without the CDK CLI writes no Metadata; cdk.out's asset manifest has them all.
    copied = tmp_path / "cdk.out"
    shutil.copytree(cdk_out, copied, symlinks=True)
    template = json.loads((copied / "Shop.template.json").read_text())
    for resource in template["Resources"].values():
        resource.pop("Metadata", None)
    (copied / "Shop.template.json").write_text(json.dumps(template, indent=1))
    check(load_template(copied / "Shop.template.json"), copied)
