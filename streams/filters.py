"""Lambda / EventBridge event-pattern matching for stream records, without AWS in the loop.

`compile_pattern(text)` parses and validates a filter pattern once and returns a `Pattern`;
`Pattern.matches(event)` then answers "would Lambda hand this record to the function?".
Patterns AWS refuses raise `InvalidPattern` (a ValueError) with a reason a person can act on.

No Django here: the workers and the tests import it directly.

Semantics (AWS Lambda "Control which events Lambda sends to your function" and EventBridge
"Content filtering in event patterns"; the engine behind both is aws/event-ruler):

- A pattern mirrors the event's structure. Every field named in the pattern must match (AND);
  the values in a leaf array are alternatives (OR); `$or` takes a list of sub-patterns.
- Leaf values: exact strings, numbers (compared numerically, so 5 matches 5.0), true, false,
  null, and the operators prefix, suffix (both optionally {"equals-ignore-case": ...}),
  equals-ignore-case, anything-but (value, list, prefix, suffix, equals-ignore-case,
  wildcard), numeric (=, <, <=, >, >=, and a lower+upper range), exists, wildcard and cidr.
- `[""]` matches only the empty string and `[null]` only null: the two are not interchangeable.
- equals-ignore-case (alone, in prefix/suffix, or in anything-but) is event-ruler's, not a
  case fold: each pattern character stands for its own lower- and upper-case forms and the
  event value is compared as it is ("straße" matches "STRASSE"; "k" does not match KELVIN
  SIGN). The rule and where Python's casing differs from Java's are at `_ignore_case_forms`.
- Arrays in the event match when any element matches. Objects inside arrays are matched
  element by element ("array consistency"): fields matched in different elements of the same
  array do not combine.
- Operators only see leaf values. A field whose value is an object is not a leaf, so
  `{"exists": true}` never matches it and `{"exists": false}` always does. An empty array has
  no leaf values either.
- A missing field only satisfies `{"exists": false}`. A null field is a value: it satisfies
  anything-but (of a string, a number, or a prefix/suffix/wildcard).
- Keys are case sensitive. A dotted pattern key ("state.status") also addresses nested
  objects, and a nested pattern also reaches a literal dotted event key, as in event-ruler.

DynamoDB streams. Lambda matches the record exactly as it is delivered, i.e. DynamoDB's
typed JSON: a pattern has to name the type key (`{"NewImage": {"status": {"S": ["SHIPPED"]}}}`);
stopping at the attribute (`{"status": ["SHIPPED"]}`) never matches because the attribute is
an object, not a leaf. Number attributes arrive as JSON *strings* ({"N": "12.5"}), and the
Lambda docs say "DynamoDB event filtering doesn't support the use of numeric operators
(numeric equals and numeric range)": `{"N": [{"numeric": [">", 10]}]}` is accepted but never
matches a DynamoDB number (AWS-recorded behaviour); match N values as strings instead
(`{"N": ["101"]}`, `{"N": [{"prefix": "1"}]}`). Record metadata that is a real JSON number,
such as `dynamodb.ApproximateCreationDateTime` or `dynamodb.SizeBytes`, does work with numeric.
Lists are "crushed" the same way: `{"Organizations": {"L": {"S": [...]}}}` looks at every
element of an L attribute.
"""

import ipaddress
import json
import re
from decimal import Decimal

__all__ = ["InvalidPattern", "Pattern", "compile_pattern", "MAX_PATTERN_LENGTH"]

# Lambda's FilterCriteria limit (API reference, Filter.Pattern).
MAX_PATTERN_LENGTH = 4096

# EventBridge refuses wildcard patterns whose matcher could have too many states active at
# once ("Rule is too complex"; event-ruler's MachineComplexityEvaluator with a service-side
# budget that is not published). This is an approximation: it accepts realistic patterns
# (ARNs and paths with a few wildcards) and refuses AWS's recorded counter-example
# "*:*:*:*:*:event-bus/*" (six wildcards all reopened by ":").
MAX_WILDCARD_ACTIVE_STATES = 5

_MISSING = object()
_NUMBER_TYPES = (int, float)
_OPERATORS = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "wildcard", "cidr"}
)
_LOWER_BOUNDS = {">": False, ">=": True}
_UPPER_BOUNDS = {"<": False, "<=": True}


