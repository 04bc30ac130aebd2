import pytest

from streams.diff import diff_images, record_diff, summarize
from tests.support.fixture_records import load_capture, load_records, record_at_step

BOTH = "getrecords_new_and_old_images"


def S(text):
    return {"S": text}


def N(text):
    return {"N": text}


def M(**members):
    return {"M": members}


def L(*members):
    return {"L": list(members)}


def changed(path, old, new):
    return {"path": path, "kind": "changed", "old": old, "new": new}


def added(path, new):
    return {"path": path, "kind": "added", "old": None, "new": new}


def removed(path, old):
    return {"path": path, "kind": "removed", "old": old, "new": None}


def type_changed(path, old, new):
    return {"path": path, "kind": "type_changed", "old": old, "new": new}


def set_changed(path, old, new, *, plus, minus):
    return {"path": path, "kind": "changed", "old": old, "new": new, "added": plus, "removed": minus}


def diff_of(step, capture=BOTH):
    record = record_at_step(capture, step)
    return record_diff(
        event_name=record["eventName"],
        view_type=record["dynamodb"]["StreamViewType"],
        old_image=record["dynamodb"].get("OldImage"),
        new_image=record["dynamodb"].get("NewImage"),
    )


DEEP_PATH = "deep" + "[0].k" * 15 + "[0]"

