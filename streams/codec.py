"""DynamoDB typed JSON ("wire format") to plain Python and back, without losing anything.

Wire format is what the DynamoDB Streams HTTP API sends: {"S": "x"}, {"N": "12.5"},
{"B": "<base64>"}, {"SS": [...]}, {"NS": ["1", "2"]}, {"BS": ["<base64>", ...]},
{"NULL": true}, {"BOOL": false}, {"M": {...}}, {"L": [...]}. Shardwatch stores images in
this form, so this module is the one place that knows how to read and write it.

No Django here: the ingestion workers and the tests import it directly.
"""

import base64
import binascii
import json
import re
from collections.abc import Mapping, Set
from decimal import Decimal

__all__ = [
    "WireFormatError",
    "decode",
    "decode_item",
    "encode",
    "encode_item",
    "is_mask",
    "item_key",
    "nul_escape",
    "number_canonical",
    "to_display",
    "typed_entry",
]

# DynamoDB's documented number limits: 38 significant digits, magnitudes from 1E-130 up to
# 9.9999999999999999999999999999999999999E+125. DynamoDB (and DynamoDB Local) strip leading
# and trailing zeros before counting, so 100000000000000000000000000000000000000 is accepted.
MAX_SIGNIFICANT_DIGITS = 38
MIN_ADJUSTED_EXPONENT = -130
MAX_ADJUSTED_EXPONENT = 125

# Decimal() alone also accepts " 1 ", "1_000", "NaN" and "Infinity", none of which DynamoDB
# ever sends; a stream that did would be broken and we want to hear about it.
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# What streams.masking puts in place of a masked value, inside its type tag ({"N": "•••"}): the
# inner of a masked value is one of these whatever the tag, so anything that reads typed values
# for people checks is_mask before reading the inner as its tag promises. Neither can be base64,
# so a masked B is never taken for binary.
MASK_REDACTED = "\u2022\u2022\u2022"
MASK_HASH_PREFIX = "hmac:"
_MASK_HASH = re.compile(r"hmac:[0-9a-f]{16}")


def is_mask(inner) -> bool:
    """Whether a typed value's inner is a masking stand-in (MASK_REDACTED or a hash)."""
    return type(inner) is str and (inner == MASK_REDACTED or _MASK_HASH.fullmatch(inner) is not None)


# DynamoDB strings, and so attribute names and key values, may hold U+0000: "Strings are
# Unicode with UTF-8 binary encoding" and names "must be encoded using UTF-8" (developer guide,
# "Supported data types and naming rules in Amazon DynamoDB"), with no character excluded.
# PostgreSQL's text columns cannot hold it, nor can jsonb (its json type can, as the escape
# \u0000: PostgreSQL docs, "JSON Types"). Text Shardwatch derives from items for its own
# columns (the partition key shown, filters given in URLs) writes it as JSON writes it, these
# six characters; item_key and diff paths are JSON text and write it so already.
NUL_STAND_IN = "\\u0000"


def nul_escape(*, text: str) -> str:
    """`text` with each U+0000 written as NUL_STAND_IN (the six characters \\u0000), so that
    PostgreSQL's text columns take it and SQLite keeps the same text. A text that already holds
    those six characters reads the same afterwards: the stand-in is for matching, not decoding."""
    return text.replace("\x00", NUL_STAND_IN) if "\x00" in text else text


class WireFormatError(ValueError):
    """A value is not valid DynamoDB typed JSON."""