class InvalidPattern(ValueError):
    """A pattern AWS would refuse; the message says what is wrong with it."""


class Pattern:
    """A compiled event pattern, built by `compile_pattern`.

    `pattern.matches(event: dict) -> bool` is the compiled closure itself, stored on the
    instance, so a match costs no extra method frame.
    """

    __slots__ = ("text", "matches")

    def __init__(self, text, match):
        self.text = text
        self.matches = match

    def __repr__(self):
        return f"Pattern({self.text!r})"


def compile_pattern(text: str) -> Pattern:
    """Parse and validate a Lambda/EventBridge filter pattern; raise InvalidPattern if AWS would refuse it."""
    if not isinstance(text, str):
        raise InvalidPattern(f"pattern must be a JSON string, not {type(text).__name__}")
    if len(text) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(f"pattern is {len(text)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidPattern(f"pattern is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidPattern(f"pattern must be a JSON object, not {_json_type(obj)}")
    fn, _, _ = _compile_object(obj, "")
    return Pattern(text, fn)


# --- compiling -------------------------------------------------------------------------------


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _NUMBER_TYPES):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_number(value):
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool)


def _compile_object(obj, path):
    """Compile a pattern object; return (match function, whether a missing value satisfies it, chain)."""
    if not obj:
        raise InvalidPattern(f"{_where(path)}empty objects are not allowed")
    children = []
    or_groups = []
    for key, value in obj.items():
        if key == "$or" and isinstance(value, list):
            or_groups.append(_compile_or(value, path))
            continue
        child_path = f"{path}.{key}" if path else key
        head, dot, rest = key.partition(".")
        if dot and head and rest:
            # "a.b" addresses the same leaf as {"a": {"b": ...}} (event-ruler flattens with dots).
            child = _compile_object({rest: value}, child_path)
        else:
            child = _compile_value(value, child_path)
        children.append((head if (dot and head and rest) else key, child))
    return _make_node(tuple(children), tuple(or_groups))


def _compile_or(alternatives, path):
    if not alternatives:
        raise InvalidPattern(f"{_where(path)}$or needs at least one sub-pattern")
    compiled = []
    for alt in alternatives:
        if not isinstance(alt, dict):
            raise InvalidPattern(f"{_where(path)}every $or alternative must be an object, not {_json_type(alt)}")
        fn, ok, _ = _compile_object(alt, path)
        compiled.append((fn, ok))
    return tuple(compiled)


def _compile_value(value, path):
    if isinstance(value, dict):
        return _compile_object(value, path)
    if isinstance(value, list):
        return _compile_leaf(value, path)
    raise InvalidPattern(f'"{path}" must be an object or an array, not {_json_type(value)}')


def _where(path):
    return f'at "{path}": ' if path else ""


def _make_node(children, or_groups):
    """Return (match function, missing_ok, chain); chain is set for single-key nodes."""
    missing_ok = all(ok for _, (_, ok, _) in children) and all(any(ok for _, ok in group) for group in or_groups)
    child_fns = tuple((key, fn, key + ".") for key, (fn, _, _) in children)
    group_fns = tuple(tuple(fn for fn, _ in group) for group in or_groups)

    def node(value):
        kind = type(value)
        if kind is dict:
            get = value.get
            for key, child, dotted in child_fns:
                found = get(key, _MISSING)
                if found is _MISSING:
                    found = _dotted_lookup(value, dotted)
                if not child(found):
                    return False
            for group in group_fns:
                for alternative in group:
                    if alternative(value):
                        break
                else:
                    return False
            return True
        if kind is list:
            # Array consistency: one element has to satisfy the whole sub-pattern.
            empty = True
            for element in _flatten(value):
                empty = False
                if type(element) is dict:
                    if node(element):
                        return True
                elif missing_ok:
                    return True
            return missing_ok if empty else False
        return missing_ok

    if len(children) != 1 or or_groups:
        return node, missing_ok, None
    # A run of single-key objects ({"dynamodb": {"NewImage": {"status": {"S": [...]}}}}) is
    # walked in one loop instead of one call per level; lists fall back to `node` for array
    # consistency. Every level of such a run has the same missing_ok as its leaf.
    key, (child, _, child_chain) = children[0]
    if child_chain is None:
        levels, final = ((key, key + ".", node),), child
    else:
        levels, final = ((key, key + ".", node),) + child_chain[0], child_chain[1]

    def walk(value):
        for key, dotted, level_node in levels:
            kind = type(value)
            if kind is dict:
                found = value.get(key, _MISSING)
                if found is _MISSING:
                    found = _dotted_lookup(value, dotted)
                    if found is _MISSING:
                        return missing_ok
                value = found
            elif kind is list:
                return level_node(value)
            else:
                return missing_ok
        return final(value)

    return walk, missing_ok, (levels, final)