# (old image, new image, expected changes)
DIFF_CASES = {
    "equal-items": ({"a": S("x"), "n": N("1")}, {"n": N("1"), "a": S("x")}, []),
    "both-empty": ({}, {}, []),
    "string-changed": ({"status": S("PENDING")}, {"status": S("SHIPPED")},
                       [changed("status", S("PENDING"), S("SHIPPED"))]),
    "empty-string-to-text": ({"note": S("")}, {"note": S("hi")}, [changed("note", S(""), S("hi"))]),
    "attribute-added": ({}, {"tracking": S("1Z")}, [added("tracking", S("1Z"))]),
    "attribute-removed": ({"coupon": S("SAVE10")}, {}, [removed("coupon", S("SAVE10"))]),
    "number-changed": ({"qty": N("1")}, {"qty": N("2")}, [changed("qty", N("1"), N("2"))]),
    "number-respelt-is-no-change": ({"p": N("12.5"), "q": N("1E+2")}, {"p": N("12.500"), "q": N("100")}, []),
    "number-38th-digit": (
        {"big": N("12345678901234567890123456789012345678")},
        {"big": N("12345678901234567890123456789012345679")},
        [changed("big", N("12345678901234567890123456789012345678"), N("12345678901234567890123456789012345679"))],
    ),
    "number-at-range-ends": ({"x": N("1E-130")}, {"x": N("-1E-130")}, [changed("x", N("1E-130"), N("-1E-130"))]),
    "number-to-string": ({"qty": N("1")}, {"qty": S("1")}, [type_changed("qty", N("1"), S("1"))]),
    "bool-flipped": ({"paid": {"BOOL": False}}, {"paid": {"BOOL": True}},
                     [changed("paid", {"BOOL": False}, {"BOOL": True})]),
    "null-to-string": ({"x": {"NULL": True}}, {"x": S("a")}, [type_changed("x", {"NULL": True}, S("a"))]),
    "binary-changed": ({"raw": {"B": "AAE="}}, {"raw": {"B": "AAI="}},
                       [changed("raw", {"B": "AAE="}, {"B": "AAI="})]),
    "string-set-members": (
        {"tags": {"SS": ["b", "new"]}}, {"tags": {"SS": ["shipped", "b", "a"]}},
        [
            set_changed(
                "tags", {"SS": ["b", "new"]}, {"SS": ["shipped", "b", "a"]}, plus=["a", "shipped"], minus=["new"]
            )
        ],
    ),
    "string-set-reordered": ({"tags": {"SS": ["a", "b"]}}, {"tags": {"SS": ["b", "a"]}}, []),
    "number-set-by-value": ({"ns": {"NS": ["1", "2.50"]}}, {"ns": {"NS": ["2.5", "1.0"]}}, []),
    "number-set-members": (
        {"ns": {"NS": ["10", "2"]}}, {"ns": {"NS": ["2", "100", "9"]}},
        [set_changed("ns", {"NS": ["10", "2"]}, {"NS": ["2", "100", "9"]}, plus=["9", "100"], minus=["10"])],
    ),
    "binary-set-members": (
        {"bs": {"BS": ["AQ=="]}}, {"bs": {"BS": ["Ag==", "AQ=="]}},
        [set_changed("bs", {"BS": ["AQ=="]}, {"BS": ["Ag==", "AQ=="]}, plus=["Ag=="], minus=[])],
    ),
    "set-kind-changed": ({"s": {"SS": ["1"]}}, {"s": {"NS": ["1"]}}, [type_changed("s", {"SS": ["1"]}, {"NS": ["1"]})]),
    "nested-map": ({"address": M(city=S("Paris"), zip=S("75001"))}, {"address": M(city=S("Lyon"), zip=S("75001"))},
                   [changed("address.city", S("Paris"), S("Lyon"))]),
    "deeper-map": ({"a": M(b=M(c=N("1")))}, {"a": M(b=M(c=N("2")))}, [changed("a.b.c", N("1"), N("2"))]),
    "key-added-in-map": ({"address": M(city=S("Paris"))}, {"address": M(city=S("Paris"), zip=S("75001"))},
                         [added("address.zip", S("75001"))]),
    "key-removed-in-map": ({"address": M(city=S("Paris"), zip=S("75001"))}, {"address": M(city=S("Paris"))},
                           [removed("address.zip", S("75001"))]),
    "list-element-changed": ({"tags": L(S("a"), S("b"), S("c"))}, {"tags": L(S("a"), S("b"), S("d"))},
                             [changed("tags[2]", S("c"), S("d"))]),
    "list-grew": ({"items": L(N("1"))}, {"items": L(N("1"), N("2"), N("3"))},
                  [added("items[1]", N("2")), added("items[2]", N("3"))]),
    "list-shrank": ({"items": L(N("1"), N("2"))}, {"items": L(N("1"))}, [removed("items[1]", N("2"))]),
    "list-of-maps": ({"items": L(M(sku=S("A-1")), M(sku=S("B-2")))}, {"items": L(M(sku=S("A-1")), M(sku=S("B-3")))},
                     [changed("items[1].sku", S("B-2"), S("B-3"))]),
    "list-element-type": ({"mixed": L(N("1"))}, {"mixed": L(S("1"))}, [type_changed("mixed[0]", N("1"), S("1"))]),
    "map-to-list": ({"x": M(a=S("1"))}, {"x": L(S("1"))}, [type_changed("x", M(a=S("1")), L(S("1")))]),
    "odd-names-quoted": (
        {"weird.name": S("a"), "ship to": M(**{"floor #": N("1")}), "1st": S("x"), "né": S("e")},
        {"weird.name": S("b"), "ship to": M(**{"floor #": N("2")}), "1st": S("y"), "né": S("f")},
        [
            changed('["1st"]', S("x"), S("y")),
            changed('["né"]', S("e"), S("f")),
            changed('["ship to"]["floor #"]', N("1"), N("2")),
            changed('["weird.name"]', S("a"), S("b")),
        ],
    ),
    "local-bare-empty-map": ({"m": {}}, {"m": {"M": {}}}, []),
    "bare-empty-map-gains-key": ({"m": {}}, {"m": M(a=S("x"))}, [added("m.a", S("x"))]),
    "no-old-image": (None, {"b": S("x"), "a": N("1")}, [added("a", N("1")), added("b", S("x"))]),
    "no-new-image": ({"a": N("1")}, None, [removed("a", N("1"))]),
}


