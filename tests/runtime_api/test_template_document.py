"""Reading a template file: CloudFormation's short-form tags become their long form, YAML and JSON
keep the line of every key and item, and the scalars read as CloudFormation reads them."""

from __future__ import annotations

import json

from runtime_api.template.document import line_of, parse

SHORT_FORMS = """\
A: !Ref Name
B: !Sub "${AWS::Region}-x"
C: !Sub ["${X}", {X: y}]
D: !GetAtt Stack.Outputs.Value
E: !GetAtt [Resource, Arn]
F: !Join [",", [a, b]]
G: !Select [0, !Split [",", "a,b"]]
H: !FindInMap [Map, Top, Second]
I: !If [Condition, yes-value, no-value]
J: !Equals [!Ref A, b]
K: !Not [!Condition C]
L: !And [!Condition C, !Or [!Condition D, !Condition E]]
M: !Base64 text
N: !ImportValue Export
O: !GetAZs ""
P: !Cidr [10.0.0.0/16, 2, 8]
"""


def test_short_forms_read_as_their_long_forms():
    assert json.loads(json.dumps(parse(SHORT_FORMS, "template.yaml"))) == {
        "A": {"Ref": "Name"},
        "B": {"Fn::Sub": "${AWS::Region}-x"},
        "C": {"Fn::Sub": ["${X}", {"X": "y"}]},
        "D": {"Fn::GetAtt": ["Stack", "Outputs.Value"]},  # the first dot splits resource and attribute
        "E": {"Fn::GetAtt": ["Resource", "Arn"]},
        "F": {"Fn::Join": [",", ["a", "b"]]},
        "G": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
        "H": {"Fn::FindInMap": ["Map", "Top", "Second"]},
        "I": {"Fn::If": ["Condition", "yes-value", "no-value"]},
        "J": {"Fn::Equals": [{"Ref": "A"}, "b"]},
        "K": {"Fn::Not": [{"Condition": "C"}]},
        "L": {"Fn::And": [{"Condition": "C"}, {"Fn::Or": [{"Condition": "D"}, {"Condition": "E"}]}]},
        "M": {"Fn::Base64": "text"},
        "N": {"Fn::ImportValue": "Export"},
        "O": {"Fn::GetAZs": ""},
        "P": {"Fn::Cidr": ["10.0.0.0/16", 2, 8]},
    }


def test_every_key_and_item_keeps_its_line():
    document = parse(SHORT_FORMS, "template.yaml")
    assert [line_of(document, key) for key in document] == list(range(1, 17))
    assert line_of(document["G"]) == 7 and line_of(document["G"]["Fn::Select"], 1) == 7
    listed = parse("Layers:\n  - one\n  - !Ref Two\n  -\n    three\n", "template.yaml")["Layers"]
    assert [line_of(listed, index) for index in range(3)] == [2, 3, 5]


def test_json_keeps_lines_too():
    text = json.dumps({"Resources": {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Timeout": 3}}}},
                      indent=1)
    document = parse(text, "template.json")
    properties = document["Resources"]["Fn"]["Properties"]
    assert line_of(properties, "Timeout") == text.splitlines().index('    "Timeout": 3') + 1


def test_scalars_read_as_cloudformation_reads_them():
    document = parse("AWSTemplateFormatVersion: 2010-09-09\nMappings:\n  M:\n    200: {1.5: x, true: y}\n",
                     "template.yaml")
    assert document["AWSTemplateFormatVersion"] == "2010-09-09"  # a date stays the text it is
    assert document["Mappings"]["M"] == {"200": {"1.5": "x", "true": "y"}}  # keys are strings
