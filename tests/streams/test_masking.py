"""streams.masking on its own: the paths a rule may name, what each mode leaves of a value, and
how images and diffs are masked. No database: Masking is built from rules directly, as
streams.records.masking_load builds it."""

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from streams import codec
from streams.diff import diff_images
from streams.masking import ANY_DEPTH, ANY_ONE, CHANGES_REMOVED, Masking, MaskingError, Wildcard, rule_path_parse
from streams.rows import feed_row

SOURCE = 7
KEY = b"test-masking-key"
R = codec.MASK_REDACTED


def masking(*rules):
    """A Masking of `rules` (path text, mode) on SOURCE."""
    return Masking(rules_by_source={SOURCE: tuple((rule_path_parse(path), mode) for path, mode in rules)}, key=KEY)


def hashed(value):
    return Masking(key=KEY).value_hash(value)


@pytest.mark.parametrize(("text", "segments"), [
    ("card", ("card",)),
    ("  card  ", ("card",)),
    ("address.city", ("address", "city")),
    ("items[0].sku", ("items", 0, "sku")),
    ('order["ship to"]', ("order", "ship to")),
    ('["a.b"]', ("a.b",)),
    ('["a]b"].c', ("a]b", "c")),
    ("user-id.e-mail", ("user-id", "e-mail")),
    ("*.ssn", (ANY_ONE, "ssn")),
    ("**.ssn", (ANY_DEPTH, "ssn")),
    ("items.*", ("items", ANY_ONE)),
    ('["*"]', ("*",)),
    ("m[3][4]", ("m", 3, 4)),
])
def test_it_reads_the_paths_the_diff_writes_and_the_wildcards(text, segments):
    assert rule_path_parse(text) == segments


def test_it_tells_a_quoted_star_from_the_wildcard():
    (literal,) = rule_path_parse('["*"]')
    (wildcard,) = rule_path_parse("*")
    assert not isinstance(literal, Wildcard)
    assert wildcard is ANY_ONE


@pytest.mark.parametrize(("text", "message"), [
    ("", "The path is empty."),
    ("   ", "The path is empty."),
    ("a" * 513, "The path is over 512 characters."),
    (".a", "Empty name at character 1"),
    ("a..b", "Empty name at character 3"),
    ("a.", "'a.' ends with a dot."),
    ("a[0", "Unclosed [ at character 2"),
    ("items[*]", "[*]: write a wildcard as a segment of its own, .* (items.* for every element of items)"),
    ("a[x]", "[x] must be a list index (a whole number) or a quoted name such as [\"x\"]."),
    ('a["b]', "Bad quoted name at character 2"),
    ('a["b"', "Unclosed [ at character 2"),
    ("card*", "'card*': * and ** stand alone as a segment; write a name holding * as [\"card*\"]."),
    ("a.***", "'***': * and ** stand alone"),
    ("a[0]b", "Expected . or [ at character 5"),
    ("a b", "Expected . or [ at character 2"),
])
def test_it_refuses_unreadable_paths_saying_why(text, message):
    with pytest.raises(MaskingError) as refused:
        rule_path_parse(text)
    assert message in str(refused.value)


def test_it_refuses_wildcards_where_only_names_may_stand():
    with pytest.raises(MaskingError, match="'\\*' is not a name here"):
        rule_path_parse("a.*", wildcards=False)
    assert rule_path_parse('a["*"]', wildcards=False) == ("a", "*")


def test_it_redacts_keeping_the_type_tag():
    image = {"pk": {"S": "A"}, "card": {"S": "4111"}, "n": {"N": "12"}, "m": {"M": {"x": {"S": "y"}}}}
    shown = masking(("card", "redact"), ("n", "redact"), ("m", "redact")).image_mask(image, source_id=SOURCE)
    assert shown == {"pk": {"S": "A"}, "card": {"S": R}, "n": {"N": R}, "m": {"M": R}}


def test_it_hashes_to_a_tagged_hmac_of_sixteen_hex_digits():
    shown = masking(("card", "hash")).image_mask({"card": {"S": "4111"}}, source_id=SOURCE)
    (value,) = shown["card"].values()
    assert list(shown["card"]) == ["S"]
    assert re.fullmatch(r"hmac:[0-9a-f]{16}", value) and codec.is_mask(value)
    assert shown["card"] == hashed({"S": "4111"})