def _dotted_lookup(obj, prefix):
    """Event keys may themselves contain dots ("c.count"); a nested pattern still reaches them."""
    found = None
    for key in obj:
        if "." in key and key.startswith(prefix):
            if found is None:
                found = {}
            found[key[len(prefix):]] = obj[key]
    return _MISSING if found is None else found


def _flatten(items):
    for item in items:
        if type(item) is list:
            yield from _flatten(item)
        else:
            yield item


class _Leaf:
    """What one leaf array accepts, collected per JSON type before it is turned into closures."""

    def __init__(self):
        self.exists_true = False
        self.exists_false = False
        self.strings = set()
        self.string_preds = []
        self.string_always = False
        self.numbers = set()
        self.number_preds = []
        self.number_always = False
        self.bools = set()
        self.bool_always = False
        self.null = False


def _compile_leaf(values, path):
    if not values:
        raise InvalidPattern(f'at "{path}": empty arrays are not allowed')
    leaf = _Leaf()
    for value in values:
        if isinstance(value, str):
            leaf.strings.add(value)
        elif isinstance(value, bool):
            leaf.bools.add(value)
        elif _is_number(value):
            leaf.numbers.add(float(value))
        elif value is None:
            leaf.null = True
        elif isinstance(value, dict):
            _compile_operator(value, path, leaf)
        else:
            raise InvalidPattern(f'at "{path}": a match value must be a string, number, boolean, null or operator object, not {_json_type(value)}')
    return _make_leaf(leaf), leaf.exists_false, None


def _compile_operator(spec, path, leaf):
    if len(spec) != 1:
        raise InvalidPattern(f'at "{path}": an operator object must have exactly one key, got {sorted(spec)}')
    (op, arg), = spec.items()
    if op not in _OPERATORS:
        raise InvalidPattern(f'at "{path}": unrecognized match type {op} (operators are case sensitive)')
    if op == "exists":
        if not isinstance(arg, bool):
            raise InvalidPattern(f'at "{path}": exists match pattern must be either true or false')
        if arg:
            leaf.exists_true = True
        else:
            leaf.exists_false = True
    elif op == "prefix" or op == "suffix":
        leaf.string_preds.append(_affix_pred(op, arg, path))
    elif op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise InvalidPattern(f'at "{path}": equals-ignore-case match pattern must be a string')
        leaf.string_preds.append(_ignore_case_pred(arg, "equals"))
    elif op == "wildcard":
        if not isinstance(arg, str):
            raise InvalidPattern(f'at "{path}": wildcard match pattern must be a string')
        leaf.string_preds.append(_wildcard_pred(arg, path))
    elif op == "numeric":
        _compile_numeric(arg, path, leaf)
    elif op == "cidr":
        leaf.string_preds.append(_cidr_pred(arg, path))
    else:
        _compile_anything_but(arg, path, leaf)


def _affix_pred(op, arg, path):
    ignore_case = False
    if isinstance(arg, dict) and len(arg) == 1 and "equals-ignore-case" in arg:
        arg = arg["equals-ignore-case"]
        ignore_case = True
    if not isinstance(arg, str):
        raise InvalidPattern(f'at "{path}": {op} match pattern must be a string')
    if ignore_case:
        return _ignore_case_pred(arg, op)
    return (lambda v: v.startswith(arg)) if op == "prefix" else (lambda v: v.endswith(arg))


