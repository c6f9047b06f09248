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
"""Benchmark metrics exactly as Perception-R1 reports them, as pure functions over parsed predictions.

Every corpus metric is registered by task name (lm-evaluation-harness style) and returns a flat ``dict[str, float]``
of fractions in ``[0, 1]`` (tables multiply by 100). Parsing and geometry are not done here: callers pass values
produced by `trl_perception.parsing` and boxes already mapped to original pixels by `trl_perception.geometry`, so the
evaluation and the rewards score the same parsed predictions.

| task | function | metrics |
|---|---|---|
| ``grounding`` | `grounding_metrics` | Acc@0.5/0.75/0.95 (IoU ≥ τ, inclusive), their mean, the τ sweep 0.10…0.95, mean IoU |
| ``counting`` | `counting_metrics` | exact-match accuracy, MAE over parsed samples |
| ``ocr`` | `ocr_metrics` | normalized edit distance, F1, precision, recall, BLEU, METEOR (mean over pages) |
| ``detection`` | `coco_detection_metrics` | the 12 pycocotools ``bbox`` stats (AP, AP50, AP75, APs, APm, APl, AR…) |

Example:

```python
>>> from trl_perception.eval.metrics import get_metric
>>> get_metric("counting")([3, None, 5], [3, 4, 4])["accuracy"]
0.3333333333333333

```
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from trl_perception.geometry import box_convert, paired_box_iou


Box = Sequence[float]

# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

_METRICS: dict[str, Callable[..., dict[str, Any]]] = {}

# Direction of every reported key (for arrows in tables and for model selection). Keys not listed are higher-better.
LOWER_IS_BETTER = frozenset({"edit_distance", "mae", "parse_failure_rate"})


def register_metric(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a corpus metric under ``name`` (a task name). Raises on duplicates."""

    def decorator(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in _METRICS:
            raise ValueError(f"Metric {name!r} is already registered.")
        _METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> Callable[..., dict[str, Any]]:
    """Return the corpus metric registered under ``name``."""
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"Unknown metric {name!r}; available: {sorted(_METRICS)}") from None


def list_metrics() -> list[str]:
    """Names of the registered corpus metrics."""
    return sorted(_METRICS)


# ---------------------------------------------------------------------------------------------------------------------
# Grounding
# ---------------------------------------------------------------------------------------------------------------------

# The paper's table (Avg = mean of these three) and the full sweep 0.10, 0.15, …, 0.95.
PAPER_IOU_THRESHOLDS = (0.5, 0.75, 0.95)
IOU_SWEEP = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))


def _threshold_key(tau: float) -> str:
    return f"acc@{tau:g}"


def grounding_ious(pred_boxes: Sequence[Box | None], gt_boxes: Sequence[Box]) -> list[float]:
    """IoU of each predicted box with its single GT box (both ``xyxy``, same frame); a missing prediction gives 0.

    >>> grounding_ious([[0, 0, 10, 10], None], [[0, 0, 10, 20], [0, 0, 1, 1]])
    [0.5, 0.0]
    """
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"Got {len(pred_boxes)} predictions for {len(gt_boxes)} ground-truth boxes.")
    ious = [0.0] * len(gt_boxes)
    parsed = [i for i, pred in enumerate(pred_boxes) if pred is not None]
    if parsed:
        values = paired_box_iou([pred_boxes[i] for i in parsed], [gt_boxes[i] for i in parsed])
        for i, value in zip(parsed, np.asarray(values).tolist()):
            ious[i] = float(value)
    return ious


def accuracy_at(ious: Sequence[float], tau: float) -> float:
    """Acc@τ: fraction of samples with IoU ≥ τ (inclusive, as Perception-R1, lmms-eval and Qwen-VL).

    >>> accuracy_at([0.5, 0.49, 0.9], 0.5)
    0.6666666666666666
    """
    if not ious:
        return float("nan")
    return sum(iou >= tau for iou in ious) / len(ious)


