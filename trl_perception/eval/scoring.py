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
"""Per-sample scoring: parse one completion, map it to original pixels, and score it against the row's GT.

Parsing is `trl_perception.parsing` and coordinates go through `trl_perception.geometry` (the same code the rewards
use). Each scorer returns a JSON-serializable `dict` that becomes one line of ``predictions.jsonl``:

| key | meaning |
|---|---|
| ``failure`` | parse failure reason (one of `trl_perception.parsing.PARSE_ERRORS`) or ``None`` |
| ``parsed`` | the value as the model wrote it (boxes in the model's frame, a count, a text) |
| ``prediction`` | the value the metric uses (boxes in original pixels, count, text) |
| ``score`` | a per-sample number, higher is better: grounding IoU, counting exact match (0/1), OCR 1 − normalized edit
  distance, detection recall@0.5 (share of GT boxes hit by a same-class box with IoU ≥ 0.5; a diagnostic) |

Example:

```python
>>> from trl_perception.geometry import ImageGeometry
>>> row = {"width": 200, "height": 100, "boxes": [[20, 10, 120, 60]]}
>>> r = score_grounding("(100,100),(600,600)", row, ImageGeometry(200, 100, 196, 112), frame="qwen2_vl")
>>> r["prediction"], r["score"]
([20.0, 10.0, 120.0, 60.0], 1.0)

```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trl_perception.eval.metrics import normalized_edit_distance
from trl_perception.geometry import ImageGeometry, box_iou, convert_boxes, get_frame, sanitize_boxes
from trl_perception.parsing import parse_boxes, parse_text
from trl_perception.validation import GroundTruthError, validate_row


COUNT_MODES = ("auto", "boxes", "points", "answer")


def _check_frame(frame: str) -> None:
    get_frame(frame)  # raises, listing the registered frames


def _to_original(boxes: np.ndarray, frame: str, geometry: ImageGeometry) -> np.ndarray:
    return np.asarray(convert_boxes(boxes, frame, "original", geometry), dtype=np.float64).reshape(-1, 4)


def _sanitize(
    boxes: np.ndarray, frame: str, geometry: ImageGeometry, out_of_image: str
) -> tuple[np.ndarray, np.ndarray]:
    """The rewards' box policy (`trl_perception.geometry.sanitize_boxes`) in the model's frame: non-finite and inverted
    boxes are invalid; out-of-image boxes are kept (``"keep"``, the paper's evaluation), clipped or rejected."""
    return sanitize_boxes(boxes, geometry.extent(frame), out_of_image=out_of_image, inverted="reject")


def score_grounding(
    text: str,
    row: Mapping[str, Any],
    geometry: ImageGeometry,
    frame: str,
    out_of_image: str = "keep",
    syntax: str | None = None,
) -> dict[str, Any]:
    """The first parsed box (as Perception-R1's evaluation) against the row's single GT box; IoU in original pixels.

    A parse failure, or an invalid first box (non-finite or inverted: ``failure="invalid_box"``), has IoU 0 and
    ``prediction`` ``None``. ``out_of_image`` is the rewards' option of the same name (default ``"keep"``: the paper's
    evaluation does not clip). ``syntax`` (the model family's box syntax) is tried first when parsing.
    """
    _check_frame(frame)
    validate_row("Scorer 'grounding'", row, ("width", "height", "boxes"), required=("boxes",))
    if len(row["boxes"]) == 0:
        raise GroundTruthError(f"Scorer 'grounding', row {row.get('id')!r}, column 'boxes': no ground-truth box")
    result = parse_boxes(text, prefer=syntax)
    gt = [float(v) for v in row["boxes"][0]]
    if not result.ok or len(result.value.coords) == 0:  # `[]` or only malformed items: no box to score
        failure = result.error or "no_boxes"
        return {"failure": failure, "parsed": None, "prediction": None, "score": 0.0, "gt": gt}
    parsed = np.asarray(result.value.boxes[:1], dtype=np.float64)
    boxes, valid = _sanitize(parsed, frame, geometry, out_of_image)
    if not valid[0]:
        return {"failure": "invalid_box", "parsed": _jsonable(parsed[0]), "prediction": None, "score": 0.0, "gt": gt}
    pred = _to_original(boxes, frame, geometry)[0]
    if not np.isfinite(pred).all():  # a huge finite coordinate kept (`out_of_image="keep"`) overflows when scaled
        return {"failure": "invalid_box", "parsed": _jsonable(parsed[0]), "prediction": None, "score": 0.0, "gt": gt}
    iou = float(np.asarray(box_iou(pred[None], np.asarray([gt])))[0, 0])
    return {"failure": None, "parsed": parsed[0].tolist(), "prediction": pred.tolist(), "score": iou, "gt": gt}


def _jsonable(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, non-finite values as ``None`` (strict JSON has no NaN/Infinity)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).tolist()]


