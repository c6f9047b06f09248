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
"""Metric definitions and parity with direct computations by the underlying libraries."""

import contextlib
import copy
import io
import math
import warnings

import jieba
import nltk
import numpy as np
import pytest
from nltk.metrics.scores import f_measure, precision, recall
from nltk.translate import bleu
from nltk.translate.meteor_score import meteor_score
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trl_perception.eval.metrics import (
    COCO_STAT_NAMES,
    coco_detection_metrics,
    coco_gt_from_rows,
    counting_metrics,
    get_metric,
    list_metrics,
    normalized_edit_distance,
    ocr_metrics,
    ocr_sample_metrics,
    ocr_tokenize,
    select_coco_detections,
)


class NoSynonyms:
    def synsets(self, word):
        return []


def test_registry_has_every_task():
    assert list_metrics() == ["counting", "detection", "grounding", "ocr"]
    assert get_metric("ocr") is ocr_metrics
    with pytest.raises(KeyError, match="Unknown metric"):
        get_metric("segmentation")


# ------------------------------------------------------------------------------------------------------------- counting


def test_counting_exact_match_and_mae():
    m = counting_metrics([3, 4, None, 0], [3, 5, 2, 0])
    assert m["accuracy"] == 0.5  # the parse failure stays in the denominator
    assert m["mae"] == pytest.approx(1 / 3)  # over the three parsed samples
    assert m["parse_failure_rate"] == 0.25
    assert m["num_samples"] == 4


def test_counting_no_tolerance_and_empty():
    assert counting_metrics([10], [11])["accuracy"] == 0.0
    assert math.isnan(counting_metrics([None], [1])["mae"])
    assert counting_metrics([], [])["num_samples"] == 0
    with pytest.raises(ValueError):
        counting_metrics([1], [1, 2])


# ------------------------------------------------------------------------------------------------------------------ OCR

# The reference's toy case: a 13-token GT with 11 unique tokens; the output is its first 9 tokens (8 unique).
TOY_GT = "a b c d a e f g h i j b k"
TOY_PRED = "a b c d a e f g h"


def test_ocr_toy_case_conventional_order():
    m = ocr_sample_metrics(TOY_PRED, TOY_GT, wordnet=NoSynonyms())
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(8 / 11)
    assert m["f1"] == pytest.approx(16 / 19)
    # A 9-token prefix: every n-gram precision is 1, only the brevity penalty exp(1 - 13/9) remains.
    assert m["bleu"] == pytest.approx(math.exp(1 - 13 / 9))
    assert round(m["bleu"], 3) == 0.641
    assert m["edit_distance"] == pytest.approx(8 / 25)


def test_ocr_toy_case_fox_order_swaps_precision_recall_and_bleu_hypothesis():
    conventional = ocr_sample_metrics(TOY_PRED, TOY_GT, wordnet=NoSynonyms())
    fox = ocr_sample_metrics(TOY_PRED, TOY_GT, fox_order=True, wordnet=NoSynonyms())
    assert fox["precision"] == conventional["recall"]
    assert fox["recall"] == conventional["precision"]
    assert fox["f1"] == conventional["f1"]
    assert fox["edit_distance"] == conventional["edit_distance"]
    # GT as hypothesis: clipped n-gram precisions 9/13, 8/12, 7/11, 6/10 and no brevity penalty.
    assert fox["bleu"] == pytest.approx((9 / 13 * 8 / 12 * 7 / 11 * 6 / 10) ** 0.25)
    assert round(fox["bleu"], 3) == 0.648
    assert fox["meteor"] != conventional["meteor"]


PAIRS = [
    ("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumped over a lazy dog."),
    ("Section 2 Results\nWe report AP on val.", "Section 2. Results\nWe report the AP on val2017."),
    ("", "non-empty reference"),
    ("这是一个测试页面，包含中文文本。", "这是一个测试页面，包含中文的文本。"),
    ("Mixed 文本 with English words", "Mixed text with English words"),
    ("repeat repeat repeat", "repeat"),
]