def test_it_hashes_equal_values_equally_and_different_values_differently():
    assert hashed({"N": "1.0"}) == hashed({"N": "1"})
    assert hashed({"NS": ["2", "1.0"]}) == hashed({"NS": ["1", "2"]})
    assert hashed({"M": {"a": {"N": "1.50"}}}) == hashed({"M": {"a": {"N": "1.5"}}})
    assert hashed({"S": "4111"}) != hashed({"S": "4112"})
    assert hashed({"N": "1"})["N"] != hashed({"S": "1"})["S"]
    # Another key gives other hashes: the key is what makes them unguessable.
    assert Masking(key=b"another").value_hash({"S": "4111"}) != hashed({"S": "4111"})


def test_it_removes_an_attribute_altogether():
    shown = masking(("card", "remove")).image_mask({"pk": {"S": "A"}, "card": {"S": "4111"}}, source_id=SOURCE)
    assert shown == {"pk": {"S": "A"}}


@pytest.mark.parametrize(("rules", "expected"), [
    ([("card", "hash"), ("card", "redact")], {"pk": {"S": "A"}, "card": {"S": R}}),
    ([("card", "redact"), ("card", "hash")], {"pk": {"S": "A"}, "card": {"S": R}}),
    ([("card", "hash"), ("card", "remove"), ("card", "redact")], {"pk": {"S": "A"}}),
    ([("**", "hash"), ("card", "remove")], None),  # checked below
])
def test_it_lets_the_strongest_mode_win_remove_then_redact_then_hash(rules, expected):
    image = {"pk": {"S": "A"}, "card": {"S": "4111"}}
    shown = masking(*rules).image_mask(image, source_id=SOURCE)
    if expected is None:
        assert shown == {"pk": hashed({"S": "A"})}
    else:
        assert shown == expected


def test_it_lets_a_wildcard_rule_win_over_a_weaker_named_one():
    shown = masking(("*.ssn", "redact"), ("person.ssn", "hash")).image_mask(
        {"person": {"M": {"ssn": {"S": "123"}}}}, source_id=SOURCE)
    assert shown == {"person": {"M": {"ssn": {"S": R}}}}


def test_it_matches_one_level_with_a_star():
    image = {
        "ssn": {"S": "top"},
        "a": {"M": {"ssn": {"S": "one"}, "b": {"M": {"ssn": {"S": "two"}}}}},
        "l": {"L": [{"M": {"ssn": {"S": "in list"}}}]},
    }
    shown = masking(("*.ssn", "redact")).image_mask(image, source_id=SOURCE)
    assert shown["ssn"] == {"S": "top"}
    assert shown["a"] == {"M": {"ssn": {"S": R}, "b": {"M": {"ssn": {"S": "two"}}}}}
    # A list element is a level: l[0].ssn is two levels below the top.
    assert shown["l"] == {"L": [{"M": {"ssn": {"S": "in list"}}}]}


def test_it_matches_any_depth_with_two_stars_none_included():
    image = {
        "ssn": {"S": "top"},
        "a": {"M": {"ssn": {"S": "one"}, "b": {"M": {"ssn": {"S": "two"}, "keep": {"S": "k"}}}}},
        "l": {"L": [{"M": {"ssn": {"S": "in list"}}}, {"S": "plain"}]},
    }
    shown = masking(("**.ssn", "redact")).image_mask(image, source_id=SOURCE)
    assert shown == {
        "ssn": {"S": R},
        "a": {"M": {"ssn": {"S": R}, "b": {"M": {"ssn": {"S": R}, "keep": {"S": "k"}}}}},
        "l": {"L": [{"M": {"ssn": {"S": R}}}, {"S": "plain"}]},
    }


def test_it_masks_list_elements_by_index_and_by_star():
    image = {"cards": {"L": [{"S": "4111"}, {"S": "5500"}, {"S": "3400"}]}}
    assert masking(("cards[1]", "redact")).image_mask(image, source_id=SOURCE) == {
        "cards": {"L": [{"S": "4111"}, {"S": R}, {"S": "3400"}]}}
    assert masking(("cards.*", "hash")).image_mask(image, source_id=SOURCE) == {
        "cards": {"L": [hashed({"S": "4111"}), hashed({"S": "5500"}), hashed({"S": "3400"})]}}
    assert masking(("cards[0]", "remove")).image_mask(image, source_id=SOURCE) == {
        "cards": {"L": [{"S": "5500"}, {"S": "3400"}]}}
    # An index names a list element, never a map key spelt as that number.
    assert masking(("m[0]", "redact")).image_mask({"m": {"M": {"0": {"S": "x"}}}}, source_id=SOURCE) == {
        "m": {"M": {"0": {"S": "x"}}}}


