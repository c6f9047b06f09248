# Copyright 2026 The trl-perception Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Detection composite reward, matching and category tables."""

import itertools
import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_perception.rewards import COCO_CATEGORIES, CategoryTable, get_reward, greedy_match, hungarian_match


A = [0, 0, 100, 100]
B = [200, 200, 300, 300]
FAR = [500, 500, 600, 600]


def answer(*items):
    return "```json\n" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in items], indent=2) + "\n```"


def score(preset="pr1", completions=(), boxes=(A, B), ids=(1, 90), log=None, **options):
    reward = get_reward("detection", preset=preset, frame="original", **options)
    n = len(completions)
    columns = {
        "boxes": [list(boxes)] * n,
        "category_ids": [list(ids)] * n,
        "width": [1000] * n,
        "height": [1000] * n,
    }
    if log is not None:
        columns["log_metric"] = log
    return reward(prompts=[None] * n, completions=list(completions), **columns)


PERFECT = answer((A, "person"), (B, "toothbrush"))


@pytest.mark.parametrize("preset, expected", [("pr1", 3.0), ("released", 3.0), ("paper", 3.0), ("vlm_r1", 1.0)])
def test_perfect_prediction(preset, expected):
    assert score(preset, [PERFECT]) == [pytest.approx(expected)]


def test_wrong_class_on_a_perfect_box():
    text = answer((A, "person"), (B, "person"))
    # pr1: both boxes matched (IoU 1), one class right: 0.25 + 0.75·1 + 1·0.5 + 1·1.
    assert score("pr1", [text]) == [pytest.approx(2.5)]
    # vlm_r1: labels must match, so one pair: position 1/2, completeness 1 − (0.5 + 0.5)/2 -> 0.7·0.5 + 0.3·0.5.
    assert score("vlm_r1", [text]) == [pytest.approx(0.5)]


def test_unknown_label_lowers_format_and_recall():
    text = answer((A, "person"), (B, "unicorn"))
    # f = 1/2; P = {A}: precision 1, recall 1/2, F1 2/3; cls 1; loc 1.
    assert score("pr1", [text]) == [pytest.approx(0.25 * 0.5 + 0.75 * 2 / 3 + 1 + 1)]
    # paper: minus 0.5·(FP rate 0 + FN rate 1/2).
    assert score("paper", [text]) == [pytest.approx(0.25 * 0.5 + 0.75 * 2 / 3 + 1 + 1 - 0.25)]


def test_iou_threshold_is_strict_in_pr1_and_inclusive_in_vlm_r1():
    text = answer(([0, 0, 100, 50], "person"))  # IoU with A exactly 0.5
    assert score("pr1", [text], boxes=[A], ids=[1]) == [pytest.approx(0.25)]  # no pair kept: format term only
    assert score("vlm_r1", [text], boxes=[A], ids=[1]) == [pytest.approx(0.7 * 0.5 + 0.3 * 1.0)]


def test_no_ground_truth():
    text = answer((A, "person"), (B, "unicorn"))
    assert score("pr1", [text], boxes=[], ids=[]) == [pytest.approx(0.25 * 0.5)]
    assert score("vlm_r1", [text], boxes=[], ids=[]) == [0.0]


def test_truncated_json_is_a_parse_failure_only_in_strict_presets():
    truncated = PERFECT.replace("\n]\n```", "") + ',\n  {"bbox_2d": [1, 2'
    log = []
    assert score("pr1", [truncated], log=lambda k, v: log.append((k, v))) == [0.0]
    assert ("detection/parse_failure_rate", 1.0) in log
    assert score("pr1", [truncated], strict_json=False) == [pytest.approx(3.0)]


def test_inverted_box_is_an_invalid_item_not_a_crash():
    text = answer((A, "person"), ([300, 300, 200, 200], "toothbrush"))  # D7: DETR's GIoU would assert here
    assert score("pr1", [text]) == [pytest.approx(0.25 * 0.5 + 0.75 * 2 / 3 + 1 + 1)]


def test_class_cost_uses_contiguous_indices_ids_1_and_90():
    # Two ground-truth objects on the same box, person (id 1) and toothbrush (id 90): the geometry ties, so only the
    # class term of the DETR cost decides the assignment. Misaligned class indices (D5) would pair them crosswise.
    text = answer((A, "toothbrush"), (A, "person"))
    log = []
    assert score("pr1", [text], boxes=[A, A], ids=[1, 90], log=lambda k, v: log.append((k, v))) == [pytest.approx(3.0)]
    assert ("detection/cls_accuracy", 1.0) in log