@pytest.mark.parametrize("fox_order", [False, True])
@pytest.mark.parametrize(("pred", "gt"), PAIRS)
def test_ocr_parity_with_nltk(pred, gt, fox_order):
    m = ocr_sample_metrics(pred, gt, fox_order=fox_order, wordnet=NoSynonyms())
    # Edit distance: the upstream formula with nltk's Levenshtein.
    assert m["edit_distance"] == pytest.approx(nltk.edit_distance(pred, gt) / max(len(pred), len(gt)))
    cjk = any("\u4e00" <= ch <= "\u9fa5" for ch in pred + gt)
    pred_tokens = jieba.lcut(pred) if cjk else pred.split()
    gt_tokens = jieba.lcut(gt) if cjk else gt.split()
    if not pred_tokens:
        assert (m["precision"], m["recall"], m["f1"], m["bleu"], m["meteor"]) == (0, 0, 0, 0, 0)
        return
    hyp, ref = (gt_tokens, pred_tokens) if fox_order else (pred_tokens, gt_tokens)
    assert m["precision"] == pytest.approx(precision(set(ref), set(hyp)))
    assert m["recall"] == pytest.approx(recall(set(ref), set(hyp)))
    assert m["f1"] == pytest.approx(f_measure(set(ref), set(hyp)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m["bleu"] == pytest.approx(bleu([ref], hyp))
    assert m["meteor"] == pytest.approx(meteor_score([ref], hyp, wordnet=NoSynonyms()))


def test_ocr_tokenization_switches_to_jieba_on_either_side():
    pred, gt = ocr_tokenize("hello world", "你好 world")
    assert gt == jieba.lcut("你好 world")
    assert pred == jieba.lcut("hello world")  # jieba keeps the whitespace token, as upstream
    assert " " in pred
    assert ocr_tokenize("hello  world", "x") == (["hello", "world"], ["x"])


def test_ocr_edge_cases_are_defined():
    both_empty = ocr_sample_metrics("", "")
    assert both_empty == {"edit_distance": 0.0, "f1": 1.0, "precision": 1.0, "recall": 1.0, "bleu": 1.0, "meteor": 1.0}
    empty_pred = ocr_sample_metrics(None, "some text")
    assert empty_pred["edit_distance"] == 1.0
    assert empty_pred["precision"] == empty_pred["recall"] == empty_pred["meteor"] == 0.0
    empty_gt = ocr_sample_metrics("hallucinated", "")
    assert empty_gt["edit_distance"] == 1.0 and empty_gt["f1"] == 0.0
    # Whitespace-only strings: no tokens, but the characters still count for the edit distance.
    ws = ocr_sample_metrics("  ", "")
    assert ws["edit_distance"] == 1.0 and ws["f1"] == 1.0


def test_edit_distance_matches_nltk_on_unicode():
    for a, b in [("kitten", "sitting"), ("中文文本", "中文的文本"), ("ab", "ba"), ("", "abc")]:
        assert normalized_edit_distance(a, b) == pytest.approx(nltk.edit_distance(a, b) / max(len(a), len(b)))


def test_meteor_offline_uses_exact_and_stem_stages_only():
    # "jumped" ~ "jumps" is a Porter-stem match, so the stub still aligns it.
    m = ocr_sample_metrics("the fox jumped", "the fox jumps")
    assert m["meteor"] == pytest.approx(
        meteor_score([["the", "fox", "jumps"]], ["the", "fox", "jumped"], wordnet=NoSynonyms())
    )
    corpus = ocr_metrics(["the fox jumped"], ["the fox jumps"])
    assert corpus["meteor_wordnet"] in {"wordnet", "no_synonym_stage"}
    assert ocr_metrics(["a"], ["a"], wordnet=NoSynonyms())["meteor_wordnet"] == "custom"


def test_ocr_corpus_is_mean_over_pages():
    preds, gts = [p for p, _ in PAIRS], [g for _, g in PAIRS]
    corpus = ocr_metrics(preds, gts, wordnet=NoSynonyms())
    per_page = [ocr_sample_metrics(p, g, wordnet=NoSynonyms()) for p, g in PAIRS]
    for key in ("edit_distance", "f1", "precision", "recall", "bleu", "meteor"):
        assert corpus[key] == pytest.approx(np.mean([s[key] for s in per_page]))
    assert corpus["num_samples"] == len(PAIRS)
    assert corpus["argument_order"] == "conventional"


# ------------------------------------------------------------------------------------------------------------ detection


def make_gt():
    """Three images (the last has no annotations), gapped category ids 1, 3, 90, small/medium/large objects."""
    images = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.png"} for i in (7, 8, 9)]
    boxes = [
        (7, 1, [10, 10, 20, 20]),  # small (400 < 32²)
        (7, 3, [100, 100, 60, 60]),  # medium
        (7, 90, [200, 50, 150, 200]),  # large
        (8, 1, [5, 5, 50, 40]),
        (8, 1, [300, 300, 100, 120]),
    ]
    annotations = [
        {"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for k, (i, c, b) in enumerate(boxes)
    ]
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def direct_cocoeval(gt_dict, results, image_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dict)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STAT_NAMES, ev.stats.tolist()))


def noisy_results(gt_dict, seed):
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt_dict["annotations"]:
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": (np.array([x, y, w, h]) + jitter).tolist(),
                "score": float(rng.uniform(0.3, 1)),
            }
        )
        if rng.random() < 0.5:  # a false positive
            results.append(
                {
                    "image_id": int(rng.choice([7, 8, 9])),
                    "category_id": int(rng.choice([1, 3, 90])),
                    "bbox": rng.uniform(0, 200, 4).tolist(),
                    "score": float(rng.uniform(0, 1)),
                }
            )
    return results


