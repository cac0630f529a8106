"""The SAM transform (`Transform: AWS::Serverless-2016-10-31`), run offline by AWS's own library,
aws-sam-translator: Globals with SAM's merge rules, and every `AWS::Serverless::*` resource
turned into the CloudFormation CloudFormation itself would make of it (a function's
`AutoPublishAlias` becomes an `AWS::Lambda::Alias` holding its provisioned concurrency, `InlineCode`
becomes `Code.ZipFile`, an `Application` becomes an `AWS::CloudFormation::Stack`...).

It runs where CloudFormation runs it: on the template as written, before any intrinsic function is
evaluated, with the parameter values (defaults, overrides and pseudo parameters) a transform is
given. What SAM resolves itself (a `Ref` to a parameter in `AutoPublishAlias`, a `CodeUri`) it
resolves; everything else stays for CloudFormation, that is for intrinsics.py, afterwards. So the
template means what it means in AWS, and one reader of `AWS::Lambda::Function` serves SAM and
plain CloudFormation (`cdk synth`) alike.

What would reach AWS is kept from it. Local paths in `CodeUri`, `ContentUri` and `DefinitionUri`
(which the library accepts only as S3 locations) go through as an S3 location in `LOCAL_BUCKET`
whose key is the path, and are read back as paths. An application of the Serverless Application
Repository is not fetched: it becomes a nested stack whose template is not available offline.
Managed policies are not looked up (a role's policies do not matter here). A resource the library
refuses is replaced by a placeholder and named in `failures`; the rest of the template is
transformed without it, and whatever refers to it becomes a problem.

The library (and boto3 with it) is imported only here, only for templates that need it: its
import is most of the time `load_template` takes.
"""

from __future__ import annotations

import copy
import re
import types