def _compile_numeric(arg, path, leaf):
    if not isinstance(arg, list):
        raise InvalidPattern(f'at "{path}": value of numeric must be an array')
    if not arg or len(arg) % 2:
        raise InvalidPattern(f'at "{path}": numeric needs operator/value pairs, e.g. [">", 0, "<=", 5]')
    pairs = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if not isinstance(op, str) or op not in ("=", "<", "<=", ">", ">="):
            raise InvalidPattern(f'at "{path}": unrecognized numeric range operator: {op!r}')
        if not _is_number(bound):
            raise InvalidPattern(f'at "{path}": value of {op} must be numeric, not {_json_type(bound)}')
        pairs.append((op, float(bound)))
    first_op, first_value = pairs[0]
    if first_op == "=":
        if len(pairs) != 1:
            raise InvalidPattern(f'at "{path}": numeric "=" cannot be combined with other operators')
        leaf.numbers.add(first_value)
        return
    if len(pairs) > 2:
        raise InvalidPattern(f'at "{path}": numeric takes at most one lower and one upper bound')
    low = high = None
    if len(pairs) == 1:
        if first_op in _LOWER_BOUNDS:
            low = (first_value, _LOWER_BOUNDS[first_op])
        else:
            high = (first_value, _UPPER_BOUNDS[first_op])
    else:
        second_op, second_value = pairs[1]
        if first_op not in _LOWER_BOUNDS or second_op not in _UPPER_BOUNDS:
            bad = second_op if first_op in _LOWER_BOUNDS else first_op
            raise InvalidPattern(f'at "{path}": bad numeric range operator: {bad} (write the lower bound (> or >=) first, then the upper bound (< or <=))')
        if first_value >= second_value:
            raise InvalidPattern(f'at "{path}": bad numeric range: lower bound {first_value} must be below upper bound {second_value}')
        low = (first_value, _LOWER_BOUNDS[first_op])
        high = (second_value, _UPPER_BOUNDS[second_op])
    leaf.number_preds.append(_range_pred(low, high))


def _range_pred(low, high):
    if high is None:
        bound, inclusive = low
        return (lambda f: f >= bound) if inclusive else (lambda f: f > bound)
    if low is None:
        bound, inclusive = high
        return (lambda f: f <= bound) if inclusive else (lambda f: f < bound)
    (lo, lo_incl), (hi, hi_incl) = low, high
    if lo_incl and hi_incl:
        return lambda f: lo <= f <= hi
    if lo_incl:
        return lambda f: lo <= f < hi
    if hi_incl:
        return lambda f: lo < f <= hi
    return lambda f: lo < f < hi


def _compile_anything_but(arg, path, leaf):
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise InvalidPattern(f'at "{path}": anything-but takes one of prefix, suffix, equals-ignore-case or wildcard')
        (op, inner), = arg.items()
        items = inner if isinstance(inner, list) else [inner]
        if isinstance(inner, list) and not inner:
            raise InvalidPattern(f'at "{path}": empty arrays are not allowed')
        if op in ("prefix", "suffix"):
            if isinstance(inner, dict):
                raise InvalidPattern(f'at "{path}": value of anything-but/{op} must be a string or an array of strings')
            for item in items:
                if not isinstance(item, str):
                    raise InvalidPattern(f'at "{path}": anything-but/{op} match pattern must be a string')
                if not item:
                    raise InvalidPattern(f'at "{path}": anything-but/{op} may not be empty')
            affixes = tuple(items)
            if op == "prefix":
                leaf.string_preds.append(lambda v: not v.startswith(affixes))
            else:
                leaf.string_preds.append(lambda v: not v.endswith(affixes))
        elif op == "equals-ignore-case":
            for item in items:
                if not isinstance(item, str):
                    raise InvalidPattern(f'at "{path}": inside anything-but/equals-ignore-case only strings are supported')
            leaf.string_preds.append(_anything_but_ignore_case_pred(items))
        elif op == "wildcard":
            preds = []
            for item in items:
                if not isinstance(item, str):
                    raise InvalidPattern(f'at "{path}": anything-but/wildcard match pattern must be a string')
                preds.append(_wildcard_pred(item, path))
            preds = tuple(preds)
            leaf.string_preds.append(lambda v: not any(p(v) for p in preds))
        else:
            raise InvalidPattern(f'at "{path}": anything-but does not support {op!r}; use prefix, suffix, equals-ignore-case or wildcard')
        # Numbers, booleans and null are never a prefix/suffix/... of anything: they all pass.
        leaf.number_always = leaf.bool_always = leaf.null = True
        return
    if isinstance(arg, list):
        if not arg:
            raise InvalidPattern(f'at "{path}": empty arrays are not allowed')
        items = arg
        for item in items:
            if not (isinstance(item, str) or _is_number(item)):
                raise InvalidPattern(f'at "{path}": inside an anything-but list only strings and numbers are supported, not {_json_type(item)}')
    elif isinstance(arg, str) or _is_number(arg):
        items = [arg]
    else:
        raise InvalidPattern(f'at "{path}": value of anything-but must be a string, a number, an array of them, or an object')
    strings = frozenset(item for item in items if isinstance(item, str))
    numbers = frozenset(float(item) for item in items if not isinstance(item, str))
    if strings:
        leaf.string_preds.append(lambda v: v not in strings)
    else:
        leaf.string_always = True
    if numbers:
        leaf.number_preds.append(lambda f: f not in numbers)
    else:
        leaf.number_always = True
    leaf.bool_always = leaf.null = True


