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
"""Counting rewards: Perception-R1's matched point reward and exact count."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from ..geometry import sanitize_boxes
from ..parsing import MAX_BOXES, parse_boxes, parse_count, parse_points
from ._base import PerceptionReward, mean_or_nan
from ._registry import register_reward
from .matching import hungarian_match


def _predicted_points(text: Any, source: str, max_items: int, prefer: str | None = None):
    """
    Predicted points of a completion: box centres (`"boxes"`), points (`"points"`), or `"auto"` (boxes, else points).
    Returns `(points (K, 2), extra, error)`: `extra` counts well-formed items beyond `max_items` (they are predictions
    too, so they count towards the predicted number but are not matched); `error` is a parse failure reason or None.
    A completion that parses but holds no box/point gives zero points and `error="no_boxes"` / `"no_points"`.
    """
    error = None
    if source in ("auto", "boxes"):
        result = parse_boxes(text, max_boxes=max_items, prefer=prefer)
        if result.error is None:
            v = result.value
            boxes = np.asarray(v.coords, dtype=np.float64).reshape(-1, 4)
            with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: inf centres are dropped later
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
            return centres, max(0, v.num_items - v.num_malformed - len(v.coords)), None
        error = result.error
        if source == "boxes" or error != "no_boxes":
            return np.zeros((0, 2)), 0, error
    result = parse_points(text, max_points=max_items)
    if result.error is None:
        v = result.value
        return (
            np.asarray(v.coords, dtype=np.float64).reshape(-1, 2),
            max(0, v.num_items - v.num_malformed - len(v.coords)),
            None,
        )
    return np.zeros((0, 2)), 0, result.error


class CountMatchReward(PerceptionReward):
    """
    Perception-R1's counting reward: predicted points (box centres by default) are matched one-to-one to the
    ground-truth points with the Hungarian algorithm on Euclidean distance, then

    `r = min(|P|, |G|) / max(|P|, |G|) · clip(1 − d̄ / D, 0, 1)`

    with `d̄` the mean distance of the `min(|P|, |G|)` matched pairs and `D` the frame's diagonal (`1000·√2` for
    `qwen2_vl`, `√(W_r² + H_r²)` for `qwen2_5_vl`, as written, not Perception-R1 predecessors' `1 − √2·d/1000`, D24).
    Both sets empty gives 1; exactly one empty gives 0. Non-finite predictions are dropped; out-of-image ones are
    clipped. Perception-R1's format gate needs the Qwen2-VL special tokens, which TRL strips; here the equivalent
    gate is that the answer parses (a parse failure scores 0).

    Guards: the count ratio already penalizes extra (including duplicated) predictions, and the matching is one-to-one,
    so duplicates never earn location credit twice; at most `max_predictions` predictions are matched (the rest still
    count in `|P|`).

    Args:
        prediction (`str`, *optional*, defaults to `"auto"`):
            `"boxes"` (centres of `bbox_2d` / `(x1,y1),(x2,y2)` / `[x1,y1,x2,y2]`), `"points"` (`point_2d` / `(x, y)`)
            or `"auto"` (boxes, else points).
        max_predictions (`int`, *optional*, defaults to `100`):
            Matching cap.
        **kwargs:
            `name`, `task` (default `"counting"`), `frame`, `min_pixels`, `max_pixels`, `factor`.

    Ground truth: the `points` column (original pixels). Rows with no points and a positive `count` are not applicable
    (`None`, e.g. PixMo-Count validation rows): use `count_exact` there. Logged metrics: `count_ratio`, `location`,
    `count_accuracy`, `count_abs_error`, `parse_failure_rate`.
    """

    default_name = "count_match"
    default_task = "counting"
    gt_columns = ("width", "height", "model_image_sizes", "points", "count")

    def __init__(self, prediction: str = "auto", max_predictions: int = 100, **kwargs: Any):
        if prediction not in ("auto", "boxes", "points"):
            raise ValueError(f"prediction must be 'auto', 'boxes' or 'points', got {prediction!r}.")
        if max_predictions < 1:
            raise ValueError("max_predictions must be at least 1.")
        super().__init__(**kwargs)
        self.prediction = prediction
        self.max_predictions = int(max_predictions)

    def _score(self, texts, rows, kwargs, completion_ids):
        points_column = self._column(kwargs, "points", self.__name__)
        counts = kwargs.get("count")
        scale, extent = self.scales_and_extents(kwargs, rows)
        syntax = self.box_syntax(kwargs)
        diagonal = np.hypot(extent[:, 0], extent[:, 1])
        if not np.isfinite(diagonal).all():
            # The location term is normalised by the frame's diagonal; without it every placement would score 1.
            raise ValueError(
                f"{self.__name__} needs the `width` and `height` columns (the image size) in every frame."
            )
        rewards: list[float | None] = [None] * len(rows)
        ratios, locations, failures, exact, abs_errors = [], [], [], [], []
        for k, i in enumerate(rows):
            gt = np.asarray(points_column[i] if points_column[i] is not None else [], dtype=np.float64).reshape(-1, 2)
            if len(gt) == 0 and counts is not None and counts[i]:
                continue  # a positive count without points: nothing to match against
            gt = gt * scale[k]
            pred, extra, error = _predicted_points(texts[k], self.prediction, self.max_predictions, syntax)
            failed = error is not None and error not in ("no_boxes", "no_points")
            failures.append(error is not None)
            # Same rules as `sanitize_points(pred, extent)` (drop non-finite, clip to the frame), inlined: hot path.
            pred = np.clip(pred[np.isfinite(pred).all(axis=1)], 0.0, extent[k])
            n_pred, n_gt = len(pred) + extra, len(gt)
            exact.append(n_pred == n_gt)
            abs_errors.append(abs(n_pred - n_gt))
            if failed or (n_pred == 0) != (n_gt == 0):
                rewards[k] = 0.0
                continue
            if n_gt == 0:
                rewards[k] = 1.0
                continue
            if len(pred) == 0:  # every prediction is beyond the matching cap (only with a tiny cap)
                rewards[k] = 0.0
                continue
            distance = cdist(pred, gt)
            r, c = hungarian_match(distance)
            ratio = min(n_pred, n_gt) / max(n_pred, n_gt)
            location = float(np.clip(1.0 - distance[r, c].mean() / diagonal[k], 0.0, 1.0))
            ratios.append(ratio)
            locations.append(location)
            rewards[k] = ratio * location
        metrics = {
            "count_ratio": mean_or_nan(ratios),
            "location": mean_or_nan(locations),
            "count_accuracy": mean_or_nan(exact),
            "count_abs_error": mean_or_nan(abs_errors),
            "parse_failure_rate": mean_or_nan(failures),
        }
        return rewards, metrics


COUNT_SOURCES = ("auto", "boxes", "points", "answer")


def predicted_count(text: Any, source: str = "auto", prefer: str | None = None) -> tuple[int | None, str | None]:
    """
    The count a completion predicts, as `(count, failure reason)`; the one counting rule shared by the `count_exact`
    reward and the evaluation.

    `source="auto"`: the number of boxes if the answer has boxes (non-finite boxes do not count; items beyond the
    parser's cap do; more than `MAX_BOXES` (1,000) items is `"count_too_large"`), else the number of points, else the
    integer answer
    ([`~trl_perception.parsing.parse_count`]). `"boxes"`, `"points"` and `"answer"` force one reading.

    Example:

    ```python
    >>> predicted_count('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]')
    (2, None)
    >>> predicted_count("<answer>seven</answer>")
    (7, None)
    >>> predicted_count("many")
    (None, 'no_count')

    ```
    """
    if source not in COUNT_SOURCES:
        raise ValueError(f"source must be one of {COUNT_SOURCES}, got {source!r}.")
    if source in ("auto", "boxes"):
        result = parse_boxes(text, prefer=prefer)
        if result.error is None:
            v = result.value
            if v.num_items > MAX_BOXES:  # the parser counts list/pair/tag items up to MAX_BOXES + 1 only
                return None, "count_too_large"
            _, valid = sanitize_boxes(v.boxes, inverted="swap")
            return int(valid.sum()) + v.num_items - v.num_malformed - len(valid), None
        if source == "boxes" or result.error != "no_boxes":
            return None, result.error
    if source in ("auto", "points"):
        result = parse_points(text)
        if result.error is None:
            if result.value.num_items > MAX_BOXES:
                return None, "count_too_large"
            return result.value.num_items - result.value.num_malformed, None
        if source == "points" or result.error != "no_points":
            return None, result.error
    result = parse_count(text)
    return result.value, result.error


class CountExactReward(PerceptionReward):
    """
    1 if the predicted count equals the ground truth, else 0 (PixMo-Count's exact-match accuracy as a reward).

    The predicted count is, with `source="auto"` (default): the number of well-formed boxes if the answer has boxes,
    else the number of points, else the integer answer ([`~trl_perception.parsing.parse_count`]: digits or English
    words; the last integer inside `<answer>` tags). `source` may force `"boxes"`, `"points"` or `"answer"`.
    Ground truth: the `count` column, or the number of `points` when `count` is missing. Logged metrics: `accuracy`,
    `abs_error`, `parse_failure_rate`.
    """

    default_name = "count_exact"
    default_task = "counting"
    gt_columns = ("count", "points")

    def __init__(self, source: str = "auto", **kwargs: Any):
        if source not in COUNT_SOURCES:
            raise ValueError(f"source must be one of {COUNT_SOURCES}, got {source!r}.")
        kwargs.setdefault("frame", "original")  # counting objects needs no frame
        super().__init__(**kwargs)
        self.source = source

    def _predicted_count(self, text: Any, prefer: str | None = None) -> tuple[int | None, str | None]:
        return predicted_count(text, self.source, prefer)

    def _score(self, texts, rows, kwargs, completion_ids):
        counts = kwargs.get("count")
        points = kwargs.get("points")
        if counts is None and points is None:
            self._column(kwargs, "count", self.__name__)
        syntax = self.box_syntax(kwargs)
        rewards: list[float | None] = [None] * len(rows)
        correct, abs_errors, failures = [], [], []
        for k, i in enumerate(rows):
            target = counts[i] if counts is not None else None
            if target is None and points is not None and points[i] is not None:
                target = len(points[i])
            if target is None:
                continue
            predicted, error = self._predicted_count(texts[k], syntax)
            failures.append(error is not None)
            ok = predicted is not None and predicted == int(target)
            correct.append(ok)
            if predicted is not None:
                abs_errors.append(abs(predicted - int(target)))
            rewards[k] = 1.0 if ok else 0.0
        metrics = {
            "accuracy": mean_or_nan(correct),
            "abs_error": mean_or_nan(abs_errors),
            "parse_failure_rate": mean_or_nan(failures),
        }
        return rewards, metrics


@register_reward("count_match")
def _count_match(**options: Any) -> CountMatchReward:
    return CountMatchReward(**options)


@register_reward("count_exact")
def _count_exact(**options: Any) -> CountExactReward:
    return CountExactReward(**options)
