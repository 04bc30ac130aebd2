import base64
import decimal
import json
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.fixture_records import load_records, record_at_step
from streams.codec import (
    WireFormatError,
    decode,
    decode_item,
    encode,
    encode_item,
    item_key,
    to_display,
)

CAPTURES = [
    "getrecords_new_and_old_images",
    "getrecords_keys_only",
    "getrecords_new_image",
    "getrecords_old_image",
]

# --- strategies --------------------------------------------------------------------------


@st.composite
def dynamodb_decimals(draw):
    """Any number DynamoDB stores: up to 38 significant digits, magnitude 1E-130..9.99E+125,
    including trailing zeros in the coefficient (12.50) and both exponent extremes."""
    coefficient = draw(st.integers(min_value=1, max_value=10**38 - 1))
    digits = tuple(int(digit) for digit in str(coefficient))
    lowest = -130 - (len(digits) - 1)
    highest = 125 - (len(digits) - 1)
    exponent = draw(st.one_of(st.integers(lowest, highest), st.sampled_from([lowest, highest, 0])))
    sign = draw(st.integers(0, 1))
    return Decimal((sign, digits, exponent))


numbers = st.one_of(
    dynamodb_decimals(),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("12.50"), Decimal("0.0")]),
)
scalars = st.one_of(
    st.text(),
    numbers,
    st.binary(max_size=24),
    st.booleans(),
    st.none(),
    st.sets(st.text(max_size=8), min_size=1, max_size=5),
    st.sets(dynamodb_decimals(), min_size=1, max_size=5),
    st.sets(st.binary(max_size=8), min_size=1, max_size=5),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=30,
)


@st.composite
def deeply_nested(draw):
    """A chain of maps and lists up to 40 levels, past DynamoDB's 32."""
    value = draw(scalars)
    for is_map in draw(st.lists(st.booleans(), min_size=1, max_size=40)):
        value = {draw(st.text(max_size=4)): value} if is_map else [value]
    return value


plain_values = st.one_of(values, deeply_nested())

# --- helpers: an independent reading of what the formats mean ------------------------------


def b64(data):
    return base64.b64encode(data).decode("ascii")


def botocore_to_wire(value):
    """boto3's serializer output (B as bytes) to wire format, written out longhand."""
    (tag, inner), = value.items()
    if tag == "B":
        return {"B": b64(inner)}
    if tag == "BS":
        return {"BS": [b64(member) for member in inner]}
    if tag == "M":
        return {"M": {name: botocore_to_wire(member) for name, member in inner.items()}}
    if tag == "L":
        return {"L": [botocore_to_wire(member) for member in inner]}
    return value


def wire_to_botocore(value):
    (tag, inner), = value.items() if value else (("M", {}),)
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(member) for member in inner]}
    if tag == "M":
        return {"M": {name: wire_to_botocore(member) for name, member in inner.items()}}
    if tag == "L":
        return {"L": [wire_to_botocore(member) for member in inner]}
    return value


def sorted_sets(value):
    """Wire value with set members in one order, since sets have none."""
    (tag, inner), = value.items() if value else (("M", {}),)
    if tag in ("SS", "BS"):
        return {tag: sorted(inner)}
    if tag == "NS":
        return {tag: sorted(inner, key=Decimal)}
    if tag == "M":
        return {"M": {name: sorted_sets(member) for name, member in inner.items()}}
    if tag == "L":
        return {"L": [sorted_sets(member) for member in inner]}
    return value


def exact(value):
    """A comparable form that also tells Decimal("1.0") from Decimal("1")."""
    if isinstance(value, Binary):
        return ("bytes", value.value)
    if isinstance(value, (bool, type(None), str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, (int, Decimal)):
        return ("N", str(value))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(exact(member) for member in value))
    if isinstance(value, dict):
        return ("M", {name: exact(member) for name, member in value.items()})
    return ("L", [exact(member) for member in value])


def boto3_serialize(value):
    """boto3's wire output, or None where its 38-digit context is narrower than DynamoDB
    (it refuses 38-digit numbers just above 1E-130, which DynamoDB stores)."""
    try:
        return botocore_to_wire(TypeSerializer().serialize(value))
    except decimal.DecimalException:
        return None


def captured_images():
    for name in CAPTURES:
        for record in load_records(name):
            for part in ("Keys", "NewImage", "OldImage"):
                if part in record["dynamodb"]:
                    yield record["dynamodb"][part]


HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- properties against boto3 ------------------------------------------------------------


@HYPOTHESIS
@given(plain_values)
def test_it_encodes_like_boto3(value):
    expected = boto3_serialize(value)
    assume(expected is not None)
    assert sorted_sets(encode(value)) == sorted_sets(expected)


@HYPOTHESIS
@given(plain_values)
def test_it_decodes_what_it_encodes_exactly(value):
    assert exact(decode(encode(value))) == exact(value)


@HYPOTHESIS
@given(plain_values)
def test_it_decodes_like_boto3(value):
    wire = encode(value)
    try:
        expected = TypeDeserializer().deserialize(wire_to_botocore(wire))
    except decimal.DecimalException:
        assume(False)
    assert exact(decode(wire)) == exact(expected)