# --- case-insensitive operators --------------------------------------------------------------
#
# event-ruler never folds the event value. Its EqualsIgnoreCaseParser
# (src/main/software/amazon/event/ruler/input/EqualsIgnoreCaseParser.java) walks the *pattern*
# one Java `char` (UTF-16 unit) at a time and turns each into the set
# {String.valueOf(c).toLowerCase(Locale.ROOT), String.valueOf(c).toUpperCase(Locale.ROOT)} as
# UTF-8 bytes (a single byte string when the two are equal). The byte machine then accepts an
# event value whose bytes spell one member of each set, in order. DefaultParser.parse routes
# equals-ignore-case, prefix/equals-ignore-case and anything-but/equals-ignore-case there, and
# SuffixEqualsIgnoreCaseParser builds the same sets for suffix/equals-ignore-case, matched from
# the end. Consequences, all tested against event-ruler itself:
#   - a form can be several characters: "ß" accepts "ß" or "SS" (never "ss"), "ﬁ" accepts "ﬁ"
#     or "FI", and U+0390 (ΐ) accepts itself or U+0399 U+0308 U+0301 (three characters);
#   - the pattern character itself need not be a form: title-case "ǅ" (U+01C5) accepts only
#     "ǆ" and "Ǆ";
#   - only the pattern's forms count: "k" accepts "k"/"K" but not KELVIN SIGN, while KELVIN SIGN
#     accepts "k" and itself but not "K".
#
# Where Python's str.lower()/str.upper() differ from Java's Locale.ROOT mappings, and how each
# is handled here:
#   - Java cases each char as a one-char string; Python's lower() of a whole string applies
#     the final-sigma rule ("ΟΔΟΣ".lower() == "οδος"). So, like event-ruler, every character
#     is cased alone. Alone, "Σ" lower-cases to "σ" in both languages, and "İ" (U+0130) to
#     "i" + U+0307 in both (unconditional in SpecialCasing.txt; Locale.ROOT is not Turkish,
#     so "I" and "i" keep their ASCII partners).
#   - Java's String.toUpperCase uses the full SpecialCasing mappings (not the one-char
#     Character.toUpperCase), as Python's str.upper() does: ß → "SS", ŉ → "ʼN".
#   - Python iterates code points, Java iterates UTF-16 units. A character outside the BMP is a
#     surrogate pair in Java; each lone surrogate cases to itself and String.getBytes(UTF_8)
#     writes it as "?". So such a character (an emoji, or a cased letter like Deseret 𐐀) in an
#     ignore-case pattern demands "??" in the event, and never matches itself. This is mirrored:
#     the pattern side gets "?" per UTF-16 unit. (Event strings from DynamoDB are valid UTF-8,
#     so they hold no lone surrogates to compare against.)
#   - The Unicode version. Python uses its own unicodedata tables (3.12: Unicode 15.0), the JVM
#     its own (Java 17: 13.0, Java 21: 15.0); AWS does not say which JVM runs its filters. All
#     65,536 UTF-16 units were compared with OpenJDK 17: identical except the ten letters first
#     cased in Unicode 14 (U+2C2F/U+2C5F, U+A7C0/U+A7C1, U+A7D0/U+A7D1, U+A7D6..U+A7D9), which
#     Java 17 leaves as they are. We follow the interpreter's tables, i.e. we agree with a JVM
#     of the same Unicode version (Python 3.12 with Java 20/21).
#   - str.casefold() is not used anywhere: it folds both sides (ß → "ss", KELVIN SIGN → "k"),
#     which is the behaviour event-ruler does not have.
# (event-ruler's static Ruler.matchesRule lower-cases both sides instead. What is mirrored
# here is its Machine, the compiled matcher that the issue ran side by side with Shardwatch.)