def parse_count_prediction(text: str, mode: str = "auto", syntax: str | None = None) -> tuple[int | None, str | None]:
    """Predicted count as ``(count, failure)``, by the rule of the ``count_exact`` reward.

    Modes (the reward's ``source``): ``"boxes"`` counts well-formed boxes (Perception-R1's counting protocol: one box
    per object), ``"points"`` counts points, ``"answer"`` reads a single integer answer (digits or English words; the
    last integer inside ``<answer>`` tags), ``"auto"`` tries boxes, then points, then the integer answer.

    >>> parse_count_prediction('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]')
    (2, None)
    >>> parse_count_prediction("<answer>7</answer>")
    (7, None)
    >>> parse_count_prediction("many")
    (None, 'no_count')

    """
    if mode not in COUNT_MODES:
        raise ValueError(f"Unknown count mode {mode!r}; expected one of {COUNT_MODES}.")
    from trl_perception.rewards import predicted_count  # the one counting rule, shared with `count_exact`

    return predicted_count(text, source=mode, prefer=syntax)


def score_counting(text: str, row: Mapping[str, Any], mode: str = "auto", syntax: str | None = None) -> dict[str, Any]:
    """Exact match of the predicted count (see `parse_count_prediction`) with ``row["count"]``."""
    validate_row("Scorer 'counting'", row, ("count",), required=("count",))
    count, failure = parse_count_prediction(text, mode, syntax)
    gt = int(row["count"])
    return {
        "failure": failure,
        "parsed": count,
        "prediction": count,
        "score": float(count == gt) if count is not None else 0.0,
        "gt": gt,
    }


def score_ocr(text: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The answer text (`trl_perception.parsing.parse_text`); a failure scores as an empty prediction.

    ``score`` is 1 − normalized edit distance on the raw strings (the paper's metric, no normalization).
    """
    validate_row("Scorer 'ocr'", row, ("text",), required=("text",))
    result = parse_text(text)
    gt = row["text"]
    pred = result.value if result.ok else ""
    return {
        "failure": result.error,
        "parsed": result.value,
        "prediction": pred,
        "score": 1.0 - normalized_edit_distance(pred, gt),
        "gt": gt,
    }


def category_table(categories: Any):
    """The detection label set as the rewards' `CategoryTable` (one name → id mapping in the project)."""
    from trl_perception.rewards import CategoryTable

    return CategoryTable.from_any(categories)


def score_detection(
    text: str,
    row: Mapping[str, Any],
    geometry: ImageGeometry,
    frame: str,
    categories: Any,
    iou_threshold: float = 0.5,
    out_of_image: str = "keep",
    syntax: str | None = None,
) -> dict[str, Any]:
    """Parsed detections in original pixels with COCO category ids (confidence 1.0 each, in output order).

    ``categories`` is the label set (a `trl_perception.rewards.CategoryTable`, ``{id: name}`` or COCO's
    ``[{"id", "name"}, ...]``); labels map to ids through it, as in the detection reward: exact name, surrounding
    whitespace ignored. Unknown or missing labels are dropped and counted
    in ``num_unknown_labels``; non-finite or inverted boxes are dropped and counted in ``num_invalid_boxes``. ``prediction`` is a list of ``{"bbox": [x1, y1, x2, y2], "label", "category_id",
    "score": 1.0}``; the COCO results (``xywh``) are made from it by the runner.
    """
    _check_frame(frame)
    columns = ("width", "height", "boxes", "category_ids")
    validate_row("Scorer 'detection'", row, columns, required=("boxes", "category_ids"))
    if len(row["category_ids"]) != len(row["boxes"]):
        raise GroundTruthError(
            f"Scorer 'detection', row {row.get('id')!r}, column 'category_ids': {len(row['category_ids'])} ids for "
            f"{len(row['boxes'])} boxes"
        )
    gt_boxes = np.asarray(row["boxes"], dtype=np.float64).reshape(-1, 4)
    gt_ids = [int(c) for c in row["category_ids"]]
    result = parse_boxes(text, prefer=syntax)
    base = {"gt": {"boxes": gt_boxes.tolist(), "category_ids": gt_ids}}
    if not result.ok:
        return {
            **base,
            "failure": result.error,
            "parsed": None,
            "prediction": [],
            "num_unknown_labels": 0,
            "score": 0.0 if len(gt_ids) else 1.0,
        }
    parsed = result.value
    sanitized, valid = _sanitize(np.asarray(parsed.boxes, dtype=np.float64), frame, geometry, out_of_image)
    boxes = _to_original(sanitized, frame, geometry)
    valid &= np.isfinite(boxes).all(axis=1)  # a huge coordinate kept (`out_of_image="keep"`) overflows when scaled
    table = category_table(categories)
    detections, unknown, invalid = [], 0, 0
    for box, label, ok in zip(boxes, parsed.labels, valid):
        index = table.index_of_name(label)
        category_id = None if index is None else table.ids[index]
        if not ok:
            invalid += 1
            continue
        if category_id is None:
            unknown += 1
            continue
        detections.append(
            {"bbox": box.tolist(), "label": label.strip(), "category_id": int(category_id), "score": 1.0}
        )
    score = 1.0
    if len(gt_ids):
        if detections:
            ious = np.asarray(box_iou(gt_boxes, np.asarray([d["bbox"] for d in detections])))
            same = np.asarray(gt_ids)[:, None] == np.asarray([d["category_id"] for d in detections])[None, :]
            score = float(((ious >= iou_threshold) & same).any(axis=1).mean())
        else:
            score = 0.0
    return {
        **base,
        "failure": None,
        "parsed": [{"bbox": _jsonable(b), "label": lab} for b, lab in zip(parsed.boxes, parsed.labels)],
        "prediction": detections,
        "num_unknown_labels": unknown,
        "num_invalid_boxes": invalid,
        "score": score,
    }