@HYPOTHESIS
@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_it_round_trips_whole_items(item):
    image = encode_item(item)

    assert exact(decode_item(image)) == exact(item)


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "12345678901234567890123456789012345678",
        "-12345678901234567890123456789012345678",
        "9.9999999999999999999999999999999999999E+125",
        "-9.9999999999999999999999999999999999999E+125",
        "1E-130",
        "1.2345678901234567890123456789012345678E-130",
        "0.1",
        "12.50",
        "-0",
    ],
    ids=["38-digits", "38-digits-negative", "largest", "most-negative", "smallest", "smallest-38-digits",
         "one-tenth", "trailing-zero", "negative-zero"],
)
def test_it_keeps_every_digit_of_a_number(text):
    number = decode({"N": text})

    assert number == Decimal(text)
    assert str(number) == str(Decimal(text))
    assert encode(number) == {"N": str(Decimal(text))}


def test_it_reads_numbers_boto3_refuses():
    # DynamoDB stores this (38 digits at the bottom of its range); boto3's context cannot.
    text = "0." + "0" * 129 + "12345678901234567890123456789012345678"

    with pytest.raises(decimal.Underflow):
        TypeDeserializer().deserialize({"N": text})
    assert decode({"N": text}) == Decimal("1.2345678901234567890123456789012345678E-130")


def test_it_accepts_integers_with_trailing_zeros_past_38_digits():
    # DynamoDB counts significant digits only; boto3 refuses this one.
    assert encode(10**38) == {"N": "1" + "0" * 38}


# --- captured records ----------------------------------------------------------------------


def test_it_decodes_every_captured_image():
    images = list(captured_images())

    decoded = [decode_item(image) for image in images]

    assert len(decoded) == len(images) > 40


def test_it_keeps_captured_38_digit_and_extreme_numbers():
    image = decode_item(record_at_step("getrecords_new_and_old_images", "insert_order")["dynamodb"]["NewImage"])

    assert str(image["big"]) == "12345678901234567890123456789012345678"
    assert str(image["fraction"]) == "3.1415926535897932384626433832795028841"
    assert image["huge"] == Decimal("9.9999999999999999999999999999999999999E+125")
    assert image["neg_huge"] == Decimal("-9.9999999999999999999999999999999999999E+125")
    assert image["tiny"] == Decimal("1E-130")
    assert image["neg_tiny"] == Decimal("-1E-130")
    assert image["price"] == Decimal("12.5")


def test_it_decodes_every_captured_type():
    image = decode_item(record_at_step("getrecords_new_and_old_images", "insert_order")["dynamodb"]["NewImage"])

    assert image["raw"] == b"\x00\x01\xfe\xff"
    assert image["empty_bin"] == b""
    assert image["note"] == ""
    assert image["greeting"] == "héllo wörld 🚀"
    assert image["tags"] == {"gift", "new"}
    assert image["lucky"] == {Decimal(7), Decimal(13), Decimal(42)}
    assert image["blobs"] == {b"\x01", b"\x02\x03"}
    assert image["gone"] is None
    assert image["paid"] is False
    assert image["address"]["geo"]["lat"] == Decimal("48.8566")
    assert image["items"][1] == {"sku": "B-2", "qty": Decimal(2)}
    assert image["empty_map"] == {}
    assert image["empty_list"] == []
    assert image["weird.name"] == "dots"
    assert image["mixed"] == ["a", Decimal(1), True, None, b"\x00", [], {}, {"x"}]


def test_it_reads_dynamodb_locals_bare_empty_map():
    image = record_at_step("getrecords_new_and_old_images", "insert_order")["dynamodb"]["NewImage"]

    assert image["empty_map"] == {}  # what DynamoDB Local sends instead of {"M": {}}
    assert decode(image["empty_map"]) == {}
    assert to_display(image["empty_map"]) == {}


def test_it_decodes_the_deepest_nesting_dynamodb_allows():
    image = decode_item(record_at_step("getrecords_new_and_old_images", "modify_deep")["dynamodb"]["NewImage"])

    value, depth = image["deep"], 0
    while not isinstance(value, str):
        value = value[0] if isinstance(value, list) else value["k"]
        depth += 1

    assert (value, depth) == ("changed", 31)


def test_it_re_encodes_captured_images_to_the_same_numbers_and_values():
    for image in captured_images():
        decoded = decode_item(image)

        # The text may differ ("1E-130" for "0.000…1"), the digits and exponent may not.
        assert exact(decode_item(encode_item(decoded))) == exact(decoded)


# --- item_key ------------------------------------------------------------------------------


def test_it_makes_the_same_item_key_whatever_the_attribute_order():
    assert item_key({"sk": {"N": "1"}, "pk": {"S": "order#1"}}) == '{"pk":{"S":"order#1"},"sk":{"N":"1"}}'
    assert item_key({"pk": {"S": "order#1"}, "sk": {"N": "1"}}) == '{"pk":{"S":"order#1"},"sk":{"N":"1"}}'