@pytest.mark.parametrize("old, new, expected", DIFF_CASES.values(), ids=DIFF_CASES.keys())
def test_it_diffs_images(old, new, expected):
    assert diff_images(old=old, new=new) == expected


def test_it_orders_changes_depth_first_with_names_sorted_and_indexes_in_order():
    old = {"z": N("1"), "b": L(*[N(str(i)) for i in range(12)]), "a": M(y=N("1"), x=N("1"))}
    new = {"z": N("2"), "b": L(*[N(str(i + 1)) for i in range(12)]), "a": M(y=N("2"), x=N("2")), "c": N("1")}

    paths = [change["path"] for change in diff_images(old=old, new=new)]

    assert paths == ["a.x", "a.y"] + [f"b[{i}]" for i in range(12)] + ["c", "z"]


# --- captured records (NEW_AND_OLD_IMAGES) ---------------------------------------------------


def test_it_diffs_the_captured_shipping_update():
    changes, complete = diff_of("ship_order")

    assert complete is True
    assert changes == [
        changed("address.city", S("Paris"), S("Lyon")),
        changed("big", N("12345678901234567890123456789012345678"), N("12345678901234567890123456789012345679")),
        removed("coupon", S("SAVE10")),
        changed("items[0].qty", N("1"), N("3")),
        set_changed("lucky", {"NS": ["7", "13", "42"]}, {"NS": ["7", "8", "13", "42"]}, plus=["8"], minus=[]),
        changed("paid", {"BOOL": False}, {"BOOL": True}),
        type_changed("qty", N("1"), S("1")),
        changed("status", S("PENDING"), S("SHIPPED")),
        set_changed("tags", {"SS": ["gift", "new"]}, {"SS": ["gift", "new", "shipped"]}, plus=["shipped"], minus=[]),
        added("tracking", S("1Z999")),
        changed('["weird.name"]', S("dots"), S("changed")),
    ]


def test_it_diffs_the_captured_list_append_and_nested_map_change():
    changes, _ = diff_of("append_item")

    assert changes == [
        changed("address.geo.lat", N("48.8566"), N("48.85660001")),
        added("items[2]", M(qty=N("1"), sku=S("C-3"))),
    ]


def test_it_diffs_the_captured_set_member_changes():
    changes, _ = diff_of("retag")

    assert changes == [
        set_changed("blobs", {"BS": ["AQ==", "AgM="]}, {"BS": ["AQ==", "AgM=", "BA=="]}, plus=["BA=="], minus=[]),
        set_changed("lucky", {"NS": ["7", "8", "13", "42"]}, {"NS": ["7", "8", "42"]}, plus=[], minus=["13"]),
        changed("mixed[1]", N("1"), N("2")),
        changed('["ship to"]', S("front door"), S("porch")),
        set_changed("tags", {"SS": ["gift", "new", "shipped"]}, {"SS": ["gift", "shipped"]}, plus=[], minus=["new"]),
    ]


def test_it_ignores_a_captured_number_that_was_only_respelt():
    record = record_at_step(BOTH, "respell_and_note")
    # DynamoDB Local kept each UpdateItem's spelling of the unchanged price.
    assert (record["dynamodb"]["OldImage"]["price"], record["dynamodb"]["NewImage"]["price"]) == (
        N("12.500"),
        N("12.5000"),
    )

    changes, _ = diff_of("respell_and_note")

    assert changes == [changed("note", S(""), S("leave at the door"))]


def test_it_diffs_the_captured_replacement_of_a_whole_item():
    changes, _ = diff_of("replace_order")

    by_path = {change["path"]: change for change in changes}
    assert by_path["qty"] == type_changed("qty", S("1"), N("1"))
    assert by_path["status"] == changed("status", S("SHIPPED"), S("ARCHIVED"))
    assert by_path["tags"]["added"] == ["archived"] and by_path["tags"]["removed"] == ["gift", "shipped"]
    assert {change["kind"] for path, change in by_path.items() if path not in ("qty", "status", "tags")} == {"removed"}
    assert len(changes) == 27


