"""Functions read from an AWS SAM or CloudFormation template (`cdk synth`'s too), offline.

    from runtime_api.template import load_template, TemplateError

    stack = load_template("template.yaml", parameter_overrides={"Stage": "dev"})
    stack.functions   # [FunctionConfig, ...]: name = logical id, aliases = [FunctionName]
    stack.problems    # [TemplateProblem, ...]: functions not configured, and why; warnings
    stack.watched     # files and directories whose change means "read it again"

A `TemplateError` (the template cannot be read at all) and each problem print as one line:
`template.yaml:12: function HelloFunction: <what and why>`. PyYAML and aws-sam-translator are
imported only when a template is read, the translator only for a template that uses SAM.
"""

from .errors import TemplateError, TemplateProblem
from .inputs import find_template, load_env_vars, parse_parameter_overrides
from .stack import Stack, load_template

__all__ = ["Stack", "TemplateError", "TemplateProblem", "find_template", "load_env_vars", "load_template",
           "parse_parameter_overrides"]
