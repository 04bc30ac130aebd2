"""The Lambda/EventBridge filter-pattern matcher (streams.filters).

Cases follow the filter-syntax examples in the AWS Lambda event-filtering docs (general rules
and "Using event filtering with a DynamoDB event source") and the EventBridge "Content
filtering in event patterns" / "Matching null values and empty strings" pages, rewritten
against Shardwatch's own DynamoDB stream records. Pure module: no database, no Django.
"""

import json
from decimal import Decimal

import pytest

from streams.filters import MAX_PATTERN_LENGTH, InvalidPattern, Pattern, compile_pattern


def record(event_name="INSERT", new=None, old=None, keys=None, **extra):
    """A Lambda-shaped DynamoDB stream record for the orders table."""
    keys = keys if keys is not None else {"pk": {"S": "ORDER#1001"}, "sk": {"S": "META"}}
    dynamodb = {
        "ApproximateCreationDateTime": 1764082800.0,
        "Keys": keys,
        "SequenceNumber": "100000000000000000001",
        "SizeBytes": 142,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        dynamodb["NewImage"] = {**keys, **new}
    if old is not None:
        dynamodb["OldImage"] = {**keys, **old}
    rec = {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:111122223333:table/orders/stream/2025-11-25T15:00:00.000",
    }
    rec.update(extra)
    return rec


SHIPPED = record(
    new={
        "status": {"S": "SHIPPED"},
        "total": {"N": "12.5"},
        "customer": {"S": "AnyCompany Industries"},
        "carrier": {"S": "UPS-Ground"},
        "label": {"S": "s3://labels/2025/ORDER-1001.pdf"},
        "note": {"S": ""},
        "express": {"BOOL": True},
        "coupon": {"NULL": True},
        "tags": {"L": [{"S": "gift"}, {"S": "fragile"}]},
        "address": {"M": {"city": {"S": "Seattle"}, "zip": {"S": "98101"}}},
        "clientIp": {"S": "10.0.0.17"},
    }
)
MODIFIED = record(
    "MODIFY",
    new={"status": {"S": "DELIVERED"}, "total": {"N": "12.5"}},
    old={"status": {"S": "SHIPPED"}, "total": {"N": "12.5"}},
)
REMOVED_BY_TTL = record(
    "REMOVE",
    old={"status": {"S": "CANCELLED"}},
    userIdentity={"type": "Service", "principalId": "dynamodb.amazonaws.com"},
)
# A plain (non-DynamoDB) JSON event, for the operators that need real JSON numbers, nulls and arrays.
PLAIN = {
    "source": "shardwatch.orders",
    "time": "2025-11-25T15:04:05Z",
    "detail": {
        "state": "running",
        "count": 3,
        "price": 5.0,
        "amount": Decimal("12.50"),
        "flag": False,
        "reason": None,
        "version": "",
        "regions": ["us-east-1", "eu-west-1"],
        "sourceIp": "10.0.0.255",
        "ipv6": "2001:0db8:1234:1a00:0000:0000:0000:0001",
        "lines": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 5}],
    },
}


def case(id_, pattern, event, expected):
    return pytest.param(pattern, event, expected, id=id_)