def _ignore_case_forms(text):
    """event-ruler's EqualsIgnoreCaseParser: per UTF-16 unit of `text`, the tuple of strings it accepts there."""
    forms = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:
            forms.append(("??",))  # two lone surrogates, each written as "?" by Java's UTF-8 encoder
        elif 0xD800 <= code <= 0xDFFF:
            forms.append(("?",))
        else:
            lower, upper = char.lower(), char.upper()
            forms.append((lower,) if lower == upper else (lower, upper))
    return forms


def _ignore_case_regex(forms, reverse=False):
    # No BMP character has one form that is a prefix of its other form, so at most one
    # alternative of a group can match at any position: the regex never backtracks far,
    # whatever the pattern (up to MAX_PATTERN_LENGTH) and the value.
    parts = []
    for alternatives in reversed(forms) if reverse else forms:
        if reverse:
            alternatives = tuple(form[::-1] for form in alternatives)
        if len(alternatives) == 1:
            parts.append(re.escape(alternatives[0]))
        else:
            parts.append("(?:" + "|".join(re.escape(form) for form in alternatives) + ")")
    return re.compile("".join(parts))


def _ignore_case_pred(text, anchor):
    """Return v -> bool for equals-ignore-case ("equals") or prefix/suffix with equals-ignore-case.

    `text` is the pattern string; the predicate takes the event's string value. The rule is
    event-ruler's (see the comment above). Everything is worked out here, at compile time.
    """
    if text.isascii():
        # Every ASCII character's Locale.ROOT forms are ASCII, one character each, and are
        # exactly Python's lower()/upper() of it. An ASCII pattern therefore matches exactly the
        # ASCII strings equal to it after lower(); the isascii() test (O(1) in CPython) is what
        # keeps KELVIN SIGN, which Python lower-cases to "k", out. It comes second so that a
        # value that differs costs no more than the plain lower() comparison did.
        lowered = text.lower()
        size = len(text)
        if anchor == "equals":
            return lambda v: v.lower() == lowered and v.isascii()
        if not size:
            return lambda v: True
        if anchor == "prefix":
            def prefix_matches(v):
                head = v[:size]
                return head.lower() == lowered and head.isascii()
            return prefix_matches

        def suffix_matches(v):
            tail = v[-size:]
            return tail.lower() == lowered and tail.isascii()
        return suffix_matches
    forms = _ignore_case_forms(text)
    if anchor == "suffix":
        # Forms differ in length (ß or SS), so the suffix's start is unknown: match the
        # reversed pattern against the reversed value, as event-ruler walks the bytes backwards.
        reversed_match = _ignore_case_regex(forms, reverse=True).match
        return lambda v: reversed_match(v[::-1]) is not None
    regex = _ignore_case_regex(forms)
    match = regex.match if anchor == "prefix" else regex.fullmatch
    return lambda v: match(v) is not None


def _anything_but_ignore_case_pred(texts):
    """anything-but/equals-ignore-case: true for a string value that equals-ignore-case matches none of `texts`."""
    ascii_lowered = frozenset(text.lower() for text in texts if text.isascii())
    # A non-ASCII pattern can still match an ASCII value (KELVIN SIGN matches "k", ß matches
    # "SS"), so those are checked whatever the value is.
    others = tuple(_ignore_case_pred(text, "equals") for text in texts if not text.isascii())
    if not others:
        return lambda v: not (v.lower() in ascii_lowered and v.isascii())

    def matches_none(v):
        if v.lower() in ascii_lowered and v.isascii():
            return False
        for other in others:
            if other(v):
                return False
        return True

    return matches_none


def _cidr_pred(arg, path):
    if not isinstance(arg, str):
        raise InvalidPattern(f'at "{path}": cidr match pattern must be a string')
    address, slash, bits = arg.partition("/")
    if not slash or "/" in bits:
        raise InvalidPattern(f'at "{path}": malformed CIDR {arg!r}, exactly one "/" is required')
    if not bits.isdigit():
        raise InvalidPattern(f'at "{path}": malformed CIDR {arg!r}, mask bits must be an integer')
    try:
        network = ipaddress.ip_network(f"{ipaddress.ip_address(address)}/{int(bits)}", strict=False)
    except ValueError as exc:
        raise InvalidPattern(f'at "{path}": nonstandard IP address in CIDR {arg!r}: {exc}') from None
    low, high, version = int(network.network_address), int(network.broadcast_address), network.version

    def in_network(v):
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            return False
        return ip.version == version and low <= int(ip) <= high

    return in_network