@register_metric("grounding")
def grounding_metrics(
    pred_boxes: Sequence[Box | None],
    gt_boxes: Sequence[Box],
    thresholds: Sequence[float] = PAPER_IOU_THRESHOLDS,
    sweep: Sequence[float] = IOU_SWEEP,
) -> dict[str, float]:
    """Referring-expression grounding metrics, one sample per expression.

    Boxes are ``[x1, y1, x2, y2]`` in original pixels. A sample whose prediction failed to parse (``None``) has IoU 0
    and stays in the denominator. ``avg`` is the mean of Acc at ``thresholds`` (the paper's "Avg" column).

    >>> m = grounding_metrics([[0, 0, 10, 10]], [[0, 0, 10, 20]])
    >>> m["acc@0.5"], m["acc@0.75"], m["avg"]
    (1.0, 0.0, 0.3333333333333333)
    """
    ious = grounding_ious(pred_boxes, gt_boxes)
    out: dict[str, float] = {}
    for tau in thresholds:
        out[_threshold_key(tau)] = accuracy_at(ious, tau)
    out["avg"] = float(np.mean([out[_threshold_key(tau)] for tau in thresholds])) if ious else float("nan")
    for tau in sweep:
        out.setdefault(_threshold_key(tau), accuracy_at(ious, tau))
    out["mean_iou"] = float(np.mean(ious)) if ious else float("nan")
    out["parse_failure_rate"] = sum(p is None for p in pred_boxes) / len(ious) if ious else float("nan")
    out["num_samples"] = len(ious)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------------------------------


@register_metric("counting")
def counting_metrics(pred_counts: Sequence[int | None], gt_counts: Sequence[int]) -> dict[str, float]:
    """Exact-match counting accuracy over all samples (a parse failure, ``None``, is wrong), plus diagnostics.

    ``mae`` is the mean absolute error over the samples whose count parsed (NaN when none did); ``parse_failure_rate``
    says how many were left out of it.

    >>> counting_metrics([2, 5, None], [2, 4, 1])
    {'accuracy': 0.3333333333333333, 'mae': 0.5, 'parse_failure_rate': 0.3333333333333333, 'num_samples': 3}
    """
    if len(pred_counts) != len(gt_counts):
        raise ValueError(f"Got {len(pred_counts)} predictions for {len(gt_counts)} ground-truth counts.")
    n = len(gt_counts)
    if n == 0:
        return {"accuracy": float("nan"), "mae": float("nan"), "parse_failure_rate": float("nan"), "num_samples": 0}
    parsed = [(int(p), int(g)) for p, g in zip(pred_counts, gt_counts) if p is not None]
    return {
        "accuracy": sum(p == g for p, g in parsed) / n,
        "mae": float(np.mean([abs(p - g) for p, g in parsed])) if parsed else float("nan"),
        "parse_failure_rate": (n - len(parsed)) / n,
        "num_samples": n,
    }


# ---------------------------------------------------------------------------------------------------------------------
# OCR
# ---------------------------------------------------------------------------------------------------------------------

_CJK = re.compile("[\u4e00-\u9fa5]")
OCR_KEYS = ("edit_distance", "f1", "precision", "recall", "bleu", "meteor")


def has_cjk(text: str) -> bool:
    """True if ``text`` has a character in U+4E00–U+9FA5 (the paper's switch to Chinese segmentation)."""
    return _CJK.search(text) is not None


def ocr_tokenize(prediction: str, reference: str) -> tuple[list[str], list[str]]:
    """Tokenize a (prediction, reference) pair as Fox / GOT / Perception-R1 do.

    If either string has a CJK character, both go through ``jieba.lcut`` (accurate mode, HMM on; whitespace runs
    become tokens, as upstream); otherwise both are split on whitespace. No lower-casing or normalization.

    >>> ocr_tokenize("Hello  world", "hello world")
    (['Hello', 'world'], ['hello', 'world'])
    """
    if has_cjk(prediction) or has_cjk(reference):
        import jieba

        return jieba.lcut(prediction), jieba.lcut(reference)
    return prediction.split(), reference.split()


