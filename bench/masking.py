"""What masking costs where it runs per record: masking a saved batch's rows before a push
(streams.push, once per batch for a source with rules) and the masked row a page shows.

Figures, all CPU in this process on 300 realistic order items (bench.workload.order_item, NEW_AND_OLD
images and their diff), with four rules in the three modes:
  masking_rows_per_s          Masking.row_mask, the work a masked push and a masked page add per row
  feed_rows_per_s             streams.rows.feed_row of the same rows unmasked: the baseline, measured
                              in the same run (the machine is shared and noisy)
  masking_cost_ratio          masking_rows_per_s against feed_rows_per_s: how many feed rows one
                              masked row costs
  masked_feed_rows_per_s      row_mask of a whole row (images too) and its feed_row: a masked page's row
  masked_push_rows_per_s      row_mask of a feed row's fields only, then feed_row: what streams.push adds
                              per row of a batch of a source with rules
"""

import random
from datetime import UTC, datetime
import timeit
from types import SimpleNamespace

from bench.workload import order_item
from streams.diff import record_diff
from streams.masking import Masking, rule_path_parse
from streams.rows import FEED_FIELDS, feed_row

RULES = (("customer.email", "redact"), ("customer.address", "hash"), ("**.price", "hash"), ("signature", "remove"))


def _rows() -> list[dict]:
    rng = random.Random(11)
    rows = []
    for number in range(300):
        old = order_item(rng, number)
        new = {**old, "status": {"S": "SHIPPED"}, "customer": {"M": {**old["customer"]["M"], "email": {"S": f"new{number}@example.com"}}}}
        for image in (old, new):
            image["signature"] = {"B": "c2lnbmF0dXJl"}
        diff, complete = record_diff(event_name="MODIFY", view_type="NEW_AND_OLD_IMAGES", old_image=old, new_image=new)
        rows.append({
            "id": number, "source_id": 1, "shard_id": 1, "size_bytes": 400, "event_name": "MODIFY", "keys": {"pk": old["pk"]}, "old_image": old, "new_image": new,
            "item_key": "", "partition_key": old["pk"]["S"], "diff": diff, "diff_complete": complete,
            "changed_paths": "", "approximate_creation_time": datetime(2026, 11, 30, tzinfo=UTC),
            "sequence_number": str(number), "is_ttl_delete": False, "decode_error": "", "images_as_sent": None,
            "shape_error": "",
        })
    return rows


def bench_masking() -> dict:
    source = SimpleNamespace(pk=1, table_name="orders", key_schema=["pk"])
    masking = Masking(rules_by_source={1: tuple((rule_path_parse(path), mode) for path, mode in RULES)}, key=b"bench")
    rows = _rows()
    masked = [masking.row_mask(row, source=source) for row in rows]

    def best(run) -> float:
        return min(timeit.repeat(run, number=5, repeat=5)) / (5 * len(rows))

    mask_s = best(lambda: [masking.row_mask(row, source=source) for row in rows])
    feed_s = best(lambda: [feed_row(row, source=source) for row in rows])
    masked_feed_s = best(lambda: [feed_row(row, source=source) for row in masked])
    pushed = [{name: row[name] for name in FEED_FIELDS} for row in rows]
    push_s = best(lambda: [feed_row(masking.row_mask(row, source=source), source=source) for row in pushed])
    return {
        "masking_rules": len(RULES),
        "masking_rows_per_s": round(1 / mask_s),
        "feed_rows_per_s": round(1 / feed_s),
        "masking_cost_ratio": round(mask_s / feed_s, 2),
        "masked_feed_rows_per_s": round(1 / (mask_s + masked_feed_s)),
        "masked_push_rows_per_s": round(1 / push_s),
    }