@pytest.mark.parametrize(
    "number, spelt",
    [
        ("1", "1"),
        ("1.00", "1"),
        ("100", "100"),
        ("1E+2", "100"),
        ("-0", "0"),
        ("0.0", "0"),
        ("0.10", "0.1"),
        ("-12.50", "-12.5"),
        ("1E-130", "0." + "0" * 129 + "1"),
        ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
    ],
)
def test_it_spells_number_keys_the_way_dynamodb_stores_them(number, spelt):
    assert item_key({"pk": {"S": "a"}, "sk": {"N": number}}) == f'{{"pk":{{"S":"a"}},"sk":{{"N":"{spelt}"}}}}'


def test_it_keeps_unicode_readable_in_item_keys():
    assert item_key({"pk": {"S": "héllo"}}) == '{"pk":{"S":"héllo"}}'


def test_it_gives_every_captured_record_of_an_item_one_item_key():
    keys = {
        item_key(record["dynamodb"]["Keys"])
        for name in CAPTURES
        for record in load_records(name)
        if record["dynamodb"]["Keys"]["pk"] == {"S": "order#1"}
    }

    assert keys == {'{"pk":{"S":"order#1"},"sk":{"N":"1"}}'}


# --- to_display ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, shown",
    [
        ({"S": "x"}, "x"),
        ({"N": "12345678901234567890123456789012345678"}, "12345678901234567890123456789012345678"),
        ({"B": "AAE="}, "AAE="),
        ({"SS": ["b", "a"]}, ["a", "b"]),
        ({"NS": ["10", "9", "-1.5"]}, ["-1.5", "9", "10"]),
        ({"BS": ["Ag==", "AQ=="]}, ["AQ==", "Ag=="]),
        ({"NULL": True}, None),
        ({"BOOL": False}, False),
        ({"M": {"a": {"N": "1"}, "b": {"L": [{"S": "x"}, {"NULL": True}]}}}, {"a": "1", "b": ["x", None]}),
        ({"L": []}, []),
    ],
    ids=["S", "N", "B", "SS", "NS", "BS", "NULL", "BOOL", "M", "L"],
)
def test_it_shows_typed_values_as_plain_json(typed, shown):
    assert to_display(typed) == shown
    assert json.loads(json.dumps(to_display(typed))) == shown


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire, message",
    [
        ({"X": "1"}, "unknown DynamoDB type tag 'X'"),
        ({"S": "a", "N": "1"}, "exactly one type tag"),
        ("S", "must be an object"),
        ({"S": 1}, "S must hold a string"),
        ({"N": "abc"}, "not a DynamoDB number"),
        ({"N": 1.5}, "not a DynamoDB number"),
        ({"N": "NaN"}, "not a DynamoDB number"),
        ({"N": " 1"}, "not a DynamoDB number"),
        ({"B": "not base64!"}, "invalid base64"),
        ({"B": b"\x01"}, "base64 string"),
        ({"SS": []}, "never stores an empty set"),
        ({"NS": "1"}, "NS must hold a list"),
        ({"BOOL": "true"}, "BOOL must hold true or false"),
        ({"NULL": False}, "NULL must hold true"),
        ({"M": [{"S": "a"}]}, "M must hold an object"),
        ({"L": {"S": "a"}}, "L must hold a list"),
        ({"L": [{"Q": "a"}]}, "unknown DynamoDB type tag 'Q'"),
    ],
    ids=["unknown-tag", "two-tags", "not-a-dict", "S-not-str", "N-garbage", "N-float", "N-nan", "N-space",
         "B-garbage", "B-bytes", "empty-set", "NS-not-list", "BOOL-string", "NULL-false", "M-not-dict",
         "L-not-list", "nested-unknown-tag"],
)
def test_it_refuses_malformed_wire_values(wire, message):
    with pytest.raises(WireFormatError, match=message):
        decode(wire)


@pytest.mark.parametrize(
    "value, error, message",
    [
        (1.5, TypeError, "Float types are not supported"),
        ({Decimal(1), 2.5}, TypeError, "Float types are not supported"),
        ([{"price": 9.99}], TypeError, "Float types are not supported"),
        (set(), ValueError, "empty sets"),
        (frozenset(), ValueError, "empty sets"),
        ({"a", 1}, TypeError, "set members must be all str"),
        ({True}, TypeError, "set members must be all str"),
        (Decimal("NaN"), TypeError, "Infinity and NaN"),
        (Decimal("Infinity"), TypeError, "Infinity and NaN"),
        (Decimal("1E+126"), ValueError, "outside DynamoDB's number range"),
        (Decimal("1E-131"), ValueError, "outside DynamoDB's number range"),
        (Decimal("123456789012345678901234567890123456789"), ValueError, "39 significant digits"),
        (object(), TypeError, "Unsupported type object"),
        ({1: "a"}, TypeError, "attribute names must be str"),
    ],
    ids=["float", "float-in-set", "nested-float", "empty-set", "empty-frozenset", "mixed-set", "bool-set",
         "nan", "infinity", "too-large", "too-small", "39-digits", "object", "int-key"],
)
def test_it_refuses_values_dynamodb_cannot_store(value, error, message):
    with pytest.raises(error, match=message):
        encode(value)
