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
"""Detection reward: Perception-R1's composite (format, matching, F1, class accuracy, IoU, missing penalty)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..geometry import box_convert, box_iou, box_iou_giou, sanitize_boxes
from ..parsing import parse_boxes
from ..validation import GroundTruthError
from ._base import PerceptionReward, mean_or_nan
from ._registry import register_reward
from .categories import CategoryTable
from .matching import greedy_match, hungarian_match


DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    # Perception-R1's released detection script: 0.25·format + 0.75·F1 + cls + mean IoU, penalty off
    # (`DO_PENAIlty=False`), DETR cost (5·L1 in pixels, 1·class, 2·GIoU), keep pairs with IoU > 0.5.
    "pr1": {
        "format_weight": 0.25,
        "f1_weight": 0.75,
        "cls_weight": 1.0,
        "iou_weight": 1.0,
        "penalty_weight": 0.0,
        "position_weight": 0.0,
        "completeness_weight": 0.0,
        "matcher": "hungarian",
        "iou_threshold": 0.5,
        "threshold_inclusive": False,
        "labels_must_match": False,
        "strict_json": True,
    },
    # The paper's final Table 6 row: the same plus the missing/extra penalty 0.5·(FP rate + FN rate).
    "paper": {"penalty_weight": 0.5},
    # VLM-R1 `weighted_sum`: greedy max-IoU-first matching at IoU ≥ 0.5 with matching labels,
    # 0.7·ΣIoU/|G| + 0.3·(1 − (miss rate + false-alarm rate)/2); no format term.
    "vlm_r1": {
        "format_weight": 0.0,
        "f1_weight": 0.0,
        "cls_weight": 0.0,
        "iou_weight": 0.0,
        "penalty_weight": 0.0,
        "position_weight": 0.7,
        "completeness_weight": 0.3,
        "matcher": "greedy",
        "iou_threshold": 0.5,
        "threshold_inclusive": True,
        "labels_must_match": True,
        "strict_json": False,
    },
}
DETECTION_PRESETS["released"] = DETECTION_PRESETS["pr1"]
DETECTION_PRESETS["paper"] = {**DETECTION_PRESETS["pr1"], **DETECTION_PRESETS["paper"]}


class DetectionReward(PerceptionReward):
    """
    Composite detection reward (Perception-R1 §4.3, with every weight configurable):

    `r = w_fmt·f + w_f1·F1 + w_cls·cls + w_iou·loc + w_pos·pos + w_comp·comp − w_pen·(FP_rate + FN_rate)`,
    clamped to `[0, w_fmt + w_f1 + w_cls + w_iou + w_pos + w_comp]`, where, for `P` the valid predictions, `G` the
    ground truth and `m` the matched pairs that pass the IoU threshold:

    - `f = 1 − invalid items / items`: an item is valid iff it has a `bbox_2d` of 4 finite numbers that is not inverted
      and a `label` in the category table;
    - `F1` from precision `m/|P|` and recall `m/|G|`; `cls` = fraction of kept pairs whose classes agree; `loc` = mean
      IoU of kept pairs; `pos = ΣIoU/|G|`; `comp = 1 − (FN_rate + FP_rate)/2`; `FP_rate = (|P|−m)/|P|`,
      `FN_rate = (|G|−m)/|G|`.

    Matching: `"hungarian"` minimizes the DETR cost `cost_bbox·‖cxcywh(p) − cxcywh(g)‖₁ − cost_class·q[t] −
    cost_giou·GIoU(p, g)` (L1 in frame pixels, as released; `q` is the softmax of a one-hot logit over the table's
    **contiguous** class index, D5 — 80 columns for COCO where the release used 90, which changes the class term from
    0.0296/0.0109 to 0.0333/0.0123, negligible next to the L1 term), then keeps pairs with IoU > `iou_threshold`; `"greedy"` takes pairs by decreasing
    IoU (≥ threshold with `threshold_inclusive`). With `labels_must_match`, pairs of different classes never match.

    Special cases (as released): no ground truth gives `w_fmt·f + w_comp·[|P| = 0]`; no kept pair gives `w_fmt·f`
    (no penalty); a parse failure (or, with `strict_json`, JSON that does not decode, e.g. truncated output) gives 0.

    Reward-hacking guards: matching is one-to-one (duplicates earn nothing twice and lower precision); at most
    `max_boxes` predictions are matched, the rest count as unmatched predictions; `penalty_weight` (on in the
    `"paper"` preset) penalizes over- and under-prediction; `duplicate_iou` (off by default, as in the paper) turns a
    prediction that overlaps an earlier same-label prediction at IoU ≥ `duplicate_iou` into an unmatched one.

    Args:
        preset (`str`, *optional*, defaults to `"pr1"`):
            `"pr1"` / `"released"` (penalty off), `"paper"` (penalty on), `"vlm_r1"` (greedy); other options override.
        format_weight, f1_weight, cls_weight, iou_weight, position_weight, completeness_weight, penalty_weight
            (`float`): term weights (see the presets).
        matcher (`str`): `"hungarian"` or `"greedy"`.
        cost_bbox, cost_class, cost_giou (`float`, defaults `5.0`, `1.0`, `2.0`): DETR matching cost weights.
        iou_threshold (`float`, defaults to `0.5`), threshold_inclusive (`bool`): pair acceptance.
        labels_must_match (`bool`): only same-class pairs match.
        strict_json (`bool`): JSON that does not decode as a whole scores 0 (Perception-R1); otherwise every complete
            item of truncated output is used.
        max_boxes (`int`, defaults to `100`): matching cap.
        duplicate_iou (`float` or `None`, defaults to `None`): duplicate suppression threshold.
        categories: label set (`None` = the 80 COCO classes; see [`CategoryTable.from_any`]).
        case_sensitive_labels (`bool`, defaults to `True`): exact label names, as Perception-R1.
        **kwargs: `name`, `task` (default `"detection"`), `frame`, `min_pixels`, `max_pixels`, `factor`.

    Ground truth: `boxes` (original pixels) and `category_ids` (dataset ids), or `labels` (names) when `category_ids`
    is empty. Logged metrics: `format`, `precision`, `recall`, `f1`, `matched`, `num_pred`, `num_gt`, `cls_accuracy`,
    `mean_iou`, `fp_rate`, `fn_rate`, `parse_failure_rate`, `capped_rate`, `duplicate_rate`.
    """

    default_name = "detection"
    default_task = "detection"
    gt_columns = ("width", "height", "model_image_sizes", "boxes", "category_ids", "labels")
    presets: ClassVar[dict[str, dict[str, Any]]] = DETECTION_PRESETS  # the values of `preset`

    def __init__(
        self,
        preset: str = "pr1",
        format_weight: float | None = None,
        f1_weight: float | None = None,
        cls_weight: float | None = None,
        iou_weight: float | None = None,
        position_weight: float | None = None,
        completeness_weight: float | None = None,
        penalty_weight: float | None = None,
        matcher: str | None = None,
        cost_bbox: float = 5.0,
        cost_class: float = 1.0,
        cost_giou: float = 2.0,
        iou_threshold: float | None = None,
        threshold_inclusive: bool | None = None,
        labels_must_match: bool | None = None,
        strict_json: bool | None = None,
        max_boxes: int = 100,
        duplicate_iou: float | None = None,
        categories: Any = None,
        case_sensitive_labels: bool = True,
        **kwargs: Any,
    ):
        if preset not in DETECTION_PRESETS:
            raise ValueError(f"Unknown detection preset {preset!r}; expected one of {sorted(DETECTION_PRESETS)}.")
        given = {
            "format_weight": format_weight,
            "f1_weight": f1_weight,
            "cls_weight": cls_weight,
            "iou_weight": iou_weight,
            "position_weight": position_weight,
            "completeness_weight": completeness_weight,
            "penalty_weight": penalty_weight,
            "matcher": matcher,
            "iou_threshold": iou_threshold,
            "threshold_inclusive": threshold_inclusive,
            "labels_must_match": labels_must_match,
            "strict_json": strict_json,
        }
        config = {**DETECTION_PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
        if config["matcher"] not in ("hungarian", "greedy"):
            raise ValueError(f"matcher must be 'hungarian' or 'greedy', got {config['matcher']!r}.")
        weights = [config[k] for k in given if k.endswith("_weight")]
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"Detection weights must be finite and non-negative, got {weights}.")
        if max_boxes < 1:
            raise ValueError("max_boxes must be at least 1.")
        kwargs.setdefault("name", "detection" if preset in ("pr1", "released") else f"detection_{preset}")
        super().__init__(**kwargs)
        self.preset = preset
        for key, value in config.items():
            setattr(self, key, value)
        self.cost_bbox, self.cost_class, self.cost_giou = float(cost_bbox), float(cost_class), float(cost_giou)
        self.max_boxes = int(max_boxes)
        self.duplicate_iou = duplicate_iou
        self.categories = CategoryTable.from_any(categories, case_sensitive=case_sensitive_labels)
        self.max_reward = sum(config[k] for k in given if k.endswith("_weight") and k != "penalty_weight")
        self.value_range = (0.0, float(self.max_reward))
        # DETR's class cost: softmax of a one-hot logit over C classes, read at the target class.
        c = len(self.categories)
        self._p_same = math.e / (math.e + c - 1)
        self._p_diff = 1.0 / (math.e + c - 1)
        self._label_cache: dict[str | None, int | None] = {}

    def _label_index(self, label: str | None) -> int | None:
        # Models repeat a handful of label strings: memoize the lookup (bounded, model output is untrusted).
        try:
            return self._label_cache[label]
        except KeyError:
            index = self.categories.index_of_name(label)
            if len(self._label_cache) < 4096:
                self._label_cache[label] = index
            return index

    def config(self) -> dict[str, Any]:
        """The effective options (preset plus overrides)."""
        keys = list(DETECTION_PRESETS["pr1"]) + ["cost_bbox", "cost_class", "cost_giou", "max_boxes", "duplicate_iou"]
        return {k: getattr(self, k) for k in keys}

    # -- ground truth -------------------------------------------------------------------------------------------

    def _gt_classes(self, kwargs: dict[str, Any], i: int, n_boxes: int) -> np.ndarray:
        # Types were validated (`gt_columns`); what is left is the lengths and the category table.
        ids = kwargs.get("category_ids")
        ids = ids[i] if ids is not None else None
        if ids is not None and len(ids) > 0:
            index = [self.categories.index_of_id(int(c)) for c in ids]
            source, column = ids, "category_ids"
        else:
            labels = kwargs.get("labels")
            source, column = (labels[i] if labels is not None else None), "labels"
            if source is None or len(source) == 0:
                raise GroundTruthError(
                    f"{self._where(kwargs, i, 'category_ids')}: missing; the reward needs `category_ids` or `labels` "
                    f"for the row's {n_boxes} boxes"
                )
            index = [self.categories.index_of_name(label) for label in source]
        if len(index) != n_boxes:
            raise GroundTruthError(f"{self._where(kwargs, i, column)}: {len(index)} classes for {n_boxes} boxes")
        if None in index:
            unknown = list(source)[index.index(None)]
            raise GroundTruthError(
                f"{self._where(kwargs, i, column)}: {unknown!r} is not in the category table; pass `categories=` for "
                "non-COCO label sets"
            )
        return np.asarray(index, dtype=np.int64)

    # -- one completion -----------------------------------------------------------------------------------------

    def _score_one(self, text: Any, gt: np.ndarray, gt_cls: np.ndarray, extent: np.ndarray, stats: dict) -> float:
        """Reward of one completion; `gt` is in the model's frame, `gt_cls` holds contiguous class indices."""
        result = parse_boxes(text, format=stats["syntax"], max_boxes=self.max_boxes)
        if result.error is not None or (self.strict_json and not result.value.well_formed):
            stats["parse_failure"].append(True)
            return 0.0
        stats["parse_failure"].append(False)
        parsed = result.value
        boxes, valid = sanitize_boxes(parsed.boxes, extent, inverted="reject")
        index = [self._label_index(label) for label in parsed.labels]
        valid &= np.array([c is not None for c in index], dtype=bool).reshape(-1)
        pred_cls = np.array([-1 if c is None else c for c in index], dtype=np.int64)
        considered = len(parsed.coords) + parsed.num_malformed
        beyond_cap = parsed.num_items - considered
        fmt = float(valid.sum()) / considered if considered else 0.0
        boxes, pred_cls = boxes[valid], pred_cls[valid]
        stats["format"].append(fmt)
        stats["capped"].append(parsed.capped)

        if self.duplicate_iou is not None and len(boxes) > 1:
            keep = _non_duplicates(boxes, pred_cls, self.duplicate_iou)
            stats["duplicates"].append(float((~keep).sum()) / len(boxes))
            n_dup = int((~keep).sum())
            boxes, pred_cls = boxes[keep], pred_cls[keep]
        else:
            n_dup = 0
        n_pred = len(boxes) + n_dup + beyond_cap
        n_gt = len(gt)
        stats["num_pred"].append(n_pred)
        stats["num_gt"].append(n_gt)
        base = self.format_weight * fmt
        if n_gt == 0:
            return base + self.completeness_weight * float(n_pred == 0)
        if len(boxes) == 0:
            self._record(stats, n_pred, n_gt, 0, None, None)
            return base

        gt_cxcywh = box_convert(gt, "xyxy", "cxcywh") if self.matcher == "hungarian" else None
        same = pred_cls[:, None] == gt_cls[None, :]
        if self.matcher == "hungarian":
            iou, giou = box_iou_giou(boxes, gt)
            with np.errstate(over="ignore", invalid="ignore"):  # huge but finite boxes; the matcher clips costs
                l1 = np.abs(box_convert(boxes, "xyxy", "cxcywh")[:, None, :] - gt_cxcywh[None]).sum(-1)
                class_prob = np.where(same, self._p_same, self._p_diff)
                cost = self.cost_bbox * l1 - self.cost_class * class_prob - self.cost_giou * giou
            if self.labels_must_match:
                cost = np.where(same, cost, 1e15)
            rows, cols = hungarian_match(cost)
            pair_iou = iou[rows, cols]
            keep = pair_iou >= self.iou_threshold if self.threshold_inclusive else pair_iou > self.iou_threshold
            if self.labels_must_match:
                keep &= same[rows, cols]
            rows, cols = rows[keep], cols[keep]
        else:
            iou = box_iou(boxes, gt)
            score = np.where(same, iou, 0.0) if self.labels_must_match else iou
            rows, cols = greedy_match(score, self.iou_threshold, inclusive=self.threshold_inclusive)
        m = len(rows)
        if m == 0:
            self._record(stats, n_pred, n_gt, 0, None, None)
            return base
        matched_iou = iou[rows, cols]
        cls_acc = float(same[rows, cols].mean())
        mean_iou = float(matched_iou.mean())
        precision, recall = m / n_pred, m / n_gt
        f1 = 2 * precision * recall / (precision + recall)
        fp_rate, fn_rate = 1.0 - precision, 1.0 - recall
        self._record(stats, n_pred, n_gt, m, cls_acc, mean_iou)
        reward = (
            base
            + self.f1_weight * f1
            + self.cls_weight * cls_acc
            + self.iou_weight * mean_iou
            + self.position_weight * float(matched_iou.sum()) / n_gt
            + self.completeness_weight * (1.0 - (fp_rate + fn_rate) / 2.0)
            - self.penalty_weight * (fp_rate + fn_rate)
        )
        return min(max(reward, 0.0), self.max_reward)

    @staticmethod
    def _record(stats, n_pred, n_gt, m, cls_acc, mean_iou):
        stats["precision"].append(m / n_pred if n_pred else 0.0)
        stats["recall"].append(m / n_gt)
        stats["f1"].append(2 * m / (n_pred + n_gt))
        stats["matched"].append(m)
        if cls_acc is not None:
            stats["cls_accuracy"].append(cls_acc)
            stats["mean_iou"].append(mean_iou)

    def _score(self, texts, rows, kwargs, completion_ids):
        boxes_column = self._column(kwargs, "boxes", self.__name__)
        scale, extent = self.scales_and_extents(kwargs, rows)
        scale4 = np.concatenate((scale, scale), axis=1)  # np.tile(scale, 2), without its Python overhead
        keys = ("parse_failure", "format", "capped", "duplicates", "num_pred", "num_gt", "precision", "recall", "f1")
        stats: dict[str, Any] = {k: [] for k in (*keys, "matched", "cls_accuracy", "mean_iou")}
        stats["syntax"] = self.geometry(kwargs).box_syntax  # the family's own syntax, strictly (JSON for Qwen)
        rewards = []
        for k, i in enumerate(rows):
            gt = np.asarray(boxes_column[i] if boxes_column[i] is not None else [], dtype=np.float64).reshape(-1, 4)
            gt_cls = self._gt_classes(kwargs, i, len(gt)) if len(gt) else np.zeros(0, dtype=np.int64)
            gt = gt * scale4[k]
            rewards.append(self._score_one(texts[k], gt, gt_cls, extent[k], stats))
        metrics = {
            "parse_failure_rate": mean_or_nan(stats["parse_failure"]),
            "format": mean_or_nan(stats["format"]),
            "capped_rate": mean_or_nan(stats["capped"]),
            "num_pred": mean_or_nan(stats["num_pred"]),
            "num_gt": mean_or_nan(stats["num_gt"]),
            "precision": mean_or_nan(stats["precision"]),
            "recall": mean_or_nan(stats["recall"]),
            "f1": mean_or_nan(stats["f1"]),
            "matched": mean_or_nan(stats["matched"]),
            "cls_accuracy": mean_or_nan(stats["cls_accuracy"]),
            "mean_iou": mean_or_nan(stats["mean_iou"]),
        }
        if self.duplicate_iou is not None:
            metrics["duplicate_rate"] = mean_or_nan(stats["duplicates"])
        return rewards, metrics


def _non_duplicates(boxes: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of boxes that do not overlap an earlier kept box of the same class at IoU ≥ `threshold`."""
    iou = box_iou(boxes, boxes)
    same = classes[:, None] == classes[None, :]
    keep = np.ones(len(boxes), dtype=bool)
    for j in range(1, len(boxes)):
        earlier = keep[:j] & same[j, :j] & (iou[j, :j] >= threshold)
        keep[j] = not earlier.any()
    return keep


@register_reward("detection")
def _detection(**options: Any) -> DetectionReward:
    return DetectionReward(**options)