from .document import Mapping, Sequence, line_of
from .errors import TemplateError

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
LOCAL_BUCKET = "lambdalet-local-path"  # a path on this machine, where SAM wants an S3 location
UNTRANSFORMED = "Lambdalet::Untransformed"  # the placeholder of a resource SAM refused
REPOSITORY = "serverlessrepo://"  # the TemplateURL of an application of the Serverless Application Repository
_LOCAL_URIS = {
    "AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri", "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
_CAUSE = re.compile(r"resource with id \[([^\]]+)\]", re.IGNORECASE)


def needed(template: Mapping) -> bool:
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    resources = template.get("Resources")
    return SAM_TRANSFORM in transforms or (isinstance(resources, dict) and any(
        isinstance(resource, dict) and str(resource.get("Type", "")).startswith("AWS::Serverless::")
        for resource in resources.values()))


def transform(template: Mapping, parameter_values: dict[str, object], region: str,
              shown: str) -> tuple[Mapping, dict[str, str]]:
    """(the CloudFormation template, {logical id: why SAM refused it})."""
    try:
        from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
        from samtranslator.public.exceptions import InvalidDocumentException
        from samtranslator.public.parser import Parser
        from samtranslator.public.translator import Translator
    except ImportError:
        raise TemplateError(shown, template.lines.get("Transform"), "a SAM template needs the SAM transform, "
                            "aws-sam-translator: pip install 'lambdalet[sam]'") from None

    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError(shown, template.lines.get("Resources"), "has no Resources")
    for resource in resources.values():
        _keep_offline(resource)
    failures: dict[str, str] = {}
    # The library resolves pseudo parameters through a boto3 session's region; this stands in for
    # one, so that nothing is read from the user's AWS configuration.
    session = types.SimpleNamespace(region_name=region)
    while True:
        attempt = copy.deepcopy(template)  # the library changes what it is given
        # Its metrics go nowhere, and are "published" there, so that it does not warn of them at exit.
        metrics = Metrics(metrics_publisher=DummyMetricsPublisher())
        try:
            translated = Translator(None, Parser(), plugins=[_local_paths()], boto_session=session,
                                    metrics=metrics).translate(attempt, parameter_values=dict(parameter_values),
                                                               get_managed_policy_map=dict)
        except InvalidDocumentException as exc:
            refused = {}
            for cause in exc.causes:
                logical_id = _refused(cause.message, resources)
                if logical_id is None or logical_id in failures:
                    line = line_of(resources, logical_id) if logical_id else None
                    raise TemplateError(shown, line, f"the SAM transform refuses it: {cause.message}") from None
                refused[logical_id] = cause.message.split("is invalid. ", 1)[-1]  # it names the resource
            for logical_id, message in refused.items():
                failures[logical_id] = message
                resources[logical_id] = _placeholder(message, line_of(resources, logical_id))
            continue
        finally:
            metrics.publish()
        return _marked(translated, template), failures


def _keep_offline(resource: object) -> None:
    """An application of the Serverless Application Repository becomes a nested stack whose template
    is at a URL (so the library does not ask the repository for it)."""
    properties = resource.get("Properties") if isinstance(resource, dict) else None
    if isinstance(properties, dict) and resource.get("Type") == "AWS::Serverless::Application" and \
            isinstance(properties.get("Location"), dict):
        application = properties["Location"].get("ApplicationId")
        properties["Location"] = REPOSITORY + (application if isinstance(application, str) else "an application")


def _local_paths():
    from samtranslator.public.plugins import BasePlugin

    class LocalPaths(BasePlugin):
        """A local path where SAM wants an S3 location (after Globals are merged into resources)."""

        def on_before_transform_resource(self, logical_id, resource_type, resource_properties):
            key = _LOCAL_URIS.get(resource_type)
            value = resource_properties.get(key) if key else None
            if isinstance(value, str) and not value.startswith("s3://") or (
                    isinstance(value, dict) and len(value) == 1 and "Bucket" not in value):
                resource_properties[key] = {"Bucket": LOCAL_BUCKET, "Key": value}

    return LocalPaths()


def _refused(message: str, resources: dict) -> str | None:
    """The logical id of the resource a refusal is about (the library names a layer by its id with
    a hash appended)."""
    match = _CAUSE.search(message)
    if match is None:
        return None
    named = match.group(1)
    return named if named in resources else _origin(named, resources)


def _origin(logical_id: str, resources: dict) -> str | None:
    """The resource of the template a resource the transform made comes from (`HelloFunctionRole`
    from `HelloFunction`): the longest logical id it starts with."""
    if logical_id in resources:
        return logical_id
    found = [name for name in resources if logical_id.startswith(name)]
    return max(found, key=len) if found else None


def _placeholder(message: str, line: int | None) -> Mapping:
    resource = Mapping({"Type": UNTRANSFORMED, "Properties": {"Problem": message}})
    resource.line = line or 0
    return resource


# --- lines ----------------------------------------------------------------------------------

def _marked(translated: dict, template: Mapping) -> Mapping:
    """The transformed template with lines again: the library rebuilds the dicts of the resources
    it makes, so each is given the lines of what it was made from (the SAM resource, or
    Globals.Function for what it inherited) where it has none of its own."""
    resources = template["Resources"]
    globals_ = template.get("Globals")
    function_globals = globals_.get("Function") if isinstance(globals_, dict) else None
    made = translated["Resources"]
    for logical_id, resource in list(made.items()):
        origin_id = _origin(logical_id, resources)
        if origin_id is None or not isinstance(resource, dict):
            continue
        origin = resources[origin_id]
        line = line_of(resources, origin_id)
        origins = [origin.get("Properties"),
                   function_globals if origin.get("Type") == "AWS::Serverless::Function" else None]
        origins = [_as_cloudformation(node) for node in origins if isinstance(node, dict)]
        if isinstance(resource.get("Properties"), dict):
            resource["Properties"] = _mark(resource["Properties"], origins, line_of(origin, "Properties", line))
        made[logical_id] = _mark(resource, [origin], line)
    result = _mark(translated, [template], line_of(template) or 1)
    for logical_id, resource in made.items():
        result["Resources"].lines[logical_id] = line_of(resource) or result["Resources"].line
    return result


def _as_cloudformation(properties: dict) -> dict:
    """SAM's names for what CloudFormation calls Code and Content, so their lines are found."""
    renamed = Mapping(properties)
    renamed.line = line_of(properties) or 0
    renamed.lines = dict(getattr(properties, "lines", {}))
    for sam, cloudformation in (("CodeUri", "Code"), ("InlineCode", "Code"), ("ImageUri", "Code"),
                                ("ContentUri", "Content")):
        if sam in properties:
            renamed[cloudformation] = properties[sam]
            renamed.lines[cloudformation] = line_of(properties, sam, renamed.line)
    return renamed


def _mark(node: object, origins: list, line: int | None) -> object:
    if isinstance(node, dict):
        marked = node if isinstance(node, Mapping) else Mapping(node)
        marked.line = marked.line or line or 0
        for key in list(marked):
            found = [origin[key] for origin in origins if isinstance(origin, dict) and key in origin]
            key_line = next((line_of(origin, key) for origin in origins
                             if isinstance(origin, dict) and key in origin and line_of(origin, key)), None)
            marked.lines.setdefault(key, key_line or marked.line)
            marked[key] = _mark(marked[key], found, marked.lines[key])
        return marked
    if isinstance(node, list):
        marked = node if isinstance(node, Sequence) else Sequence(node)
        marked.line = marked.line or line or 0
        same = next((origin for origin in origins if isinstance(origin, list) and len(origin) == len(node)), None)
        if len(marked.lines) != len(marked):
            marked.lines = [line_of(same, index, marked.line) if same is not None else marked.line
                            for index in range(len(marked))]
        for index, item in enumerate(marked):
            marked[index] = _mark(item, [same[index]] if same is not None else [], marked.lines[index])
        return marked
    return node