@pytest.mark.parametrize("seed", range(5))
def test_coco_parity_with_direct_pycocotools(seed):
    gt = make_gt()
    results = noisy_results(gt, seed)
    ours = coco_detection_metrics(gt, results)
    direct = direct_cocoeval(gt, results)
    for name in COCO_STAT_NAMES:
        assert ours[name] == pytest.approx(direct[name]), name
    assert ours["num_images"] == 3


def test_coco_perfect_is_one_and_missing_ranges_are_minus_one():
    gt = make_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] < 96**2]  # no large objects left
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
    ]
    m = coco_detection_metrics(gt, perfect)
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["APs"] == pytest.approx(1.0)
    assert m["APl"] == -1.0


def test_coco_one_of_three_categories():
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}, {"id": 90, "name": "c"}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": c,
                "bbox": [10 + 20 * k, 10, 15, 15],
                "area": 225,
                "iscrowd": 0,
            }
            for k, c in enumerate((1, 3, 90))
        ],
    }
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 15, 15], "score": 1.0}]
    assert coco_detection_metrics(gt, dets)["AP"] == pytest.approx(1 / 3)


def test_coco_empty_results_do_not_call_loadres():
    m = coco_detection_metrics(make_gt(), [])
    assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["AR100"] == 0.0
    assert m["num_detections"] == 0 and m["num_images"] == 3


def test_coco_filters_unknown_images_and_categories():
    gt = make_gt()
    results = noisy_results(gt, 0)
    extra = [
        {"image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9},
        {"image_id": 7, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},
    ]
    m = coco_detection_metrics(gt, results + extra)
    assert m["dropped_unknown_image"] == 1 and m["dropped_unknown_category"] == 1
    direct = direct_cocoeval(gt, results)  # what a correct caller would have passed
    assert [m[k] for k in COCO_STAT_NAMES] == pytest.approx([direct[k] for k in COCO_STAT_NAMES])


def test_coco_at_most_100_detections_per_image_keeps_output_order_on_ties():
    gt = make_gt()
    junk = [{"image_id": 8, "category_id": 1, "bbox": [400 + k, 0, 10, 10], "score": 1.0} for k in range(100)]
    hits = [
        {"image_id": 8, "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
        if a["image_id"] == 8
    ]
    kept, dropped = select_coco_detections(junk + hits, [7, 8, 9], [1, 3, 90])
    assert len(kept) == 100 and dropped["over_max_dets"] == 2
    assert kept == junk  # equal scores: the first 100 in output order
    m = coco_detection_metrics(gt, junk + hits)
    direct = direct_cocoeval(gt, junk)
    assert [m[k] for k in COCO_STAT_NAMES] == pytest.approx([direct[k] for k in COCO_STAT_NAMES])
    assert m["AR100"] < direct_cocoeval(gt, hits)["AR100"]  # the correct boxes were cut


def test_coco_image_set_none_means_all_images():
    gt = make_gt()
    results = noisy_results(gt, 1)
    all_images = coco_detection_metrics(gt, results, image_ids=None)
    assert all_images["num_images"] == 3
    subset = coco_detection_metrics(gt, results, image_ids=[7, 8])
    assert subset["num_images"] == 2
    direct = direct_cocoeval(gt, [r for r in results if r["image_id"] in (7, 8)], image_ids=[7, 8])
    assert subset["AP"] == pytest.approx(direct["AP"])
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_detection_metrics(gt, results, image_ids=[7, 1000])


def test_coco_gt_from_rows_roundtrip():
    rows = [
        {
            "image_id": 5,
            "width": 64,
            "height": 48,
            "boxes": [[1, 2, 11, 22]],
            "labels": ["person"],
            "category_ids": [1],
        },
        {"width": 32, "height": 32, "boxes": [], "labels": [], "category_ids": []},
    ]
    gt = coco_gt_from_rows(rows)
    assert [img["id"] for img in gt["images"]] == [5, 1]
    assert gt["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    assert gt["annotations"][0]["area"] == 200.0 and gt["annotations"][0]["iscrowd"] == 0
    assert gt["categories"] == [{"id": 1, "name": "person"}]
    m = coco_detection_metrics(gt, [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 1.0}])
    assert m["AP"] == pytest.approx(1.0) and m["num_images"] == 2