def test_it_diffs_the_captured_change_at_the_deepest_nesting():
    changes, _ = diff_of("modify_deep")

    assert changes == [changed(DEEP_PATH, S("bottom"), S("changed"))]


def test_it_lists_every_attribute_of_a_captured_insert_as_added():
    record = record_at_step(BOTH, "insert_order")

    changes, complete = diff_of("insert_order")

    assert complete is True
    assert [change["path"] for change in changes] == [
        "address", "big", "blobs", "coupon", "empty_bin", "empty_list", "empty_map", "fraction", "gone", "greeting",
        "huge", "items", "lucky", "mixed", "neg_huge", "neg_tiny", "note", "paid", "pk", "price", "qty", "raw",
        '["ship to"]', "sk", "status", "tags", "tiny", '["weird.name"]', "zero",
    ]
    assert {change["kind"] for change in changes} == {"added"}
    assert changes[0]["new"] == record["dynamodb"]["NewImage"]["address"]


def test_it_lists_every_attribute_of_a_captured_remove_as_removed():
    changes, complete = diff_of("remove_order")

    assert complete is True
    assert changes == [
        removed("pk", S("order#1")),
        removed("qty", N("1")),
        removed("sk", N("1")),
        removed("status", S("ARCHIVED")),
        removed("tags", {"SS": ["archived"]}),
    ]


# --- view types --------------------------------------------------------------------------

# What each capture's records may honestly say: (step, complete, kinds of the changes).
VIEW_TYPE_CASES = {
    "getrecords_new_and_old_images": {
        "insert_order": (True, {"added"}),
        "ship_order": (True, {"added", "removed", "changed", "type_changed"}),
        "remove_order": (True, {"removed"}),
    },
    "getrecords_new_image": {
        "insert_order": (True, {"added"}),
        "ship_order": (False, set()),
        "remove_order": (False, set()),
    },
    "getrecords_old_image": {
        "insert_order": (False, set()),
        "ship_order": (False, set()),
        "remove_order": (True, {"removed"}),
    },
    "getrecords_keys_only": {
        "insert_order": (False, set()),
        "ship_order": (False, set()),
        "remove_order": (False, set()),
    },
}


@pytest.mark.parametrize(
    "capture, step, complete, kinds",
    [
        (capture, step, complete, kinds)
        for capture, steps in VIEW_TYPE_CASES.items()
        for step, (complete, kinds) in steps.items()
    ],
    ids=[
        f"{capture.removeprefix('getrecords_')}-{step}" for capture, steps in VIEW_TYPE_CASES.items() for step in steps
    ],
)
def test_it_says_only_what_the_view_type_shows(capture, step, complete, kinds):
    changes, is_complete = diff_of(step, capture)

    assert is_complete is complete
    assert {change["kind"] for change in changes} == kinds


def test_it_gives_the_same_insert_and_remove_diffs_from_single_image_streams():
    assert diff_of("insert_order", "getrecords_new_image") == diff_of("insert_order")
    assert diff_of("remove_order", "getrecords_old_image") == diff_of("remove_order")


def test_it_never_claims_a_complete_diff_for_a_captured_modify_without_both_images():
    for capture in ("getrecords_keys_only", "getrecords_new_image", "getrecords_old_image"):
        steps = load_capture(capture)["steps"]
        for step, record in zip(steps, load_records(capture), strict=True):
            if record["eventName"] == "MODIFY":
                assert diff_of(step, capture) == ([], False)


def test_it_ignores_an_image_the_view_type_does_not_promise():
    changes = record_diff(event_name="MODIFY", view_type="NEW_IMAGE", old_image={"a": N("1")}, new_image={"a": N("2")})

    assert changes == ([], False)


def test_it_gives_up_rather_than_guess_when_a_promised_image_is_missing():
    for event_name in ("INSERT", "MODIFY", "REMOVE"):
        changes = record_diff(event_name=event_name, view_type="NEW_AND_OLD_IMAGES", old_image=None, new_image=None)

        assert changes == ([], False)