MATCH_CASES = [
    # --- exact values -----------------------------------------------------------------------
    case("metadata-event-name", {"eventName": ["INSERT"]}, SHIPPED, True),
    case("metadata-event-name-or-list", {"eventName": ["INSERT", "MODIFY"]}, MODIFIED, True),
    case("metadata-event-name-no", {"eventName": ["REMOVE"]}, SHIPPED, False),
    case("ddb-key-string", {"dynamodb": {"Keys": {"pk": {"S": ["ORDER#1001"]}}}}, SHIPPED, True),
    case("ddb-key-string-no", {"dynamodb": {"Keys": {"pk": {"S": ["ORDER#1002"]}}}}, SHIPPED, False),
    case("ddb-attribute-either-value", {"dynamodb": {"NewImage": {"status": {"S": ["PENDING", "SHIPPED"]}}}}, SHIPPED, True),
    case("ddb-attribute-new-image-only", {"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}, MODIFIED, False),
    case("ddb-attribute-old-image", {"dynamodb": {"OldImage": {"status": {"S": ["SHIPPED"]}}}}, MODIFIED, True),
    case("ddb-value-is-case-sensitive", {"dynamodb": {"NewImage": {"status": {"S": ["shipped"]}}}}, SHIPPED, False),
    case("ddb-keys-are-case-sensitive", {"dynamodb": {"NewImage": {"Status": {"S": ["SHIPPED"]}}}}, SHIPPED, False),
    case("ddb-needs-the-type-key", {"dynamodb": {"NewImage": {"status": ["SHIPPED"]}}}, SHIPPED, False),
    case("ddb-boolean", {"dynamodb": {"NewImage": {"express": {"BOOL": [True]}}}}, SHIPPED, True),
    case("ddb-boolean-no", {"dynamodb": {"NewImage": {"express": {"BOOL": [False]}}}}, SHIPPED, False),
    case("ddb-null-attribute", {"dynamodb": {"NewImage": {"coupon": {"NULL": [True]}}}}, SHIPPED, True),
    case("ddb-n-matches-as-string", {"dynamodb": {"NewImage": {"total": {"N": ["12.5"]}}}}, SHIPPED, True),
    case("ddb-n-json-number-no", {"dynamodb": {"NewImage": {"total": {"N": [12.5]}}}}, SHIPPED, False),
    case("ddb-list-crushed", {"dynamodb": {"NewImage": {"tags": {"L": {"S": ["fragile"]}}}}}, SHIPPED, True),
    case("ddb-list-crushed-no", {"dynamodb": {"NewImage": {"tags": {"L": {"S": ["perishable"]}}}}}, SHIPPED, False),
    case("ddb-map", {"dynamodb": {"NewImage": {"address": {"M": {"city": {"S": ["Seattle"]}}}}}}, SHIPPED, True),
    case("ttl-delete", {"userIdentity": {"type": ["Service"], "principalId": ["dynamodb.amazonaws.com"]}}, REMOVED_BY_TTL, True),
    case("ttl-delete-user-remove-no", {"userIdentity": {"type": ["Service"]}}, record("REMOVE", old={}), False),
    case("and-across-fields", {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}, SHIPPED, True),
    case("and-across-fields-no", {"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}, SHIPPED, False),
    case("number-5-matches-5.0", {"detail": {"price": [5]}}, PLAIN, True),
    case("number-decimal-event", {"detail": {"amount": [12.5]}}, PLAIN, True),
    case("number-not-string", {"detail": {"count": ["3"]}}, PLAIN, False),
    case("boolean-false", {"detail": {"flag": [False]}}, PLAIN, True),
    case("boolean-is-not-zero", {"detail": {"flag": [0]}}, PLAIN, False),
    case("event-array-any-element", {"detail": {"regions": ["eu-west-1"]}}, PLAIN, True),
    case("event-array-no-element", {"detail": {"regions": ["ap-south-1"]}}, PLAIN, False),
    case("string-inside-string-no", {"detail": {"state": ["run"]}}, PLAIN, False),
    # --- null and empty -------------------------------------------------------------------
    case("null-matches-null", {"detail": {"reason": [None]}}, PLAIN, True),
    case("null-not-empty-string", {"detail": {"version": [None]}}, PLAIN, False),
    case("empty-string-matches-empty", {"detail": {"version": [""]}}, PLAIN, True),
    case("empty-string-not-null", {"detail": {"reason": [""]}}, PLAIN, False),
    case("null-not-missing", {"detail": {"nothing": [None]}}, PLAIN, False),
    case("ddb-empty-string-attribute", {"dynamodb": {"NewImage": {"note": {"S": [""]}}}}, SHIPPED, True),
    # --- prefix / suffix ------------------------------------------------------------------
    case("prefix", {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "ORDER#"}]}}}}, SHIPPED, True),
    case("prefix-no", {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}, SHIPPED, False),
    case("prefix-time", {"time": [{"prefix": "2025-11-25"}]}, PLAIN, True),
    case("prefix-not-on-numbers", {"detail": {"count": [{"prefix": "3"}]}}, PLAIN, False),
    case("prefix-ignore-case", {"dynamodb": {"NewImage": {"carrier": {"S": [{"prefix": {"equals-ignore-case": "ups-"}}]}}}}, SHIPPED, True),
    case("prefix-ignore-case-no", {"dynamodb": {"NewImage": {"carrier": {"S": [{"prefix": {"equals-ignore-case": "fedex"}}]}}}}, SHIPPED, False),
    case("suffix", {"dynamodb": {"NewImage": {"label": {"S": [{"suffix": ".pdf"}]}}}}, SHIPPED, True),
    case("suffix-is-case-sensitive", {"dynamodb": {"NewImage": {"label": {"S": [{"suffix": ".PDF"}]}}}}, SHIPPED, False),
    case("suffix-ignore-case", {"dynamodb": {"NewImage": {"label": {"S": [{"suffix": {"equals-ignore-case": ".PDF"}}]}}}}, SHIPPED, True),
    case("suffix-ignore-case-no", {"dynamodb": {"NewImage": {"label": {"S": [{"suffix": {"equals-ignore-case": ".png"}}]}}}}, SHIPPED, False),
    # --- equals-ignore-case ---------------------------------------------------------------
    case("equals-ignore-case", {"dynamodb": {"NewImage": {"status": {"S": [{"equals-ignore-case": "shipped"}]}}}}, SHIPPED, True),
    case("equals-ignore-case-whole-value", {"dynamodb": {"NewImage": {"status": {"S": [{"equals-ignore-case": "ship"}]}}}}, SHIPPED, False),
    # --- anything-but ---------------------------------------------------------------------
    case("anything-but-value", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "CANCELLED"}]}}}}, SHIPPED, True),
    case("anything-but-value-no", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": "SHIPPED"}]}}}}, SHIPPED, False),
    case("anything-but-list", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["CANCELLED", "RETURNED"]}]}}}}, SHIPPED, True),
    case("anything-but-list-no", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["SHIPPED", "RETURNED"]}]}}}}, SHIPPED, False),
    case("anything-but-missing-field-no", {"dynamodb": {"NewImage": {"refund": {"S": [{"anything-but": "FULL"}]}}}}, SHIPPED, False),
    case("anything-but-null-passes", {"detail": {"reason": [{"anything-but": "timeout"}]}}, PLAIN, True),
    case("anything-but-number", {"detail": {"count": [{"anything-but": [1, 2]}]}}, PLAIN, True),
    case("anything-but-number-no", {"detail": {"count": [{"anything-but": 3}]}}, PLAIN, False),
    case("anything-but-number-vs-string", {"dynamodb": {"NewImage": {"total": {"N": [{"anything-but": 12.5}]}}}}, SHIPPED, True),
    case("anything-but-prefix", {"dynamodb": {"Keys": {"pk": {"S": [{"anything-but": {"prefix": "USER#"}}]}}}}, SHIPPED, True),
    case("anything-but-prefix-no", {"dynamodb": {"Keys": {"pk": {"S": [{"anything-but": {"prefix": "ORDER#"}}]}}}}, SHIPPED, False),
    case("anything-but-suffix", {"dynamodb": {"NewImage": {"label": {"S": [{"anything-but": {"suffix": ".png"}}]}}}}, SHIPPED, True),
    case("anything-but-suffix-no", {"dynamodb": {"NewImage": {"label": {"S": [{"anything-but": {"suffix": [".png", ".pdf"]}}]}}}}, SHIPPED, False),
    case("anything-but-ignore-case", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": {"equals-ignore-case": "cancelled"}}]}}}}, SHIPPED, True),
    case("anything-but-ignore-case-no", {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": {"equals-ignore-case": ["shipped"]}}]}}}}, SHIPPED, False),
    case("anything-but-wildcard", {"dynamodb": {"NewImage": {"label": {"S": [{"anything-but": {"wildcard": "*/2024/*"}}]}}}}, SHIPPED, True),
    case("anything-but-wildcard-no", {"dynamodb": {"NewImage": {"label": {"S": [{"anything-but": {"wildcard": "*/2025/*"}}]}}}}, SHIPPED, False),
    # --- numeric --------------------------------------------------------------------------
    case("numeric-equals", {"detail": {"price": [{"numeric": ["=", 5]}]}}, PLAIN, True),
    case("numeric-less", {"detail": {"count": [{"numeric": ["<", 3]}]}}, PLAIN, False),
    case("numeric-less-or-equal", {"detail": {"count": [{"numeric": ["<=", 3]}]}}, PLAIN, True),
    case("numeric-greater", {"detail": {"count": [{"numeric": [">", 3]}]}}, PLAIN, False),
    case("numeric-greater-or-equal", {"detail": {"count": [{"numeric": [">=", 3]}]}}, PLAIN, True),
    case("numeric-range", {"detail": {"count": [{"numeric": [">", 0, "<=", 5]}]}}, PLAIN, True),
    case("numeric-range-no", {"detail": {"count": [{"numeric": [">", 3, "<", 5]}]}}, PLAIN, False),
    case("numeric-decimal-event", {"detail": {"amount": [{"numeric": [">=", 12.5]}]}}, PLAIN, True),
    case("numeric-array-elements", {"detail": {"lines": {"qty": [{"numeric": [">", 4]}]}}}, PLAIN, True),
    case("numeric-not-on-strings", {"detail": {"state": [{"numeric": [">", 0]}]}}, PLAIN, False),
    case("numeric-not-on-null", {"detail": {"reason": [{"numeric": [">", 0]}]}}, PLAIN, False),
    case("numeric-ddb-n-is-a-string", {"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", 10]}]}}}}, SHIPPED, False),
    case("numeric-ddb-metadata-number", {"dynamodb": {"SizeBytes": [{"numeric": [">", 100]}]}}, SHIPPED, True),
    # --- exists ---------------------------------------------------------------------------
    case("exists-true", {"dynamodb": {"NewImage": {"carrier": {"S": [{"exists": True}]}}}}, SHIPPED, True),
    case("exists-true-missing", {"dynamodb": {"NewImage": {"carrier": {"S": [{"exists": True}]}}}}, MODIFIED, False),
    case("exists-false-missing", {"dynamodb": {"NewImage": {"carrier": {"S": [{"exists": False}]}}}}, MODIFIED, True),
    case("exists-false-present", {"dynamodb": {"NewImage": {"carrier": {"S": [{"exists": False}]}}}}, SHIPPED, False),
    case("exists-true-intermediate-node-no", {"dynamodb": {"NewImage": {"carrier": [{"exists": True}]}}}, SHIPPED, False),
    case("exists-false-intermediate-node", {"dynamodb": {"NewImage": {"carrier": [{"exists": False}]}}}, SHIPPED, True),
    case("exists-list-elements", {"dynamodb": {"NewImage": {"tags": {"L": {"S": [{"exists": True}]}}}}}, SHIPPED, True),
    case("exists-empty-array-no", {"resources": [{"exists": True}]}, {"resources": []}, False),
    case("exists-false-empty-array", {"resources": [{"exists": False}]}, {"resources": []}, True),
    # --- wildcard -------------------------------------------------------------------------
    case("wildcard-middle", {"dynamodb": {"NewImage": {"label": {"S": [{"wildcard": "s3://labels/*.pdf"}]}}}}, SHIPPED, True),
    case("wildcard-two", {"eventSourceARN": [{"wildcard": "arn:aws:dynamodb:us-east-1:*:table/*"}]}, SHIPPED, True),
    case("wildcard-no", {"eventSourceARN": [{"wildcard": "arn:aws:dynamodb:eu-west-1:*:table/*"}]}, SHIPPED, False),
    case("wildcard-empty-matches-empty-only", {"dynamodb": {"NewImage": {"status": {"S": [{"wildcard": ""}]}}}}, SHIPPED, False),
    case("wildcard-escaped-star", {"name": [{"wildcard": "a\\*b"}]}, {"name": "a*b"}, True),
    case("wildcard-escaped-star-is-literal", {"name": [{"wildcard": "a\\*b"}]}, {"name": "axxb"}, False),
    case("wildcard-no-star-is-exact", {"name": [{"wildcard": "ab"}]}, {"name": "abc"}, False),
    # --- cidr (EventBridge; not in the Lambda operator list) -------------------------------
    case("cidr-ipv4", {"detail": {"sourceIp": [{"cidr": "10.0.0.0/24"}]}}, PLAIN, True),
    case("cidr-ipv4-no", {"detail": {"sourceIp": [{"cidr": "10.0.1.0/24"}]}}, PLAIN, False),
    case("cidr-ipv6", {"detail": {"ipv6": [{"cidr": "2001:db8:1234:1a00::/64"}]}}, PLAIN, True),
    case("cidr-not-an-ip", {"detail": {"state": [{"cidr": "10.0.0.0/8"}]}}, PLAIN, False),
    # --- $or and several matchers in one array ---------------------------------------------
    case("or-first-branch", {"$or": [{"eventName": ["REMOVE"]}, {"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}]}, REMOVED_BY_TTL, True),
    case("or-second-branch", {"$or": [{"eventName": ["REMOVE"]}, {"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}]}, SHIPPED, True),
    case("or-no-branch", {"$or": [{"eventName": ["REMOVE"]}, {"dynamodb": {"NewImage": {"status": {"S": ["PENDING"]}}}}]}, SHIPPED, False),
    case("or-nested-with-and", {"eventName": ["INSERT"], "dynamodb": {"$or": [{"Keys": {"sk": {"S": ["META"]}}}, {"SizeBytes": [0]}]}}, SHIPPED, True),
    case("array-of-operators-is-or", {"dynamodb": {"NewImage": {"status": {"S": [{"prefix": "PEND"}, {"suffix": "PED"}]}}}}, SHIPPED, True),
    case("exists-false-or-value", {"dynamodb": {"NewImage": {"carrier": {"S": [{"exists": False}, "DHL"]}}}}, MODIFIED, True),
    # --- nesting and arrays of objects -----------------------------------------------------
    case("array-objects-same-element", {"detail": {"lines": {"sku": ["B-2"], "qty": [5]}}}, PLAIN, True),
    case("array-objects-different-elements-no", {"detail": {"lines": {"sku": ["A-1"], "qty": [5]}}}, PLAIN, False),
    case("dotted-pattern-key", {"detail.state": ["running"]}, PLAIN, True),
    case("object-where-event-has-string-no", {"detail": {"state": {"name": ["running"]}}}, PLAIN, False),
]


@pytest.mark.parametrize("pattern, event, expected", MATCH_CASES)
def test_it_matches_like_aws(pattern, event, expected):
    assert compile_pattern(json.dumps(pattern)).matches(event) is expected


# Case-insensitive operators beyond ASCII. event-ruler does not fold the event value: its
# EqualsIgnoreCaseParser (src/main/software/amazon/event/ruler/input/EqualsIgnoreCaseParser.java)
# turns each UTF-16 unit of the *pattern* into {toLowerCase(Locale.ROOT), toUpperCase(Locale.ROOT)}
# as UTF-8 byte strings, and the event's bytes must spell one of those forms at every position.
# DefaultParser.parse sends equals-ignore-case, prefix/equals-ignore-case and
# anything-but/equals-ignore-case there; SuffixEqualsIgnoreCaseParser does the same for suffix,
# reversed. Every expected value below follows from that rule, and every one was also checked by
# running event-ruler itself (aws/event-ruler@337e8d9, Machine.rulesForJSONEvent, OpenJDK 17).
# Escapes are used wherever a character has a look-alike (KELVIN SIGN, combining marks).
def on_city(operator):
    return {"dynamodb": {"NewImage": {"city": {"S": [operator]}}}}


def city(value):
    return record(new={"city": {"S": value}})


def ignore_case(id_, text, value, expected):
    return case(id_, on_city({"equals-ignore-case": text}), city(value), expected)


def prefix_ignore_case(id_, text, value, expected):
    return case(id_, on_city({"prefix": {"equals-ignore-case": text}}), city(value), expected)


def suffix_ignore_case(id_, text, value, expected):
    return case(id_, on_city({"suffix": {"equals-ignore-case": text}}), city(value), expected)


def anything_but_ignore_case(id_, texts, value, expected):
    return case(id_, on_city({"anything-but": {"equals-ignore-case": texts}}), city(value), expected)


KELVIN = "\u212a"  # KELVIN SIGN: lower-cases to ASCII "k", upper-cases to itself
I_DOT = "\u0130"  # LATIN CAPITAL LETTER I WITH DOT ABOVE: lower-cases to "i" + U+0307
DOTLESS_I = "\u0131"  # LATIN SMALL LETTER DOTLESS I: upper-cases to ASCII "I"
FI = "\ufb01"  # LATIN SMALL LIGATURE FI: upper-cases to "FI"
CAPITAL_SHARP_S = "\u1e9e"  # LATIN CAPITAL LETTER SHARP S: lower-cases to "ß"
DZ_TITLE = "\u01c5"  # LATIN CAPITAL LETTER D WITH SMALL LETTER Z WITH CARON (title case)
IOTA_DIALYTIKA_TONOS = "\u0390"  # upper-cases to three characters, U+0399 U+0308 U+0301
GRINNING_FACE = "\U0001f600"  # outside the BMP: two UTF-16 units in Java

IGNORE_CASE_CASES = [
    # --- the two smallest inputs ------------------------------------------------------
    ignore_case("issue-sharp-s-matches-upper-ss", "straße", "STRASSE", True),
    ignore_case("issue-k-not-kelvin-sign", "k", KELVIN, False),
    # --- ß: its forms are "ß" and "SS", and "ss" is neither ----------------------------------
    ignore_case("sharp-s-not-lower-ss", "straße", "strasse", False),
    ignore_case("sharp-s-itself-in-upper-word", "straße", "STRAßE", True),
    ignore_case("sharp-s-title-word", "straße", "Straße", True),
    ignore_case("sharp-s-mixed-case-around", "straße", "StraSSe", True),
    ignore_case("sharp-s-half-upper-ss-no", "straße", "STRAsSE", False),
    ignore_case("upper-ss-pattern-not-sharp-s", "STRASSE", "straße", False),
    ignore_case("ascii-ss-pattern-not-sharp-s", "ss", "ß", False),
    ignore_case("sharp-s-alone-upper-ss", "ß", "SS", True),
    ignore_case("sharp-s-not-capital-sharp-s", "ß", CAPITAL_SHARP_S, False),
    ignore_case("capital-sharp-s-lower-form", CAPITAL_SHARP_S, "ß", True),
    ignore_case("capital-sharp-s-not-ss", CAPITAL_SHARP_S, "SS", False),
    # --- KELVIN SIGN: only the pattern's own forms count ----------------------------------------
    ignore_case("ascii-k-matches-upper-k", "k", "K", True),
    ignore_case("ascii-upper-k-not-kelvin-sign", "K", KELVIN, False),
    ignore_case("kelvin-sign-matches-ascii-k", KELVIN, "k", True),
    ignore_case("kelvin-sign-not-ascii-upper-k", KELVIN, "K", False),
    ignore_case("kelvin-sign-itself", KELVIN, KELVIN, True),
    # --- dotted and dotless i (Locale.ROOT, not Turkish) ---------------------------------------
    ignore_case("dotted-capital-i-lower-form", I_DOT, "i\u0307", True),
    ignore_case("dotted-capital-i-not-ascii-i", I_DOT, "i", False),
    ignore_case("dotted-capital-i-not-ascii-upper-i", I_DOT, "I", False),
    ignore_case("ascii-i-not-dotted-capital-i", "i", I_DOT, False),
    ignore_case("ascii-i-not-dotless-i", "i", DOTLESS_I, False),
    ignore_case("dotless-i-matches-ascii-upper-i", DOTLESS_I, "I", True),
    ignore_case("dotless-i-not-ascii-i", DOTLESS_I, "i", False),
    # --- sigma: each character is cased alone, so there is no final-sigma rule -----------------
    ignore_case("capital-sigma-word-lower-sigma", "ΟΔΟΣ", "οδοσ", True),
    ignore_case("capital-sigma-word-not-final-sigma", "ΟΔΟΣ", "οδος", False),
    ignore_case("final-sigma-matches-capital", "ς", "Σ", True),
    ignore_case("final-sigma-not-medial-sigma", "ς", "σ", False),
    ignore_case("medial-sigma-not-final-sigma", "σ", "ς", False),
    # --- ligatures, title case, multi-character and non-Latin mappings -------------------------
    ignore_case("fi-ligature-upper-form", FI, "FI", True),
    ignore_case("fi-ligature-not-lower-fi", FI, "fi", False),
    ignore_case("ascii-fi-not-ligature", "fi", FI, False),
    ignore_case("title-case-dz-not-itself", DZ_TITLE, DZ_TITLE, False),
    ignore_case("title-case-dz-lower-form", DZ_TITLE, "\u01c6", True),
    ignore_case("title-case-dz-upper-form", DZ_TITLE, "\u01c4", True),
    ignore_case("greek-three-character-upper-form", IOTA_DIALYTIKA_TONOS, "\u0399\u0308\u0301", True),
    ignore_case("cherokee-upper-pattern-lower-event", "\u13a0", "\uab70", True),
    ignore_case("cherokee-lower-pattern-upper-event", "\uab70", "\u13a0", True),
    # event-ruler's ByteMachineTest (testEqualsIgnoreCase...DifferentByteLength...): forms of
    # different UTF-8 lengths (ⱥ is 3 bytes, Ⱥ is 2) and multi-character upper forms.
    ignore_case("different-byte-lengths", "12\u2c6534", "12\u023a34", True),
    ignore_case("greek-mixed-forms", "\u03b0\u0240\u0250\u0390\u03b0\u1fc6\u212a",
                "\u03a5\u0308\u0301\u0240\u2c6f\u0390\u03a5\u0308\u0301\u0397\u0342k", True),
    ignore_case("greek-mixed-forms-other", "\u03b0\u0240\u0250\u0390\u03b0\u1fc6\u212a",
                "\u03b0\u2c7f\u0250\u0399\u0308\u0301\u03b0\u1fc6\u212a", True),
    ignore_case("greek-mixed-forms-no", "\u03b0\u0240\u0250\u0390\u03b0\u1fc6\u212a",
                "\u03a5\u0308\u0301\u023f\u2c6f\u0390\u03a5\u0308\u0301\u0397\u0342k", False),
    # --- outside the BMP: Java cases each surrogate alone, and UTF-8 writes a lone one as "?" ---
    ignore_case("astral-character-not-itself", GRINNING_FACE, GRINNING_FACE, False),
    ignore_case("astral-character-two-question-marks", GRINNING_FACE, "??", True),
    ignore_case("astral-character-after-letter", "a" + GRINNING_FACE, "A??", True),
    # --- empty pattern ---------------------------------------------------------------------------
    ignore_case("empty-matches-empty", "", "", True),
    ignore_case("empty-not-text", "", "a", False),
    # --- prefix --------------------------------------------------------------------------------
    prefix_ignore_case("prefix-k-not-kelvin-sign", "k", KELVIN + "elvin", False),
    prefix_ignore_case("prefix-k-upper", "k", "Kelvin", True),
    prefix_ignore_case("prefix-sharp-s-upper-ss", "straß", "STRASSENBAHN", True),
    prefix_ignore_case("prefix-sharp-s-not-lower-ss", "straß", "strasse", False),
    prefix_ignore_case("prefix-upper-ss-not-sharp-s", "STRASS", "straße", False),
    prefix_ignore_case("prefix-astral-question-marks", GRINNING_FACE, "??x", True),
    prefix_ignore_case("prefix-astral-not-itself", GRINNING_FACE, GRINNING_FACE + "x", False),
    prefix_ignore_case("prefix-empty-matches-all", "", "x", True),
    # --- suffix (SuffixEqualsIgnoreCaseParser: the same forms, matched from the end) -------------
    suffix_ignore_case("suffix-sharp-s-upper-ss", "ße", "STRASSE", True),
    suffix_ignore_case("suffix-sharp-s-not-lower-ss", "ße", "strasse", False),
    suffix_ignore_case("suffix-sharp-s-alone", "ß", "GROSS", True),
    suffix_ignore_case("suffix-k-not-kelvin-sign", "k", "5" + KELVIN, False),
    suffix_ignore_case("suffix-kelvin-sign-ascii-k", KELVIN, "5k", True),
    suffix_ignore_case("suffix-kelvin-sign-not-ascii-upper-k", KELVIN, "5K", False),
    suffix_ignore_case("suffix-fi-ligature-upper-form", FI, "WIFI", True),
    suffix_ignore_case("suffix-fi-ligature-not-lower-fi", FI, "wifi", False),
    suffix_ignore_case("suffix-three-character-upper-form", IOTA_DIALYTIKA_TONOS, "x\u0399\u0308\u0301", True),
    suffix_ignore_case("suffix-empty-matches-all", "", "x", True),
    # --- anything-but ----------------------------------------------------------------------------
    anything_but_ignore_case("anything-but-sharp-s-upper-ss-no", "straße", "STRASSE", False),
    anything_but_ignore_case("anything-but-sharp-s-lower-ss", "straße", "strasse", True),
    anything_but_ignore_case("anything-but-k-kelvin-sign", "k", KELVIN, True),
    anything_but_ignore_case("anything-but-k-upper-no", "k", "K", False),
    anything_but_ignore_case("anything-but-list-upper-ss-no", ["k", "ß"], "SS", False),
    anything_but_ignore_case("anything-but-list-lower-ss", ["k", "ß"], "ss", True),
    anything_but_ignore_case("anything-but-list-kelvin-sign", ["k", "ß"], KELVIN, True),
    anything_but_ignore_case("anything-but-list-non-ascii-pattern-ascii-event-no", ["x", KELVIN], "k", False),
    anything_but_ignore_case("anything-but-empty-no", "", "", False),
    anything_but_ignore_case("anything-but-empty-text", "", "x", True),
]


@pytest.mark.parametrize("pattern, event, expected", IGNORE_CASE_CASES)
def test_it_matches_case_insensitively_like_event_ruler(pattern, event, expected):
    assert compile_pattern(json.dumps(pattern)).matches(event) is expected


INVALID_CASES = [
    pytest.param("{\"eventName\": [\"INSERT\"]", "not valid JSON", id="truncated-json"),
    pytest.param("{'eventName': ['INSERT']}", "not valid JSON", id="single-quotes"),
    pytest.param("INSERT", "not valid JSON", id="bare-word"),
    pytest.param('["INSERT"]', "must be a JSON object", id="array-pattern"),
    pytest.param('"INSERT"', "must be a JSON object", id="string-pattern"),
    pytest.param('{"eventName": "INSERT"}', '"eventName" must be an object or an array', id="leaf-not-array"),
    pytest.param('{"dynamodb": {"SizeBytes": 42}}', '"dynamodb.SizeBytes" must be an object or an array', id="nested-leaf-not-array"),
    pytest.param('{"eventName": []}', "empty arrays are not allowed", id="empty-array"),
    pytest.param("{}", "empty objects are not allowed", id="empty-object"),
    pytest.param('{"a": [["x"]]}', "a match value must be", id="nested-array-value"),
    pytest.param('{"a": [{"EXISTS": true}]}', "unrecognized match type EXISTS", id="operator-case"),
    pytest.param('{"a": [{"contains": "x"}]}', "unrecognized match type contains", id="unknown-operator"),
    pytest.param('{"a": [{"prefix": "x", "suffix": "y"}]}', "exactly one key", id="two-operators-one-object"),
    pytest.param('{"a": [{"exists": "yes"}]}', "exists match pattern must be either true or false", id="exists-not-boolean"),
    pytest.param('{"a": [{"prefix": 1}]}', "prefix match pattern must be a string", id="prefix-number"),
    pytest.param('{"a": [{"prefix": ["x"]}]}', "prefix match pattern must be a string", id="prefix-list"),
    pytest.param('{"a": [{"suffix": [".png"]}]}', "suffix match pattern must be a string", id="suffix-list"),
    pytest.param('{"a": [{"equals-ignore-case": ["x"]}]}', "equals-ignore-case match pattern must be a string", id="ignore-case-list"),
    pytest.param('{"a": [{"numeric": 5}]}', "value of numeric must be an array", id="numeric-not-array"),
    pytest.param('{"a": [{"numeric": [">", 0, "<"]}]}', "operator/value pairs", id="numeric-dangling-operator"),
    pytest.param('{"a": [{"numeric": [">", "0"]}]}', "must be numeric", id="numeric-string-bound"),
    pytest.param('{"a": [{"numeric": ["!=", 0]}]}', "unrecognized numeric range operator", id="numeric-unknown-operator"),
    pytest.param('{"a": [{"numeric": [">", 0, ">", 1]}]}', "bad numeric range operator: >", id="numeric-two-lower-bounds"),
    pytest.param('{"a": [{"numeric": ["<", 5, ">", 1]}]}', "bad numeric range operator", id="numeric-upper-first"),
    pytest.param('{"a": [{"numeric": [">", 5, "<", 1]}]}', "lower bound 5.0 must be below upper bound 1.0", id="numeric-empty-range"),
    pytest.param('{"a": [{"numeric": ["=", 5, "<", 9]}]}', 'numeric "=" cannot be combined', id="numeric-equals-plus-bound"),
    pytest.param('{"a": [{"anything-but": null}]}', "value of anything-but must be", id="anything-but-null"),
    pytest.param('{"a": [{"anything-but": ["x", null]}]}', "only strings and numbers", id="anything-but-list-null"),
    pytest.param('{"a": [{"anything-but": [true]}]}', "only strings and numbers", id="anything-but-list-boolean"),
    pytest.param('{"a": [{"anything-but": {"prefix": ""}}]}', "anything-but/prefix may not be empty", id="anything-but-empty-prefix"),
    pytest.param('{"a": [{"anything-but": {"suffix": 1}}]}', "anything-but/suffix match pattern must be a string", id="anything-but-suffix-number"),
    pytest.param('{"a": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]}', "anything-but/prefix must be a string", id="anything-but-prefix-ignore-case"),
    pytest.param('{"a": [{"anything-but": {"equals-ignore-case": 1}}]}', "only strings are supported", id="anything-but-ignore-case-number"),
    pytest.param('{"a": [{"anything-but": {"numeric": [">", 1]}}]}', "anything-but does not support", id="anything-but-numeric"),
    pytest.param('{"a": [{"wildcard": 1}]}', "wildcard match pattern must be a string", id="wildcard-number"),
    pytest.param('{"a": [{"wildcard": "a**b"}]}', "consecutive wildcard characters at position 2", id="wildcard-double-star"),
    pytest.param('{"a": [{"wildcard": "a\\\\b"}]}', "invalid escape", id="wildcard-bad-escape"),
    pytest.param('{"a": [{"wildcard": "*:*:*:*:*:event-bus/*"}]}', "too complex", id="wildcard-too-complex"),
    pytest.param('{"a": [{"cidr": "10.0.0.1"}]}', 'exactly one "/" is required', id="cidr-no-mask"),
    pytest.param('{"a": [{"cidr": "10.0.0.0/x"}]}', "mask bits must be an integer", id="cidr-bad-mask"),
    pytest.param('{"a": [{"cidr": "10.0.300.0/24"}]}', "nonstandard IP address", id="cidr-bad-address"),
    pytest.param('{"$or": [{"a": ["x"]}, "b"]}', "every $or alternative must be an object", id="or-alternative-not-object"),
    pytest.param('{"a": [NaN]}', "not valid JSON", id="nan"),
    pytest.param('{"a": ["' + "x" * MAX_PATTERN_LENGTH + '"]}', "the limit is 4096", id="too-long"),
]


@pytest.mark.parametrize("text, reason", INVALID_CASES)
def test_it_refuses_patterns_aws_refuses(text, reason):
    with pytest.raises(InvalidPattern) as excinfo:
        compile_pattern(text)
    assert reason in str(excinfo.value)


def test_it_reports_invalid_patterns_as_value_errors():
    with pytest.raises(ValueError):
        compile_pattern('{"eventName": "INSERT"}')


def test_it_lets_the_last_duplicate_key_win():
    # The JSON text has "status" twice; like Lambda, only the last one counts.
    pattern = compile_pattern('{"dynamodb": {"NewImage": {"status": {"S": ["PENDING"], "S": ["SHIPPED"]}}}}')
    assert pattern.matches(SHIPPED) is True


def test_it_accepts_a_pattern_at_the_length_limit():
    filler = "x" * (MAX_PATTERN_LENGTH - len('{"a": [""]}'))
    text = '{"a": ["' + filler + '"]}'
    assert len(text) == MAX_PATTERN_LENGTH
    assert compile_pattern(text).matches({"a": filler}) is True


def test_it_reaches_dotted_event_keys_through_nested_patterns():
    pattern = compile_pattern('{"detail": {"c": {"count": [{"numeric": [">", 0]}]}}}')
    assert pattern.matches({"detail": {"c.count": 2}}) is True
    assert pattern.matches({"detail": {"c.count": 0}}) is False


def test_it_keeps_the_pattern_text():
    text = '{"eventName": ["INSERT"]}'
    pattern = compile_pattern(text)
    assert isinstance(pattern, Pattern)
    assert pattern.text == text
