"""What `Ref` and `Fn::GetAtt` give for a resource, offline.

Nothing here was created in AWS, so a resource's physical name is the one its template gives it
(`FunctionName`, `TableName`, `QueueName`...) or else its logical id, and its ARNs and URLs are
made from that name, the stack's region and account, in the format AWS uses. So `!Ref MyFunction`
names the function as lambdalet serves it and `!GetAtt MyFunction.Arn` is an ARN boto3 can invoke it
by; `!Ref MyTable` is `MyTable`, the name to give a local DynamoDB. For a resource type not in the
table below, `Ref` gives the logical id (as `sam local` does) and `Fn::GetAtt` is unresolved: an
attribute only AWS knows, such as an API's generated id, makes the function that needs it a problem.
A nested stack's `Outputs.Name` is that stack's output, evaluated in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .document import line_of
from .errors import Unresolved
from .parameters import stack_id
from .sam import UNTRANSFORMED

if TYPE_CHECKING:
    from .intrinsics import Evaluator

def _arn(service: str, resource: str) -> str:
    return f"arn:{{partition}}:{service}:{{region}}:{{account}}:{resource}"


_FUNCTION_ARN = _arn("lambda", "function:{name}")
_LAYER_ARN = _arn("lambda", "layer:{name}:1")  # the first version of a layer
_QUEUE_URL = "https://sqs.{region}.{suffix}/{account}/{name}"

# Type: (the property naming it, what Ref gives, {attribute: what Fn::GetAtt gives}).
_KINDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "AWS::Lambda::Function": ("FunctionName", "{name}", {"Arn": _FUNCTION_ARN}),
    "AWS::Lambda::LayerVersion": ("LayerName", _LAYER_ARN, {"LayerVersionArn": _LAYER_ARN}),
    "AWS::IAM::Role": ("RoleName", "{name}", {"Arn": "arn:{partition}:iam::{account}:role/{name}"}),
    "AWS::S3::Bucket": ("BucketName", "{name}", {
        "Arn": "arn:{partition}:s3:::{name}", "DomainName": "{name}.s3.{suffix}",
        "RegionalDomainName": "{name}.s3.{region}.{suffix}"}),
    "AWS::DynamoDB::Table": ("TableName", "{name}", {
        "Arn": _arn("dynamodb", "table/{name}"),
        "StreamArn": _arn("dynamodb", "table/{name}/stream/1970-01-01T00:00:00.000")}),
    "AWS::SQS::Queue": ("QueueName", _QUEUE_URL, {
        "Arn": _arn("sqs", "{name}"), "QueueName": "{name}", "QueueUrl": _QUEUE_URL}),
    "AWS::SNS::Topic": ("TopicName", _arn("sns", "{name}"), {"TopicArn": _arn("sns", "{name}"),
                                                             "TopicName": "{name}"}),
    "AWS::Logs::LogGroup": ("LogGroupName", "{name}", {"Arn": _arn("logs", "log-group:{name}:*")}),
    "AWS::Kinesis::Stream": ("Name", "{name}", {"Arn": _arn("kinesis", "stream/{name}")}),
    "AWS::Events::EventBus": ("Name", "{name}", {"Arn": _arn("events", "event-bus/{name}"), "Name": "{name}"}),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", _arn("states", "stateMachine:{name}"), {
        "Arn": _arn("states", "stateMachine:{name}"), "Name": "{name}"}),
}


def reference(evaluator: Evaluator, logical_id: str, attribute: str | None, line: int | None) -> object:
    """`Ref` (attribute None) or `Fn::GetAtt` of resource `logical_id` of the evaluator's stack."""
    resource = evaluator.resources[logical_id]
    kind = resource["Type"]
    if kind == UNTRANSFORMED:
        raise Unresolved(f"{logical_id} is left out: {resource['Properties']['Problem']}", line)
    if kind == "AWS::CloudFormation::Stack":
        return _nested_stack(evaluator, logical_id, attribute, line)
    if kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
        return _published(evaluator, logical_id, attribute, line)
    known = _KINDS.get(kind)
    if known is None:
        if attribute is None:
            return logical_id
        raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: the attributes of a {kind} are known only "
                         "once AWS has created it", line)
    name_property, ref_format, attributes = known
    if attribute is not None and attribute not in attributes:
        raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: not an attribute lambdalet knows offline of a "
                         f"{kind} (it knows {', '.join(sorted(attributes))})", line)
    name = physical_name(evaluator, logical_id, name_property)
    if kind == "AWS::S3::Bucket" and name == logical_id:
        name = name.lower()  # bucket names are lower case
    return _format(evaluator, ref_format if attribute is None else attributes[attribute], name)


def physical_name(evaluator: Evaluator, logical_id: str, name_property: str = "FunctionName") -> str:
    """The name a resource gives itself in its template, or its logical id."""
    properties = evaluator.resources[logical_id].get("Properties")
    if isinstance(properties, dict) and name_property in properties:
        return evaluator.text(properties[name_property], line_of(properties, name_property), name_property)
    return logical_id


def function_arn(evaluator: Evaluator, name: str) -> str:
    return name if name.startswith("arn:") else _format(evaluator, _FUNCTION_ARN, name)


def _format(evaluator: Evaluator, text: str, name: str) -> str:
    pseudo = evaluator.pseudo
    return text.format(partition=pseudo["AWS::Partition"], region=pseudo["AWS::Region"],
                       account=pseudo["AWS::AccountId"], suffix=pseudo["AWS::URLSuffix"], name=name)


def _published(evaluator: Evaluator, logical_id: str, attribute: str | None, line: int | None) -> str:
    """A function's version ("1", the first one published) or alias."""
    resource = evaluator.resources[logical_id]
    properties = resource.get("Properties") or {}
    if "FunctionName" not in properties:
        raise Unresolved(f"{logical_id} names no FunctionName", line)
    arn = function_arn(evaluator, evaluator.text(properties["FunctionName"], line_of(properties, "FunctionName", line),
                                                 "FunctionName"))
    if resource["Type"] == "AWS::Lambda::Version":
        answers = {None: f"{arn}:1", "Version": "1", "FunctionArn": arn}
    else:
        alias = evaluator.text(properties.get("Name"), line_of(properties, "Name", line), "the alias's Name")
        answers = {None: f"{arn}:{alias}", "AliasArn": f"{arn}:{alias}"}
    if attribute not in answers:
        raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: not an attribute of a {resource['Type']}", line)
    return answers[attribute]


def _nested_stack(evaluator: Evaluator, logical_id: str, attribute: str | None, line: int | None) -> object:
    if attribute is None:
        pseudo = evaluator.pseudo
        return stack_id(pseudo["AWS::Region"], pseudo["AWS::AccountId"], f"{pseudo['AWS::StackName']}-{logical_id}")
    if not attribute.startswith("Outputs."):
        raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: a nested stack gives its Outputs.Name", line)
    return evaluator.nested[logical_id](attribute.removeprefix("Outputs."), line)