def test_it_refuses_unknown_view_types_and_event_names():
    with pytest.raises(ValueError, match="StreamViewType"):
        record_diff(event_name="INSERT", view_type="BOTH", old_image=None, new_image={})
    with pytest.raises(ValueError, match="eventName"):
        record_diff(event_name="UPSERT", view_type="NEW_IMAGE", old_image=None, new_image={})


# --- summarize ---------------------------------------------------------------------------

SUMMARY_CASES = {
    "changed-added-removed": (
        [changed("status", S("PENDING"), S("SHIPPED")), added("tracking", S("1Z")), removed("coupon", S("X"))],
        'status: "PENDING" → "SHIPPED", +tracking, -coupon',
    ),
    "numbers-bare": ([changed("qty", N("1"), N("12.50"))], "qty: 1 → 12.50"),
    "type-change": ([type_changed("qty", N("1"), S("1"))], 'qty: N 1 → S "1"'),
    "string-set": (
        [set_changed("tags", {"SS": ["a", "b"]}, {"SS": ["a", "c"]}, plus=["c"], minus=["b"])],
        'tags +{"c"} -{"b"}',
    ),
    "number-set-added-only": (
        [set_changed("lucky", {"NS": ["7"]}, {"NS": ["7", "8", "9"]}, plus=["8", "9"], minus=[])],
        "lucky +{8, 9}",
    ),
    "binary": ([changed("raw", {"B": "AAH+/w=="}, {"B": "AA=="})], "raw: <4 bytes> → <1 bytes>"),
    "bool-and-null": ([type_changed("x", {"NULL": True}, {"BOOL": False})], "x: NULL null → BOOL false"),
    "map-and-list": (
        [type_changed("x", M(a=N("1")), L(S("b")))],
        'x: M {"a":"1"} → L ["b"]',
    ),
    "long-values-cut": (
        [changed("note", S("a" * 100), S("short"))],
        'note: "' + "a" * 38 + '… → "short"',
    ),
    "one-line": ([changed("note", S("two\nlines"), S(""))], 'note: "two\\nlines" → ""'),
    "odd-path": ([changed('["weird.name"]', S("a"), S("b"))], '["weird.name"]: "a" → "b"'),
    "no-changes": ([], ""),
    "over-the-limit": (
        [added("a", N("1")), added("b", N("1")), added("c", N("1")), added("d", N("1")), added("e", N("1"))],
        "+a, +b, +c, … (+2 more)",
    ),
    "at-the-limit": ([added("a", N("1")), added("b", N("1")), added("c", N("1"))], "+a, +b, +c"),
}


@pytest.mark.parametrize("changes, expected", SUMMARY_CASES.values(), ids=SUMMARY_CASES.keys())
def test_it_summarizes_changes_on_one_line(changes, expected):
    assert summarize(changes) == expected


def test_it_summarizes_with_a_chosen_limit():
    changes = [added("a", N("1")), added("b", N("1"))]

    assert summarize(changes, limit=1) == "+a, … (+1 more)"


def test_it_summarizes_the_captured_shipping_update():
    changes, _ = diff_of("ship_order")

    assert summarize(changes, limit=20) == (
        'address.city: "Paris" → "Lyon", '
        "big: 12345678901234567890123456789012345678 → 12345678901234567890123456789012345679, "
        "-coupon, items[0].qty: 1 → 3, lucky +{8}, paid: false → true, "
        'qty: N 1 → S "1", status: "PENDING" → "SHIPPED", tags +{"shipped"}, +tracking, '
        '["weird.name"]: "dots" → "changed"'
    )
    assert summarize(changes) == (
        'address.city: "Paris" → "Lyon", '
        "big: 12345678901234567890123456789012345678 → 12345678901234567890123456789012345679, "
        "-coupon, … (+8 more)"
    )