def test_prediction_cap_counts_extra_boxes_as_unmatched():
    text = answer((A, "person"), (B, "toothbrush"), (FAR, "person"), (FAR, "cat"))
    log = []
    # Two boxes matched out of 4 predictions: precision 1/2, recall 1, F1 2/3.
    values = score("pr1", [text], max_boxes=2, log=lambda k, v: log.append((k, v)))
    assert values == [pytest.approx(0.25 + 0.75 * 2 / 3 + 1 + 1)]
    assert ("detection/capped_rate", 1.0) in log and ("detection/num_pred", 4.0) in log


def test_over_prediction_penalty():
    text = answer((A, "person"), (B, "toothbrush"), (FAR, "person"), (FAR, "cat"))
    assert score("pr1", [text]) == [pytest.approx(0.25 + 0.75 * 2 / 3 + 2)]
    assert score("paper", [text]) == [pytest.approx(0.25 + 0.75 * 2 / 3 + 2 - 0.5 * 0.5)]
    assert score("pr1", [text], penalty_weight=10.0) == [0.0]  # clamped at 0


def test_duplicate_suppression_option():
    a2 = [10, 0, 110, 100]  # IoU(A, a2) = 9000 / 11000
    text = answer((A, "person"), (A, "person"))
    # One-to-one matching: the duplicate is credited with the second, overlapping object.
    assert score("pr1", [text], boxes=[A, a2], ids=[1, 1]) == [pytest.approx(0.25 + 0.75 + 1 + (1 + 9 / 11) / 2)]
    # With duplicate_iou=0.95 it counts as an unmatched prediction: precision 1/2, recall 1/2.
    values = score("pr1", [text], boxes=[A, a2], ids=[1, 1], duplicate_iou=0.95)
    assert values == [pytest.approx(0.25 + 0.75 * 0.5 + 1 + 1)]


def test_custom_weights_and_categories():
    assert score("pr1", [answer((A, "person"))], boxes=[A], ids=[1], f1_weight=0, cls_weight=0, iou_weight=0) == [0.25]
    reward = get_reward("detection", categories=["cat", "dog"], frame="original")
    columns = {
        "boxes": [[A]] * 3,
        "labels": [["dog"]] * 3,
        "category_ids": [[]] * 3,
        "width": [1000] * 3,
        "height": [1000] * 3,
    }
    texts = [answer((A, "dog")), answer((A, "Dog")), answer((A, " dog "))]
    assert reward(prompts=None, completions=texts, **columns) == [3.0, 0.0, 3.0]
    relaxed = get_reward("detection", categories=["cat", "dog"], case_sensitive_labels=False, frame="original")
    assert relaxed(prompts=None, completions=texts[1:2], **{k: v[:1] for k, v in columns.items()}) == [3.0]


def test_ground_truth_is_converted_into_the_model_frame():
    reward = get_reward("detection")  # qwen2_5_vl: 640x480 -> 644x476
    gt = [[64, 48, 320, 240]]
    text = answer(([64.4, 47.6, 322, 238], "dog"))
    assert reward(prompts=None, completions=[text], boxes=[gt], category_ids=[[18]], width=[640], height=[480]) == [
        pytest.approx(3.0)
    ]


def test_bad_ground_truth_and_options_raise():
    with pytest.raises(ValueError, match="category table"):
        score("pr1", [PERFECT], boxes=[A], ids=[12])  # 12 is not a COCO id
    with pytest.raises(ValueError):
        get_reward("detection", preset="nope")
    with pytest.raises(ValueError):
        get_reward("detection", matcher="random")
    with pytest.raises(ValueError):
        get_reward("detection", f1_weight=-1)


def test_presets_as_documented():
    pr1 = get_reward("detection").config()
    assert pr1["penalty_weight"] == 0.0 and pr1["matcher"] == "hungarian" and pr1["strict_json"]
    assert (pr1["format_weight"], pr1["f1_weight"], pr1["cls_weight"], pr1["iou_weight"]) == (0.25, 0.75, 1.0, 1.0)
    assert (pr1["cost_bbox"], pr1["cost_class"], pr1["cost_giou"]) == (5.0, 1.0, 2.0)
    assert get_reward("detection", preset="paper").config()["penalty_weight"] == 0.5
    assert get_reward("detection", preset="vlm_r1").config()["matcher"] == "greedy"
    assert get_reward("detection", preset="released").config() == pr1


def test_parse_failures_and_metrics():
    log = {}
    values = score("pr1", [PERFECT, "no boxes here", answer((FAR, "person"))], log=lambda k, v: log.setdefault(k, v))
    assert values == [pytest.approx(3.0), 0.0, pytest.approx(0.25)]
    assert log["detection/parse_failure_rate"] == pytest.approx(1 / 3)
    assert log["detection/recall"] == pytest.approx(0.5)  # (1 + 0) / 2 over parsed rows with ground truth
    assert log["detection/matched"] == pytest.approx(1.0)
    assert log["detection/mean_iou"] == pytest.approx(1.0)  # only rows with a kept pair