def test_it_masks_names_that_need_quoting():
    image = {"ship to": {"S": "home"}, "a.b": {"S": "dotted"}, "a": {"M": {"b": {"S": "nested"}}}}
    shown = masking(('["ship to"]', "redact"), ('["a.b"]', "redact")).image_mask(image, source_id=SOURCE)
    assert shown == {"ship to": {"S": R}, "a.b": {"S": R}, "a": {"M": {"b": {"S": "nested"}}}}


def test_it_takes_a_quoted_star_as_the_name_star_only():
    image = {"*": {"S": "starred"}, "other": {"S": "kept"}}
    assert masking(('["*"]', "redact")).image_mask(image, source_id=SOURCE) == {"*": {"S": R}, "other": {"S": "kept"}}
    assert masking(("*", "redact")).image_mask(image, source_id=SOURCE) == {"*": {"S": R}, "other": {"S": R}}


def test_it_masks_inside_a_map_only_what_a_rule_reaches():
    image = {"address": {"M": {"city": {"S": "Lyon"}, "street": {"S": "1 rue X"}}}}
    assert masking(("address.street", "redact")).image_mask(image, source_id=SOURCE) == {
        "address": {"M": {"city": {"S": "Lyon"}, "street": {"S": R}}}}


def test_it_folds_a_change_below_a_masked_map_into_one_change_of_the_map():
    old = {"pk": {"S": "A"}, "address": {"M": {"city": {"S": "Lyon"}, "zip": {"S": "69001"}}}}
    new = {"pk": {"S": "A"}, "address": {"M": {"city": {"S": "Paris"}, "zip": {"S": "75001"}}}}
    changes = diff_images(old=old, new=new)
    assert {change["path"] for change in changes} == {"address.city", "address.zip"}
    for mode in ("redact", "hash"):
        shown = masking(("address", mode)).diff_mask(changes, source_id=SOURCE)
        assert shown == [{"path": "address", "kind": "changed", "old": {"M": R}, "new": {"M": R}}]
    assert masking(("address", "remove")).diff_mask(changes, source_id=SOURCE) == []


def test_it_masks_a_changed_value_as_the_images_do():
    changes = diff_images(old={"card": {"S": "4111"}, "note": {"S": "a"}}, new={"card": {"S": "5500"}, "note": {"S": "b"}})
    shown = masking(("card", "hash")).diff_mask(changes, source_id=SOURCE)
    assert shown == [
        {"path": "card", "kind": "changed", "old": hashed({"S": "4111"}), "new": hashed({"S": "5500"})},
        {"path": "note", "kind": "changed", "old": {"S": "a"}, "new": {"S": "b"}},
    ]
    redacted = masking(("card", "redact")).diff_mask(changes, source_id=SOURCE)
    assert redacted[0] == {"path": "card", "kind": "changed", "old": {"S": R}, "new": {"S": R}}


def test_it_masks_the_members_a_set_change_adds_and_removes():
    changes = diff_images(old={"tags": {"SS": ["a", "secret-old"]}}, new={"tags": {"SS": ["a", "secret-new"]}})
    (change,) = changes
    assert change["added"] == ["secret-new"] and change["removed"] == ["secret-old"]

    (redacted,) = masking(("tags", "redact")).diff_mask(changes, source_id=SOURCE)
    assert redacted["added"] == [R] and redacted["removed"] == [R]
    assert redacted["old"] == {"SS": R} and redacted["new"] == {"SS": R}

    (hashed_change,) = masking(("tags", "hash")).diff_mask(changes, source_id=SOURCE)
    assert hashed_change["added"] == [hashed({"S": "secret-new"})["S"]]
    assert hashed_change["removed"] == [hashed({"S": "secret-old"})["S"]]
    assert "secret" not in repr(hashed_change)


def test_it_keeps_an_empty_side_of_a_set_change_empty():
    changes = diff_images(old={"tags": {"SS": ["a"]}}, new={"tags": {"SS": ["a", "b"]}})
    (redacted,) = masking(("tags", "redact")).diff_mask(changes, source_id=SOURCE)
    assert redacted["added"] == [R] and redacted["removed"] == []


def test_it_drops_the_changes_of_a_removed_attribute():
    changes = diff_images(old={"card": {"S": "4111"}, "n": {"S": "a"}}, new={"n": {"S": "b"}})
    shown = masking(("card", "remove")).diff_mask(changes, source_id=SOURCE)
    assert [change["path"] for change in shown] == ["n"]