def _wildcard_pred(arg, path):
    """`*` matches any run of characters; `\\*` is a literal star and `\\\\` a literal backslash."""
    parts = [""]  # literal runs between wildcards
    i = 0
    previous_star = False
    while i < len(arg):
        char = arg[i]
        if char == "\\":
            following = arg[i + 1] if i + 1 < len(arg) else ""
            if following not in ("*", "\\"):
                raise InvalidPattern(f'at "{path}": invalid escape in wildcard pattern at position {i}: only \\* and \\\\ are allowed')
            parts[-1] += following
            i += 2
            previous_star = False
            continue
        if char == "*":
            if previous_star:
                raise InvalidPattern(f'at "{path}": consecutive wildcard characters at position {i}')
            parts.append("")
            previous_star = True
        else:
            parts[-1] += char
            previous_star = False
        i += 1
    if len(parts) > 2 and _wildcard_active_states(parts) > MAX_WILDCARD_ACTIVE_STATES:
        raise InvalidPattern(f'at "{path}": wildcard pattern {arg!r} is too complex; use fewer wildcards or fewer repeated characters after a wildcard')
    if len(parts) == 1:
        literal = parts[0]
        return lambda v: v == literal
    if len(parts) == 2:
        head, tail = parts
        if not tail:
            return lambda v: v.startswith(head)
        if not head:
            return lambda v: v.endswith(tail)
        minimum = len(head) + len(tail)
        return lambda v: len(v) >= minimum and v.startswith(head) and v.endswith(tail)
    regex = re.compile(".*".join(re.escape(part) for part in parts), re.DOTALL)
    fullmatch = regex.fullmatch
    return lambda v: fullmatch(v) is not None


def _wildcard_active_states(parts):
    """How many wildcards can be live at once: each needs the literal after it to be re-seen.

    A wildcard stays open while the input keeps offering the first character of the literal
    that follows it; wildcards followed by the same character can therefore all be live
    together. This is a cheap stand-in for event-ruler's machine-complexity evaluation.
    """
    followers = {}
    for literal in parts[1:]:
        if literal:
            followers[literal[0]] = followers.get(literal[0], 0) + 1
    return max(followers.values(), default=0) + 1 if followers else 1


def _make_leaf(leaf):
    exists_false = leaf.exists_false
    string_ok = _string_matcher(leaf)
    other_ok = _other_matcher(leaf)

    def scalar_ok(v):
        return string_ok(v) if type(v) is str else other_ok(v)

    def match(v):
        kind = type(v)
        if kind is str:
            return string_ok(v)
        if kind is dict or v is _MISSING:
            return exists_false
        if kind is list:
            seen = False
            for element in _flatten(v):
                if type(element) is dict:
                    continue
                seen = True
                if scalar_ok(element):
                    return True
            return exists_false if not seen else False
        return other_ok(v)

    return match


def _string_matcher(leaf):
    if leaf.exists_true or leaf.string_always:
        return lambda v: True
    strings = frozenset(leaf.strings)
    preds = tuple(leaf.string_preds)
    if not preds:
        return strings.__contains__
    if not strings and len(preds) == 1:
        return preds[0]
    return lambda v: v in strings or any(p(v) for p in preds)


def _other_matcher(leaf):
    """Numbers, booleans and null."""
    if leaf.exists_true:
        return lambda v: True
    numbers = frozenset(leaf.numbers)
    number_preds = tuple(leaf.number_preds)
    number_always = leaf.number_always
    bools = frozenset(leaf.bools)
    bool_always = leaf.bool_always
    null_ok = leaf.null

    def match(v):
        if v is None:
            return null_ok
        kind = type(v)
        if kind is bool:
            return bool_always or v in bools
        if kind is int or kind is float or kind is Decimal or isinstance(v, _NUMBER_TYPES):
            if number_always:
                return True
            f = float(v)
            if f in numbers:
                return True
            for pred in number_preds:
                if pred(f):
                    return True
            return False
        return False

    return match