def _b64decode(text):
    if type(text) is not str:
        raise WireFormatError(f"binary value must be a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise WireFormatError(f"invalid base64 in binary value: {error}") from None


def _b64encode(data):
    return base64.b64encode(data).decode("ascii")


def _decode_number(text):
    if type(text) is not str or not _NUMBER.fullmatch(text):
        raise WireFormatError(f"not a DynamoDB number: {text!r}")
    # Decimal(str) is exact whatever the context precision: no rounding, no float on the way.
    return Decimal(text)


def _decode_s(inner):
    if type(inner) is not str:
        raise WireFormatError(f"S must hold a string, got {type(inner).__name__}")
    return inner


def _decode_bool(inner):
    if type(inner) is not bool:
        raise WireFormatError(f"BOOL must hold true or false, got {inner!r}")
    return inner


def _decode_null(inner):
    if inner is not True:
        raise WireFormatError(f"NULL must hold true, got {inner!r}")
    return None


def _set_members(tag, inner):
    if type(inner) is not list:
        raise WireFormatError(f"{tag} must hold a list, got {type(inner).__name__}")
    if not inner:
        raise WireFormatError(f"{tag} is empty; DynamoDB never stores an empty set")
    return inner


def _decode_ss(inner):
    return {_decode_s(member) for member in _set_members("SS", inner)}


def _decode_ns(inner):
    return {_decode_number(member) for member in _set_members("NS", inner)}


def _decode_bs(inner):
    return {_b64decode(member) for member in _set_members("BS", inner)}


def _decode_m(inner):
    if type(inner) is not dict:
        raise WireFormatError(f"M must hold an object, got {type(inner).__name__}")
    return {name: decode(value) for name, value in inner.items()}


def _decode_l(inner):
    if type(inner) is not list:
        raise WireFormatError(f"L must hold a list, got {type(inner).__name__}")
    return [decode(value) for value in inner]


_DECODERS = {
    "S": _decode_s,
    "N": _decode_number,
    "B": _b64decode,
    "SS": _decode_ss,
    "NS": _decode_ns,
    "BS": _decode_bs,
    "NULL": _decode_null,
    "BOOL": _decode_bool,
    "M": _decode_m,
    "L": _decode_l,
}


def typed_entry(value) -> tuple[str, object]:
    """(tag, inner) of a typed value. DynamoDB Local writes an empty map as {} instead of
    {"M": {}} in stream images (GetItem is fine). Ingest stores it as {"M": {}}
    (streams.shapes.image_reshape), but records stored before it did may still hold {}, so {}
    is read as an empty map."""
    if type(value) is not dict:
        raise WireFormatError(f"a typed value must be an object, got {type(value).__name__}")
    if len(value) == 1:
        for entry in value.items():
            return entry
    if not value:
        return "M", {}
    raise WireFormatError(f"a typed value must have exactly one type tag, got {sorted(value)}")


def decode(value: dict):
    """Plain Python for one typed value.

    S -> str, N -> Decimal (built from the exact digits, never through float), B -> bytes,
    SS/NS/BS -> set of str/Decimal/bytes, NULL -> None, BOOL -> bool, M -> dict, L -> list.
    Raises WireFormatError for anything DynamoDB would not send.
    """
    tag, inner = typed_entry(value)
    try:
        decoder = _DECODERS[tag]
    except (KeyError, TypeError):
        raise WireFormatError(f"unknown DynamoDB type tag {tag!r}") from None
    return decoder(inner)


def decode_item(image: dict) -> dict:
    """Plain Python for a whole image or Keys map (attribute name -> typed value)."""
    if type(image) is not dict:
        raise WireFormatError(f"an item must be an object, got {type(image).__name__}")
    return {name: decode(value) for name, value in image.items()}


def _encode_number(value):
    number = Decimal(value)
    if not number.is_finite():
        # TypeError, as boto3's TypeSerializer raises for the same input.
        raise TypeError("Infinity and NaN are not supported by DynamoDB")
    if number:
        digits = number.as_tuple().digits
        significant = len(digits)
        while digits[significant - 1] == 0:
            significant -= 1
        if significant > MAX_SIGNIFICANT_DIGITS:
            raise ValueError(f"{value!r} has {significant} significant digits; DynamoDB keeps at most 38")
        if not MIN_ADJUSTED_EXPONENT <= number.adjusted() <= MAX_ADJUSTED_EXPONENT:
            raise ValueError(f"{value!r} is outside DynamoDB's number range (1E-130 to 9.99...E+125)")
    return str(value) if type(value) is int else str(number)


def _encode_set(value):
    members = list(value)
    if not members:
        # boto3 sends {"SS": []} and DynamoDB then refuses the whole request; fail here instead.
        raise ValueError("DynamoDB does not allow empty sets")
    if all(isinstance(member, str) for member in members):
        return {"SS": sorted(members)}
    if all(isinstance(member, (bytes, bytearray)) for member in members):
        return {"BS": [_b64encode(member) for member in sorted(bytes(member) for member in members)]}
    numbers = []
    for member in members:
        if isinstance(member, float):
            raise TypeError("Float types are not supported. Use Decimal types instead.")
        if isinstance(member, bool) or not isinstance(member, (int, Decimal)):
            raise TypeError(
                "set members must be all str, all bytes or all int/Decimal; "
                f"got {type(member).__name__} {member!r}"
            )
        numbers.append(_encode_number(member))
    return {"NS": sorted(numbers, key=Decimal)}


def encode(value) -> dict:
    """Wire format for a plain Python value; the inverse of decode().

    None -> NULL, bool -> BOOL, str -> S, int/Decimal -> N (str() of the value, so the digits
    are kept exactly), bytes/bytearray -> B (base64), set/frozenset -> SS/NS/BS (members
    sorted, so the output is deterministic), Mapping -> M (str keys only), list/tuple -> L.
    Like boto3, float raises TypeError: it cannot carry an exact decimal. Empty sets and numbers
    DynamoDB would reject (over 38 significant digits, outside 1E-130..9.99E+125) raise ValueError.
    """
    if value is None:
        return {"NULL": True}
    if value is True or value is False:
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (int, Decimal)):
        return {"N": _encode_number(value)}
    if isinstance(value, float):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    if isinstance(value, (bytes, bytearray)):
        return {"B": _b64encode(value)}
    if isinstance(value, Set):
        return _encode_set(value)
    if isinstance(value, Mapping):
        return {"M": encode_item(value)}
    if isinstance(value, (list, tuple)):
        return {"L": [encode(member) for member in value]}
    raise TypeError(f"Unsupported type {type(value).__name__} for value {value!r}")


