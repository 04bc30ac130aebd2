"""streams.shapes.image_reshape: stream images put into AWS's typed shape, with what cannot be
typed named. Live checks against DynamoDB Local are in test_image_shapes.py."""

import base64
import decimal
import json

import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import given
from hypothesis import strategies as st

from streams.codec import encode_item
from streams.shapes import image_reshape
from tests.streams.test_codec import HYPOTHESIS, captured_images, values
from tests.support.fixture_records import record_at_step


# --- image_reshape: images in AWS's shape --------------------------------------------------


def untyped_empty_maps(value):
    """A typed value or image as DynamoDB Local 3.x's stream sends it: every empty map a bare
    {} (awslabs/amazon-dynamodb-local-samples#37; tests/test_image_shapes.py checks it live)."""
    if value == {"M": {}}:
        return {}
    if isinstance(value, dict):
        return {name: untyped_empty_maps(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [untyped_empty_maps(inner) for inner in value]
    return value


@HYPOTHESIS
@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_it_leaves_every_image_in_aws_shape_alone(item):
    image = encode_item(item)

    reshaped, problems = image_reshape(image=image, name="NewImage")

    assert reshaped is image and problems == []


@HYPOTHESIS
@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_it_puts_every_image_dynamodb_local_sends_into_aws_shape(item):
    image = encode_item(item)
    sent = untyped_empty_maps(image)
    copy = json.loads(json.dumps(sent))

    reshaped, problems = image_reshape(image=sent, name="NewImage")

    assert reshaped == image and problems == []
    assert sent == copy  # what the stream sent is not changed in place


def as_botocore_parses(value):
    """A wire value as botocore hands it to TypeDeserializer: B and BS base64-decoded."""
    if isinstance(value, dict):
        if len(value) == 1 and "B" in value:
            return {"B": base64.b64decode(value["B"])}
        if len(value) == 1 and "BS" in value:
            return {"BS": [base64.b64decode(member) for member in value["BS"]]}
        return {name: as_botocore_parses(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [as_botocore_parses(inner) for inner in value]
    return value


def boto3_reads(image):
    deserializer = TypeDeserializer()
    for value in image.values():
        try:
            deserializer.deserialize(as_botocore_parses(value))
        except (decimal.Rounded, decimal.Inexact):
            pass  # boto3's 38-digit context refuses the captured 39-digit number (boto/boto3#369)


def test_it_reshapes_every_captured_image_so_boto3_reads_it():
    for image in captured_images():
        reshaped, problems = image_reshape(image=image, name="NewImage")

        assert problems == []
        assert untyped_empty_maps(reshaped) == image
        boto3_reads(reshaped)
        if reshaped is not image:
            with pytest.raises(TypeError, match="nonempty dictionary"):
                boto3_reads(image)


def test_it_reshapes_the_captured_empty_map_and_the_one_in_a_list():
    image = record_at_step("getrecords_new_and_old_images", "insert_order")["dynamodb"]["NewImage"]

    reshaped, _ = image_reshape(image=image, name="NewImage")

    assert (image["empty_map"], reshaped["empty_map"]) == ({}, {"M": {}})
    assert (image["mixed"]["L"][6], reshaped["mixed"]["L"][6]) == ({}, {"M": {}})
    assert reshaped["empty_list"] == image["empty_list"] == {"L": []}


@pytest.mark.parametrize(
    "sent, shaped",
    [
        # DynamoDB Local 3.x: an empty map untyped, at the top and at any depth (#37).
        ({"m": {}}, {"m": {"M": {}}}),
        ({"m": {"M": {"inner": {}}}}, {"m": {"M": {"inner": {"M": {}}}}}),
        ({"l": {"L": [{}, {"S": "x"}, {}]}}, {"l": {"L": [{"M": {}}, {"S": "x"}, {"M": {}}]}}),
        ({"d": {"L": [{"M": {"a": {"L": [{}]}}}]}}, {"d": {"L": [{"M": {"a": {"L": [{"M": {}}]}}}]}}),
        # A bare [] can only be an empty list: DynamoDB stores no empty set ("an empty set is
        # not allowed", Developer Guide, Naming rules and data types). No source is known to
        # send it; DynamoDB Local 3.3.1 sends {"L": []}.
        ({"l": []}, {"l": {"L": []}}),
        ({"l": {"L": [[], {"L": []}]}}, {"l": {"L": [{"L": []}, {"L": []}]}}),
        ({"m": {"M": {"x": []}}}, {"m": {"M": {"x": {"L": []}}}}),
    ],
    ids=["top-map", "map-in-map", "maps-in-list", "map-in-list-in-map-in-list", "top-list", "list-in-list",
         "list-in-map"],
)
def test_it_types_untyped_empty_collections(sent, shaped):
    reshaped, problems = image_reshape(image=sent, name="NewImage")

    assert (reshaped, problems) == (shaped, [])


@pytest.mark.parametrize(
    "value, problem",
    [
        # Shapes neither AWS nor DynamoDB Local sends (the typed forms: DynamoDB API reference,
        # AttributeValue). None can be typed without guessing, so each is kept as sent.
        ({"X": "1"}, "NewImage.v: unknown DynamoDB type tag 'X'"),
        ({"S": "a", "N": "1"}, "NewImage.v: a typed value must have exactly one type tag, got ['N', 'S']"),
        ("a", "NewImage.v: a typed value must be an object, got str"),
        (None, "NewImage.v: a typed value must be an object, got NoneType"),
        (1, "NewImage.v: a typed value must be an object, got int"),
        ([{"S": "a"}], "NewImage.v: a typed value must be an object, got list"),
        ({"S": 1}, "NewImage.v: S must hold a string, got int"),
        ({"N": 1.5}, "NewImage.v: not a DynamoDB number: 1.5"),
        ({"B": None}, "NewImage.v: binary value must be a base64 string, got NoneType"),
        ({"BOOL": "true"}, "NewImage.v: BOOL must hold true or false, got 'true'"),
        ({"NULL": False}, "NewImage.v: NULL must hold true, got False"),
        ({"SS": []}, "NewImage.v: SS is empty; DynamoDB never stores an empty set"),
        ({"NS": [1]}, "NewImage.v: not a DynamoDB number: 1"),
        ({"BS": "AA=="}, "NewImage.v: BS must hold a list, got str"),
        ({"M": []}, "NewImage.v: M must hold an object, got list"),
        ({"L": {}}, "NewImage.v: L must hold a list, got dict"),
        ({"M": {"a b": {"Q": 1}}}, 'NewImage.v["a b"]: unknown DynamoDB type tag \'Q\''),
        ({"L": [{"S": "x"}, {"NULL": 1}]}, "NewImage.v[1]: NULL must hold true, got 1"),
    ],
    ids=["unknown-tag", "two-tags", "string", "null", "number", "untyped-list", "S-int", "N-float", "B-null",
         "BOOL-string", "NULL-false", "empty-set", "NS-int", "BS-not-list", "M-list", "L-object", "in-map",
         "in-list"],
)
def test_it_keeps_and_names_a_value_it_cannot_type(value, problem):
    image = {"pk": {"S": "k"}, "v": value}

    reshaped, problems = image_reshape(image=image, name="NewImage")

    assert reshaped is image and reshaped["v"] is value
    assert problems == [problem]


def test_it_types_what_it_can_and_keeps_the_rest_beside_it():
    sent = {"pk": {"S": "k"}, "m": {"M": {"empty": {}, "odd": {"NULL": False}}}, "weird.name": {"SS": []}}

    reshaped, problems = image_reshape(image=sent, name="OldImage")

    assert reshaped == {"pk": {"S": "k"}, "m": {"M": {"empty": {"M": {}}, "odd": {"NULL": False}}}, "weird.name": {"SS": []}}
    assert problems == [
        "OldImage.m.odd: NULL must hold true, got False",
        'OldImage["weird.name"]: SS is empty; DynamoDB never stores an empty set',
    ]
    assert sent["m"]["M"]["empty"] == {}


@pytest.mark.parametrize("image", [[], "x", None], ids=["list", "string", "null"])
def test_it_names_an_image_that_is_not_an_object(image):
    assert image_reshape(image=image, name="Keys") == (image, [f"Keys: an image must be an object, got {type(image).__name__}"])


def test_it_keeps_an_image_nested_past_pythons_stack_whole():
    # DynamoDB nests 32 levels at most; orjson reads up to 1024, past this walk's stack.
    value = {"M": {}}
    for _ in range(1000):
        value = {"L": [value, {}]}
    image = {"deep": value}

    assert image_reshape(image=image, name="NewImage") == (image, ["NewImage: nested deeper than DynamoDB allows"])