def normalized_edit_distance(prediction: str, reference: str) -> float:
    """Character Levenshtein distance (unit costs, no transpositions) divided by the longer length; 0 if both empty.

    Equal to ``nltk.edit_distance(prediction, reference) / max(len(prediction), len(reference))``.

    >>> normalized_edit_distance("kitten", "sitting")
    0.42857142857142855
    """
    from rapidfuzz.distance import Levenshtein

    longest = max(len(prediction), len(reference))
    if longest == 0:
        return 0.0
    return Levenshtein.distance(prediction, reference) / longest


class _NoSynonyms:
    """A WordNet stand-in with no synsets: METEOR then aligns by exact and Porter-stem matches only."""

    def synsets(self, word: str) -> list:
        return []


def wordnet_available() -> bool:
    """Whether nltk's WordNet corpus is installed (it cannot be downloaded offline)."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except LookupError:
        return False
    return True


def meteor_wordnet(wordnet: Any | None = None) -> tuple[Any, str]:
    """The WordNet object METEOR should use, and a label for ``metrics.json``.

    An explicit ``wordnet`` is used as given. Otherwise nltk's corpus if installed (``"wordnet"``), else a stub without
    synonyms (``"no_synonym_stage"``: METEOR with exact + stem matching only, slightly lower than upstream numbers
    whenever the output uses synonyms of reference words).
    """
    if wordnet is not None:
        return wordnet, "custom"
    if wordnet_available():
        from nltk.corpus import wordnet as nltk_wordnet

        return nltk_wordnet, "wordnet"
    return _NoSynonyms(), "no_synonym_stage"


def ocr_sample_metrics(
    prediction: str | None, reference: str, *, fox_order: bool = False, wordnet: Any | None = None
) -> dict[str, float]:
    """Per-page OCR metrics (fractions; ``edit_distance`` lower is better).

    Conventional order (default, Perception-R1): the model output is the hypothesis, so precision = |ref ∩ hyp| /
    |hyp| over token *sets*, recall = |ref ∩ hyp| / |ref|, BLEU/METEOR score the output against the GT.
    ``fox_order=True`` reproduces Fox / GOT-OCR2.0, whose call swaps the two strings: precision and recall trade
    places and BLEU/METEOR take the GT as hypothesis. F1 and edit distance are symmetric.

    Edge cases (undefined or crashing upstream, defined here): a ``None`` prediction counts as ``""``. Both token
    lists empty → precision = recall = F1 = BLEU = METEOR = 1; exactly one empty → all five 0. Edit distance works on
    the raw characters: 0 when both strings are empty, 1 when exactly one is.

    >>> m = ocr_sample_metrics("the cat sat", "the cat sat on the mat", wordnet=_NoSynonyms())
    >>> m["precision"], m["recall"], round(m["f1"], 6)
    (1.0, 0.6, 0.75)
    """
    from nltk.metrics.scores import f_measure, precision, recall
    from nltk.translate import bleu
    from nltk.translate.meteor_score import meteor_score

    prediction = "" if prediction is None else prediction
    out = {"edit_distance": normalized_edit_distance(prediction, reference)}
    pred_tokens, ref_tokens = ocr_tokenize(prediction, reference)
    hyp, ref = (ref_tokens, pred_tokens) if fox_order else (pred_tokens, ref_tokens)
    if not hyp or not ref:
        value = 1.0 if not hyp and not ref else 0.0
        out.update(f1=value, precision=value, recall=value, bleu=value, meteor=value)
        return out
    ref_set, hyp_set = set(ref), set(hyp)
    out["f1"] = float(f_measure(ref_set, hyp_set))
    out["precision"] = float(precision(ref_set, hyp_set))
    out["recall"] = float(recall(ref_set, hyp_set))
    with warnings.catch_warnings():
        # nltk warns on every hypothesis without 4-gram overlap; the value (≈0) is the paper's.
        warnings.simplefilter("ignore", UserWarning)
        out["bleu"] = float(bleu([ref], hyp))
    out["meteor"] = float(meteor_score([ref], hyp, wordnet=meteor_wordnet(wordnet)[0]))
    return out


@register_metric("ocr")
def ocr_metrics(
    predictions: Sequence[str | None],
    references: Sequence[str],
    *,
    fox_order: bool = False,
    wordnet: Any | None = None,
) -> dict[str, Any]:
    """Page-OCR corpus metrics: the arithmetic mean over pages of `ocr_sample_metrics`.

    Also reports ``meteor_wordnet`` (``"wordnet"``, ``"no_synonym_stage"`` or ``"custom"``) and ``argument_order``.

    >>> m = ocr_metrics(["a b c d", ""], ["a b c d", "x"])
    >>> m["edit_distance"], m["f1"], m["bleu"]
    (0.5, 0.5, 0.5)
    """
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references.")
    wordnet, wordnet_label = meteor_wordnet(wordnet)
    per_sample = [
        ocr_sample_metrics(p, r, fox_order=fox_order, wordnet=wordnet) for p, r in zip(predictions, references)
    ]
    out: dict[str, Any] = {
        key: float(np.mean([s[key] for s in per_sample])) if per_sample else float("nan") for key in OCR_KEYS
    }
    out["num_samples"] = len(per_sample)
    out["meteor_wordnet"] = wordnet_label
    out["argument_order"] = "fox" if fox_order else "conventional"
    return out


# ---------------------------------------------------------------------------------------------------------------------
# COCO detection
# ---------------------------------------------------------------------------------------------------------------------

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MAX_DETS_PER_IMAGE = 100


def load_coco_gt(coco_gt: Any):
    """Accept a ``pycocotools.coco.COCO``, a COCO-format dict, or a path to an instances JSON."""
    from pycocotools.coco import COCO

    if isinstance(coco_gt, COCO):
        return coco_gt
    if isinstance(coco_gt, dict):
        coco = COCO()
        coco.dataset = copy.deepcopy(coco_gt)
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco_gt))


def select_coco_detections(
    detections: Iterable[dict],
    image_ids: Iterable[int],
    category_ids: Iterable[int],
    max_dets_per_image: int = MAX_DETS_PER_IMAGE,
) -> tuple[list[dict], dict[str, int]]:
    """Keep the detections pycocotools can score, and count what was dropped and why.

    Drops detections of images outside ``image_ids`` (``loadRes`` would assert) and of categories outside
    ``category_ids`` (COCOeval would silently ignore them), then keeps at most ``max_dets_per_image`` per image: the
    highest scores, ties in output order (pycocotools' own caps are per image *and category*).
    """
    image_ids, category_ids = set(image_ids), set(category_ids)
    dropped = {"unknown_image": 0, "unknown_category": 0, "over_max_dets": 0}
    per_image: dict[int, list[dict]] = {}
    for det in detections:
        if det["image_id"] not in image_ids:
            dropped["unknown_image"] += 1
        elif det["category_id"] not in category_ids:
            dropped["unknown_category"] += 1
        else:
            per_image.setdefault(det["image_id"], []).append(det)
    kept: list[dict] = []
    for dets in per_image.values():
        dets = sorted(dets, key=lambda d: -d["score"])  # stable: equal scores keep the model's order
        dropped["over_max_dets"] += max(0, len(dets) - max_dets_per_image)
        kept.extend(dets[:max_dets_per_image])
    return kept, dropped


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector. COCOeval allocates millions of small, acyclic objects (refcounting
    frees them); every collection the allocations trigger would also traverse everything else alive (the GT, the
    eval records), which costs tens of percent at COCO-val size."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@register_metric("detection")
def coco_detection_metrics(
    coco_gt: Any,
    detections: Sequence[dict],
    image_ids: Sequence[int] | None = None,
    max_dets_per_image: int = MAX_DETS_PER_IMAGE,
) -> dict[str, Any]:
    """COCO ``bbox`` AP via pycocotools (evaluate → accumulate → summarize).

    ``coco_gt`` is a ``COCO`` object, a COCO dict or a JSON path; its annotations need ``area`` and ``iscrowd``.
    ``detections`` are COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h] in original pixels,
    "score"}``. ``image_ids`` is the evaluated image set; ``None`` explicitly means every GT image, and images without
    detections still count. Entries with no GT in their area range are -1, as pycocotools reports them.

    With no detections at all, pycocotools' ``loadRes([])`` would crash; the evaluation then runs against an empty
    result set, which gives 0 wherever GT exists.

    >>> gt = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
    ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
    ...                        "iscrowd": 0}]}
    >>> coco_detection_metrics(gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 1.0}])["AP"]
    0.9999999999999998
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = load_coco_gt(coco_gt)
    all_image_ids = sorted(gt.getImgIds())
    image_ids = all_image_ids if image_ids is None else list(image_ids)
    unknown = set(image_ids) - set(all_image_ids)
    if unknown:
        raise ValueError(f"Image ids not in the ground truth: {sorted(unknown)[:10]}")
    kept, dropped = select_coco_detections(detections, image_ids, gt.getCatIds(), max_dets_per_image)

    if kept:
        with contextlib.redirect_stdout(io.StringIO()):
            # loadRes adds area/id/iscrowd/segmentation keys to the dicts and changes nothing else: shallow copies.
            dt = gt.loadRes([dict(det) for det in kept])
    else:
        dt = COCO()
        dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"])}
        dt.dataset["annotations"] = []
        with contextlib.redirect_stdout(io.StringIO()):
            dt.createIndex()

    evaluator = COCOeval(gt, dt, "bbox")
    evaluator.params.imgIds = image_ids
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary), _gc_paused():
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    out: dict[str, Any] = {name: float(v) for name, v in zip(COCO_STAT_NAMES, evaluator.stats)}
    out["num_images"] = len(evaluator.params.imgIds)
    out["num_detections"] = len(kept)
    out.update({f"dropped_{k}": v for k, v in dropped.items()})
    out["summary"] = summary.getvalue()
    return out