def test_ten_thousand_boxes_and_huge_numbers_are_cheap_and_in_range():
    many = "[" + ",".join('{"bbox_2d":[1,1,9,9],"label":"person"}' for _ in range(10000)) + "]"
    huge = answer(([-1e308, -1e308, 1e308, 1e308], "person"), ([0, 0, 1e300, 1e300], "toothbrush"))
    compact = "[" + ",".join(f'{{"bbox_2d":[{i},{i},{i + 5},{i + 5}],"label":"person"}}' for i in range(1500)) + "]"
    start = time.perf_counter()
    for preset in ("pr1", "paper", "vlm_r1"):
        values = score(preset, [many, huge, compact, "[" * 50000])
        assert all(0.0 <= v <= 3.0 for v in values)
    assert time.perf_counter() - start < 5.0


# ----------------------------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    cost=st.integers(1, 5).flatmap(
        lambda n: st.integers(1, 5).flatmap(
            lambda m: st.lists(
                st.lists(st.floats(-100, 100, allow_nan=False), min_size=m, max_size=m), min_size=n, max_size=n
            )
        )
    )
)
def test_hungarian_equals_brute_force(cost):
    cost = np.array(cost)
    n, m = cost.shape
    rows, cols = hungarian_match(cost)
    assert len(rows) == min(n, m) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    if n <= m:
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    else:
        best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
    assert cost[rows, cols].sum() == pytest.approx(best, abs=1e-9)


def test_hungarian_handles_non_finite_costs_and_empty_input():
    rows, cols = hungarian_match(np.array([[np.nan, 1.0], [2.0, np.inf]]))  # NaN and inf are the worst costs
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert hungarian_match(np.zeros((0, 3)))[0].shape == (0,)


def test_greedy_match():
    score_ = np.array([[0.9, 0.8], [0.85, 0.6]])
    rows, cols = greedy_match(score_)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (1, 1)]
    # Hungarian on the negated scores prefers the larger total (0.8 + 0.85): greedy is not optimal by design.
    rows, cols = hungarian_match(-score_)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert greedy_match(np.array([[0.5]]), 0.5, inclusive=True)[0].tolist() == [0]
    assert greedy_match(np.array([[0.5]]), 0.5, inclusive=False)[0].tolist() == []
    assert greedy_match(np.array([[np.nan, 0.7]]))[1].tolist() == [1]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_greedy_and_hungarian_agree_on_unambiguous_matchings(n, seed):
    rng = np.random.default_rng(seed)
    score_ = rng.uniform(0.0, 0.4, (n, n))
    perm = rng.permutation(n)
    score_[np.arange(n), perm] = rng.uniform(0.6, 1.0, n)  # one clear partner each
    g_rows, g_cols = greedy_match(score_)
    _, h_cols = hungarian_match(-score_)  # rows of a square assignment are 0..n-1
    assert g_rows.tolist() == list(range(n))
    assert g_cols.tolist() == perm.tolist() == h_cols.tolist()


# ----------------------------------------------------------------------------------------------------------------
# Category tables
# ----------------------------------------------------------------------------------------------------------------


def test_coco_category_table():
    table = CategoryTable.coco()
    assert len(table) == 80 and len(COCO_CATEGORIES) == 80
    assert set(range(1, 91)) - set(COCO_CATEGORIES) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    anchors = {1: "person", 10: "traffic light", 13: "stop sign", 27: "backpack", 46: "wine glass", 67: "dining table"}
    anchors |= {70: "toilet", 72: "tv", 84: "book", 90: "toothbrush"}
    assert all(COCO_CATEGORIES[i] == name for i, name in anchors.items())
    assert table.index_of_id(1) == 0 and table.index_of_id(90) == 79 and table.index_of_id(12) is None
    assert table.index_of_name("toothbrush") == 79 and table.index_of_name("Toothbrush") is None
    assert CategoryTable.coco(case_sensitive=False).index_of_name("Toothbrush") == 79
    assert table.index_of_name(None) is None


def test_category_table_constructors():
    assert CategoryTable.from_any({5: "b", 2: "a"}).ids == (2, 5)
    assert CategoryTable.from_any([{"id": 7, "name": "x"}]).index_of_id(7) == 0
    assert CategoryTable.from_any(["cat", "dog"]).index_of_name("dog") == 1
    with pytest.raises(ValueError):
        CategoryTable.from_any({1: "a", 2: "a"})
    with pytest.raises(TypeError):
        CategoryTable.from_any("cat")


def test_hungarian_minus_infinity_is_the_best_cost():
    rows, cols = hungarian_match(np.array([[0.0, 1.0], [-np.inf, 0.0]]))
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