def encode_item(item: Mapping) -> dict:
    """Wire format for a whole item (attribute name -> plain value)."""
    encoded = {}
    for name, value in item.items():
        if not isinstance(name, str):
            raise TypeError(f"attribute names must be str, got {type(name).__name__} {name!r}")
        encoded[name] = encode(value)
    return encoded


# DynamoDB's own spelling of a stored number; most keys already match and skip Decimal.
_CANONICAL_NUMBER = re.compile(r"-?(?:[1-9][0-9]*(?:\.[0-9]*[1-9])?|0\.[0-9]*[1-9])|0")
# Built once: json.dumps() with options builds a new encoder on every call.
_key_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical_number(text):
    """A number the way DynamoDB writes numbers it stores: plain digits, no exponent, no
    leading or trailing zeros ("1.00" -> "1", "1E+2" -> "100", "-0" -> "0")."""
    if _CANONICAL_NUMBER.fullmatch(text):
        return text
    number = Decimal(text)
    if not number:
        return "0"
    # format "f" writes every digit exactly; it never rounds the way normalize() would.
    plain = format(number, "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def number_canonical(text: str) -> str:
    """A DynamoDB number as DynamoDB spells what it stores ("1.00" -> "1", "1E+2" -> "100").
    Raises ValueError (decimal.InvalidOperation) for text that is not a number."""
    if type(text) is not str or not _NUMBER.fullmatch(text):
        raise ValueError(f"not a DynamoDB number: {text!r}")
    return _canonical_number(text)


def item_key(keys: dict) -> str:
    """Canonical string for a record's typed Keys map, used to find an item's history:
    compact JSON with sorted names, keys in wire format (B as base64).

    Number key values are rewritten in DynamoDB's own spelling first. DynamoDB Local echoes
    the request's spelling in the Keys of UpdateItem records (sk {"N": "1.00"} for the item
    whose sk is 1), and one item must give one key string.
    """
    for value in keys.values():
        if "N" in value and not _CANONICAL_NUMBER.fullmatch(value["N"]) and not is_mask(value["N"]):
            keys = {
                name: {"N": _canonical_number(value["N"])} if "N" in value and not is_mask(value["N"]) else value
                for name, value in keys.items()
            }
            break
    return _key_json(keys)


def to_display(value: dict):
    """A JSON-safe plain value for showing a typed value to people.

    The choice: S -> str, N -> str of the exact digits (a JSON number would pass through
    float in the browser and lose digits), B -> base64 str, SS/BS -> sorted list of str,
    NS -> list of digit strings sorted numerically, NULL -> None, BOOL -> bool, M -> dict,
    L -> list. The type tags are dropped, so N "1" and S "1" look alike: pages that must tell
    them apart (the diff view) keep the typed value next to this. A masked value
    (streams.masking) gives its stand-in text, whatever its tag.
    """
    tag, inner = typed_entry(value)
    if is_mask(inner):
        return inner
    if tag == "S" or tag == "N" or tag == "B" or tag == "BOOL":
        return inner
    if tag == "M":
        return {name: to_display(member) for name, member in inner.items()}
    if tag == "L":
        return [to_display(member) for member in inner]
    if tag == "NULL":
        return None
    if tag == "SS" or tag == "BS":
        return sorted(inner)
    if tag == "NS":
        return sorted(inner, key=Decimal)
    raise WireFormatError(f"unknown DynamoDB type tag {tag!r}")