def coco_gt_from_rows(
    rows: Iterable[dict], categories: Sequence[dict] | None = None, image_id_key: str = "image_id"
) -> dict:
    """Build a COCO ground-truth dict from dataset rows in the shared schema (boxes ``xyxy``, original pixels).

    Each row is one image. Its id is ``row[image_id_key]`` when that column exists, else its position. Optional
    columns ``areas`` and ``iscrowd`` (one per box) are used when present; otherwise area = w·h and iscrowd = 0 (right
    for synthetic data; for real COCO pass the official instances JSON instead, whose ``area`` is the mask area).
    ``categories`` defaults to the (id, label) pairs seen in the rows.
    """
    images, annotations, seen_categories = [], [], {}
    for index, row in enumerate(rows):
        image_id = int(row[image_id_key]) if row.get(image_id_key) is not None else index
        images.append({"id": image_id, "width": int(row["width"]), "height": int(row["height"])})
        areas = row.get("areas") or [None] * len(row["boxes"])
        crowd = row.get("iscrowd") or [0] * len(row["boxes"])
        for box, label, category_id, area, iscrowd in zip(
            row["boxes"], row["labels"], row["category_ids"], areas, crowd, strict=True
        ):
            xywh = [float(v) for v in box_convert([box], "xyxy", "xywh")[0]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_id),
                    "bbox": xywh,
                    "area": float(xywh[2] * xywh[3] if area is None else area),
                    "iscrowd": int(iscrowd),
                }
            )
            seen_categories.setdefault(int(category_id), label)
    if categories is None:
        categories = [{"id": cid, "name": name} for cid, name in sorted(seen_categories.items())]
    return {"images": images, "annotations": annotations, "categories": [dict(c) for c in categories]}


def finite_or_none(value: float) -> float | None:
    """JSON-safe number: NaN becomes ``None``."""
    return None if isinstance(value, float) and math.isnan(value) else value
