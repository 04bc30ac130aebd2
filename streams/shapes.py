"""Stream images in AWS's shape: every attribute value, at any depth, in one of DynamoDB's
typed forms, as AWS sends it.

DynamoDB Local writes an empty map into stream images untyped ({} for {"M": {}};
awslabs/amazon-dynamodb-local-samples#37). Ingest puts such values into AWS's shape once, on
the way in, so that everything built from the stored text (Lambda events, patterns, pages)
agrees with AWS; what cannot be typed without guessing is kept as sent and named.

No Django here, as in codec.py.
"""

import json
import re

from streams.codec import WireFormatError, decode

# The JSON type each tag holds; M and L are walked, sets must be non-empty lists of strings,
# NULL holds true.
_INNER_TYPE = {
    "S": str, "N": str, "B": str, "BOOL": bool, "NULL": bool,
    "SS": list, "NS": list, "BS": list, "M": dict, "L": list,
}
_SET_TAGS = frozenset({"SS", "NS", "BS"})


def _reshaped(value, where, problems):
    """value in a typed form: the very same object when it already was one. `where` is the
    path as nested (parent, name or index) pairs, spelt out only for a problem."""
    if type(value) is dict:
        if len(value) == 1:
            for tag, inner in value.items():  # the one entry, without building a list
                break
            if type(inner) is _INNER_TYPE.get(tag):
                if tag == "M":
                    shaped = _reshaped_map(inner, where, problems)
                    return value if shaped is inner else {"M": shaped}
                if tag == "L":
                    shaped = _reshaped_list(inner, where, problems)
                    return value if shaped is inner else {"L": shaped}
                if tag == "NULL":
                    if inner is True:
                        return value
                elif tag in _SET_TAGS:
                    if inner and all(type(member) is str for member in inner):
                        return value
                else:
                    return value
        elif not value:
            return {"M": {}}
    elif type(value) is list and not value:
        return {"L": []}
    problems.append((where, value))
    return value


def _reshaped_map(members, where, problems):
    copy = None
    for name, value in members.items():
        shaped = _reshaped(value, (where, name), problems)
        if shaped is not value:
            if copy is None:
                copy = dict(members)
            copy[name] = shaped
    return members if copy is None else copy


def _reshaped_list(members, where, problems):
    copy = None
    for index, value in enumerate(members):
        shaped = _reshaped(value, (where, index), problems)
        if shaped is not value:
            if copy is None:
                copy = list(members)
            copy[index] = shaped
    return members if copy is None else copy


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _path_text(where) -> str:
    """(((("NewImage", "items"), 0), "weird.name") as NewImage.items[0]["weird.name"]: the
    diff's spelling of paths (streams/diff.py)."""
    parts = []
    while type(where) is tuple:
        where, step = where
        parts.append(step)
    text = where
    for step in reversed(parts):
        if type(step) is int:
            text += f"[{step}]"
        elif _PLAIN_NAME.fullmatch(step):
            text += f".{step}"
        else:
            text += f"[{json.dumps(step, ensure_ascii=False)}]"
    return text


def _why(value) -> str:
    try:
        decode(value)
    except WireFormatError as error:
        return str(error)
    except RecursionError:
        return "nested deeper than DynamoDB allows"
    return "not a typed value"


def image_reshape(*, image, name: str) -> tuple[object, list[str]]:
    """Keys, OldImage or NewImage (attribute name -> typed value) with every value, at any
    depth in M and L, in one of DynamoDB's typed forms, as AWS sends it.

    Returns (image, problems). The image is the very object passed in when nothing had to
    change, which is the case for everything AWS sends; otherwise a copy in which

    - {} is {"M": {}}: DynamoDB Local 3.x writes an empty map into stream images untyped,
      at any depth and from every kind of write, where AWS and DynamoDB Local 2.x send
      {"M": {}} (awslabs/amazon-dynamodb-local-samples#37; checked on DynamoDB Local 3.3.1
      in tests/streams/test_image_shapes.py);
    - [] is {"L": []}: where a typed value belongs a JSON array can only be an empty list,
      as DynamoDB stores no empty set. DynamoDB Local 3.3.1 sends {"L": []} itself; this is
      for a source that drops the tag of both empty collections.

    Any other value in no typed form could be put into one only by guessing, so it is kept as
    sent and named in `problems` as "<path>: <why>", paths spelt as in diffs
    ('NewImage.tags: SS is empty; DynamoDB never stores an empty set'). An image that is not
    an object is one problem. Only the JSON shape is checked: whether N holds a number and B
    base64 is decode()'s business. Never raises.
    """
    if type(image) is not dict:
        return image, [f"{name}: an image must be an object, got {type(image).__name__}"]
    found: list = []
    try:
        shaped = _reshaped_map(image, name, found)
    except RecursionError:
        # DynamoDB nests at most 32 levels; what is nested past Python's stack is kept whole.
        return image, [f"{name}: nested deeper than DynamoDB allows"]
    return shaped, [f"{_path_text(where)}: {_why(value)}" for where, value in found]