def test_it_masks_within_a_changed_map_that_a_rule_reaches_below():
    changes = diff_images(old={"pk": {"S": "A"}}, new={"pk": {"S": "A"}, "person": {"M": {"ssn": {"S": "123"}, "name": {"S": "Ann"}}}})
    (shown,) = masking(("**.ssn", "redact")).diff_mask(changes, source_id=SOURCE)
    assert shown["new"] == {"M": {"ssn": {"S": R}, "name": {"S": "Ann"}}}


def test_it_gives_back_what_it_was_given_for_a_source_without_rules():
    rules = masking(("card", "redact"))
    image = {"card": {"S": "4111"}}
    changes = diff_images(old=None, new=image)
    row = {"keys": {"pk": {"S": "A"}}, "new_image": image}

    class Other:
        pk = SOURCE + 1
        key_schema = ["pk"]

    assert rules.image_mask(image, source_id=SOURCE + 1) is image
    assert rules.diff_mask(changes, source_id=SOURCE + 1) is changes
    assert rules.row_mask(row, source=Other) is row
    assert Masking().image_mask(image, source_id=SOURCE) is image
    assert not Masking().active and rules.active


def test_it_never_changes_what_it_was_given():
    image = {"card": {"S": "4111"}, "m": {"M": {"ssn": {"S": "1"}}}}
    changes = diff_images(old=None, new=image)
    before = repr((image, changes))
    rules = masking(("card", "redact"), ("**.ssn", "hash"))
    rules.image_mask(image, source_id=SOURCE)
    rules.diff_mask(changes, source_id=SOURCE)
    assert repr((image, changes)) == before


def test_it_works_out_the_key_and_changed_paths_again_from_masked_values():
    class Source:
        pk = SOURCE
        key_schema = ["pk"]

    row = {
        "keys": {"pk": {"S": "SECRET#1"}},
        "new_image": {"pk": {"S": "SECRET#1"}, "card": {"S": "4111"}},
        "diff": diff_images(old=None, new={"pk": {"S": "SECRET#1"}, "card": {"S": "4111"}}),
        "changed_paths": "\ncard\npk\n",
        "item_key": codec.item_key({"pk": {"S": "SECRET#1"}}),
        "partition_key": "SECRET#1",
        "decode_error": "could not read SECRET#1",
    }
    shown = masking(("pk", "redact"), ("card", "remove")).row_mask(row, source=Source)
    assert shown["partition_key"] == R
    assert shown["keys"] == {"pk": {"S": R}}
    assert shown["changed_paths"] == "\npk\n"
    assert "SECRET" not in repr(shown) and "4111" not in repr(shown)
    assert shown["decode_error"].startswith("(withheld")


def test_it_keeps_the_missing_side_of_an_added_or_removed_map_missing():
    # An INSERT adds customer whole; the rule reaches inside it, and old stays null (not a
    # masked value of no type).
    changes = diff_images(old=None, new={"customer": {"M": {"email": {"S": "a@example.com"}, "name": {"S": "Ann"}}}})

    [added] = masking(("customer.email", "redact")).diff_mask(changes, source_id=SOURCE)

    assert added["old"] is None
    assert added["new"] == {"M": {"email": {"S": codec.MASK_REDACTED}, "name": {"S": "Ann"}}}
    [removed] = masking(("customer.email", "redact")).diff_mask(diff_images(old=added["new"], new=None), source_id=SOURCE)
    assert removed["new"] is None


def test_it_says_so_when_masking_removes_every_change_of_a_record():
    source = SimpleNamespace(pk=SOURCE, table_name="orders", key_schema=["pk"])
    old, new = {"pk": {"S": "o1"}, "note": {"S": "a"}}, {"pk": {"S": "o1"}, "note": {"S": "b"}}
    row = {"id": 1, "event_name": "MODIFY", "keys": {"pk": {"S": "o1"}}, "item_key": "", "partition_key": "o1",
           "diff": diff_images(old=old, new=new), "diff_complete": True,
           "approximate_creation_time": datetime(2026, 11, 30, tzinfo=UTC), "sequence_number": "1",
           "is_ttl_delete": False, "decode_error": ""}

    shown = feed_row(masking(("note", "remove")).row_mask(row, source=source), source=source)
    plain = feed_row(masking(("other", "remove")).row_mask(row, source=source), source=source)

    assert (shown["summary"], shown["paths"]) == (CHANGES_REMOVED, [])
    assert plain["summary"] == 'note: "a" → "b"'
