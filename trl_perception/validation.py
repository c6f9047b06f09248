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
"""The one validation of ground-truth columns, shared by every reward and every evaluation scorer.

Model output is untrusted and is *parsed* (`trl_perception.parsing`); ground truth comes from a dataset and is
*validated* here. A dataset bug must never turn into a score (or a NaN), so an invalid value raises
[`GroundTruthError`] (a `ValueError`) whose message names the reward (or scorer), the row and the column:

    Reward 'iou', row 3 (id 'refcoco-unc/val/sent-9'), column 'boxes': box [10.0, 5.0, 2.0, 8.0] is inverted or
    has zero area (needs x1 < x2 and y1 < y2)

Rules, per column (`None` entries mean "not applicable" and are always accepted):

| column | valid entry |
|---|---|
| `width`, `height` | an integer number of pixels in `[1, MAX_IMAGE_SIDE]` (integer-valued floats are accepted) |
| `model_image_sizes` | `[]`, `[W_r, H_r]` or `[[W_r, H_r], ...]`, positive integers up to `MAX_IMAGE_SIDE` |
| `boxes` | a list of `[x1, y1, x2, y2]` boxes: numbers, finite, `x1 < x2`, `y1 < y2`, inside the image (`width` x `height`) up to `GT_TOLERANCE` pixels; a flat `[x1, y1, x2, y2]` is rejected (wrap it in a list) |
| `points` | a list of `[x, y]` points: finite numbers inside the image up to `GT_TOLERANCE` pixels |
| `count` | a non-negative integer up to `2**31 - 1` (not a string, not a bool, not a fraction) |
| `category_ids` | a list of integers, one per box when non-empty |
| `labels` | a list of strings |
| `text` | a string |

The columns themselves must hold one entry per completion. Checks are vectorised per call: all boxes (points) of the
checked rows are stacked into one array and tested at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


MAX_IMAGE_SIDE = 1 << 24
MAX_COUNT = 2**31 - 1
# Ground-truth boxes/points may leave the image by this many pixels (float32 storage, COCO rounding); the dataset
# builders clip within the same tolerance, so their output always passes.
GT_TOLERANCE = 1.0

GT_COLUMNS = ("width", "height", "model_image_sizes", "boxes", "points", "count", "category_ids", "labels", "text")
ROWS_KWARG = "_batch_rows"  # private kwarg: batch row numbers of the rows of a sub-call (the task router's)
NOT_COLUMNS = ("log_metric", "log_extra", "trainer_state", ROWS_KWARG)


class GroundTruthError(ValueError):
    """Invalid ground truth; the message names the reward or scorer, the row and the column."""


def row_labeler(kwargs: Mapping[str, Any], n: int) -> Callable[[int], str]:
    """`label(i)`: how row `i` of a call with `n` completions is named in errors (`"row 3 (id 'x')"`). A sub-call
    (the task router's) passes the batch row numbers in `ROWS_KWARG`, so errors name the row of the whole batch."""
    ids = kwargs.get("id")
    if ids is not None and (not hasattr(ids, "__len__") or len(ids) != n):
        ids = None
    numbers = kwargs.get(ROWS_KWARG)
    if numbers is not None and len(numbers) != n:
        numbers = None

    def label(row: int) -> str:
        number = numbers[row] if numbers is not None else row
        ident = ""
        if ids is not None and ids[row] is not None:
            ident = f" (id {_short(ids[row], 80)})"
        return f"row {number}{ident}"

    return label


def _where(owner: str, row: int, column: str, label: Callable[[int], str]) -> str:
    return f"{owner}, {label(row)}, column {column!r}"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_like(value: Any) -> int | None:
    """`value` as an int when it is an integer number (not a bool, not a string, not a fraction), else `None`."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def check_column_lengths(owner: str, kwargs: Mapping[str, Any], n: int, columns: Iterable[str]) -> None:
    """Every given column among `columns` holds exactly `n` entries (one per completion)."""
    for name in columns:
        column = kwargs.get(name)
        if column is None:
            continue
        try:
            size = len(column)
        except TypeError:
            raise GroundTruthError(
                f"{owner}, column {name!r}: expected one entry per completion, got {type(column).__name__}"
            ) from None
        if size != n:
            raise GroundTruthError(f"{owner}, column {name!r}: has {size} entries for {n} completions")


def validate_ground_truth(
    owner: str, kwargs: Mapping[str, Any], rows: Sequence[int], n: int, columns: Iterable[str]
) -> None:
    """
    Validate the ground-truth `columns` of `rows` (indices into the batch of `n` completions); raise
    [`GroundTruthError`] on the first invalid entry. Columns absent from `kwargs` are not checked (each reward
    reports a missing required column itself).

    Example:

    ```python
    >>> validate_ground_truth("Reward 'iou'", {"boxes": [[[0, 0, 5, 5]]], "width": [10], "height": [10]}, [0], 1,
    ...                       ["boxes", "width", "height"])
    >>> validate_ground_truth("Reward 'count_exact'", {"count": ["3"]}, [0], 1, ["count"])
    Traceback (most recent call last):
    ...
    trl_perception.validation.GroundTruthError: Reward 'count_exact', row 0, column 'count': '3' is not a non-negative integer (got str)

    ```
    """
    columns = [c for c in columns if kwargs.get(c) is not None]
    if not columns or not rows:
        return
    check_column_lengths(owner, kwargs, n, columns)
    label = row_labeler(kwargs, n)
    sizes = None
    if "width" in columns or "height" in columns:
        sizes = _image_sizes(owner, kwargs, rows, label)
    if "model_image_sizes" in columns:
        _model_image_sizes(owner, kwargs["model_image_sizes"], rows, label)
    if "boxes" in columns:
        _coordinates(owner, kwargs["boxes"], rows, label, "boxes", 4, sizes)
    if "points" in columns:
        _coordinates(owner, kwargs["points"], rows, label, "points", 2, sizes)
    if "count" in columns:
        counts = kwargs["count"]
        for i in rows:
            value = counts[i]
            if value is None:
                continue
            count = _int_like(value)
            if count is None or not 0 <= count <= MAX_COUNT:
                kind = type(value).__name__
                raise GroundTruthError(
                    f"{_where(owner, i, 'count', label)}: {_short(value)} is not a non-negative integer (got {kind})"
                    if count is None
                    else f"{_where(owner, i, 'count', label)}: {value!r} is outside [0, {MAX_COUNT}]"
                )
    if "category_ids" in columns:
        _category_ids(owner, kwargs, rows, label)
    if "labels" in columns:
        labels = kwargs["labels"]
        for i in rows:
            entry = labels[i]
            if entry is None:
                continue
            if isinstance(entry, str) or not _is_sequence(entry):
                raise GroundTruthError(
                    f"{_where(owner, i, 'labels', label)}: expected a list of strings, got {_short(entry)}"
                )
            bad = next((v for v in entry if not isinstance(v, str)), _MISSING)
            if bad is not _MISSING:
                raise GroundTruthError(f"{_where(owner, i, 'labels', label)}: label {_short(bad)} is not a string")
    if "text" in columns:
        texts = kwargs["text"]
        for i in rows:
            value = texts[i]
            if value is not None and not isinstance(value, str):
                raise GroundTruthError(
                    f"{_where(owner, i, 'text', label)}: expected a string, got {type(value).__name__} {_short(value)}"
                )


def validate_row(owner: str, row: Mapping[str, Any], columns: Iterable[str], required: Iterable[str] = ()) -> None:
    """
    [`validate_ground_truth`] for one evaluation row (a dict of columns): the same rules, plus `required` columns
    that must be present and not `None`. The row is named by its `id`.
    """
    for name in required:
        if row.get(name) is None:
            raise GroundTruthError(f"{owner}, row {row.get('id')!r}, column {name!r}: missing (needed for scoring)")
    kwargs = {name: [row.get(name)] for name in columns if name in row}
    kwargs[ROWS_KWARG] = [repr(row.get("id"))]  # errors say "row 'refcoco/val/7'"
    validate_ground_truth(owner, kwargs, [0], 1, columns)


# -- helpers ----------------------------------------------------------------------------------------------------

_MISSING = object()


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _image_sizes(owner: str, kwargs: Mapping[str, Any], rows: Sequence[int], label) -> np.ndarray | None:
    """`(len(rows), 2)` array of validated `(width, height)`, or `None` when either column is absent."""
    widths, heights = kwargs.get("width"), kwargs.get("height")
    out = np.empty((len(rows), 2), dtype=np.float64)
    for name, column, j in (("width", widths, 0), ("height", heights, 1)):
        if column is None:
            continue
        for k, i in enumerate(rows):
            value = column[i]
            side = _int_like(value)
            if side is None or not 1 <= side <= MAX_IMAGE_SIDE:
                raise GroundTruthError(
                    f"{_where(owner, i, name, label)}: image {name} {_short(value)} is not an integer number of pixels "
                    f"in [1, {MAX_IMAGE_SIDE}]"
                )
            out[k, j] = side
    if widths is None or heights is None:
        return None
    return out


def _model_image_sizes(owner: str, column: Sequence[Any], rows: Sequence[int], label) -> None:
    for i in rows:
        entry = column[i]
        if entry is None:
            continue
        if not _is_sequence(entry):
            raise GroundTruthError(
                f"{_where(owner, i, 'model_image_sizes', label)}: expected [W_r, H_r] or [[W_r, H_r], ...], "
                f"got {_short(entry)}"
            )
        if len(entry) == 0:
            continue
        pairs = [entry] if not _is_sequence(entry[0]) else entry
        for pair in pairs:
            values = [_int_like(v) for v in pair] if _is_sequence(pair) else [None]
            if len(values) != 2 or any(v is None or not 1 <= v <= MAX_IMAGE_SIDE for v in values):
                raise GroundTruthError(
                    f"{_where(owner, i, 'model_image_sizes', label)}: {_short(pair)} is not a [W_r, H_r] pair of "
                    f"positive integers up to {MAX_IMAGE_SIDE}"
                )


def _as_array(owner: str, entry: Any, i: int, label, column: str, width: int) -> np.ndarray:
    """One row's boxes/points as a float64 `(k, width)` array; raises on anything else."""
    what = "[x1, y1, x2, y2] boxes" if width == 4 else "[x, y] points"
    if isinstance(entry, (str, bytes, Mapping)) or not _is_sequence(entry):
        raise GroundTruthError(f"{_where(owner, i, column, label)}: expected a list of {what}, got {_short(entry)}")
    if len(entry) == 0:
        return np.zeros((0, width))
    try:
        arr = np.asarray(entry)
    except (ValueError, TypeError, OverflowError):  # ragged nesting
        arr = None
    if arr is not None and arr.ndim == 1 and arr.shape[0] == width and arr.dtype.kind in "iuf":
        raise GroundTruthError(
            f"{_where(owner, i, column, label)}: got a flat {_short(list(entry))}; {column} is a list of {what} "
            f"(wrap it: [{_short(list(entry))}])"
        )
    if arr is None or arr.ndim != 2 or arr.shape[1] != width:
        bad = next((e for e in entry if not _is_sequence(e) or len(e) != width), entry)
        raise GroundTruthError(
            f"{_where(owner, i, column, label)}: {_short(bad)} is not a list of {width} numbers "
            f"(expected a list of {what})"
        )
    if arr.dtype.kind not in "iuf":
        raise GroundTruthError(
            f"{_where(owner, i, column, label)}: {_short(entry)} holds non-numeric values (dtype {arr.dtype})"
        )
    return arr.astype(np.float64, copy=False)


def _coordinates(
    owner: str, column: Sequence[Any], rows: Sequence[int], label, name: str, width: int, sizes: np.ndarray | None
) -> None:
    arrays, owners = [], []
    for k, i in enumerate(rows):
        entry = column[i]
        if entry is None:
            continue
        arr = _as_array(owner, entry, i, label, name, width)
        if len(arr):
            arrays.append(arr)
            owners.append(np.full(len(arr), k))
    if not arrays:
        return
    values = np.concatenate(arrays)
    row_of = np.concatenate(owners)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values).all(axis=1)
        problem = "has a non-finite coordinate"
        if not bad.any() and width == 4:
            bad = (values[:, 2] <= values[:, 0]) | (values[:, 3] <= values[:, 1])
            problem = "is inverted or has zero area (needs x1 < x2 and y1 < y2)"
        if not bad.any() and sizes is not None:
            extent = sizes[row_of]
            low = (values < -GT_TOLERANCE).any(axis=1)
            if width == 4:
                high = (values[:, 0::2] > extent[:, :1] + GT_TOLERANCE).any(axis=1) | (
                    values[:, 1::2] > extent[:, 1:] + GT_TOLERANCE
                ).any(axis=1)
            else:
                high = (values > extent + GT_TOLERANCE).any(axis=1)
            bad = low | high
            problem = "lies outside the image"
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        k = int(row_of[j])
        i = rows[k]
        kind = "box" if width == 4 else "point"
        detail = problem
        if problem == "lies outside the image":
            detail = f"lies outside the {int(sizes[k, 0])}x{int(sizes[k, 1])} image (tolerance {GT_TOLERANCE:g} px)"
        raise GroundTruthError(f"{_where(owner, i, name, label)}: {kind} {values[j].tolist()} {detail}")


def _category_ids(owner: str, kwargs: Mapping[str, Any], rows: Sequence[int], label) -> None:
    column, boxes = kwargs["category_ids"], kwargs.get("boxes")
    for i in rows:
        entry = column[i]
        if entry is None:
            continue
        if isinstance(entry, (str, bytes)) or not _is_sequence(entry):
            raise GroundTruthError(
                f"{_where(owner, i, 'category_ids', label)}: expected a list of integers, got {_short(entry)}"
            )
        bad = next((v for v in entry if _int_like(v) is None), _MISSING)
        if bad is not _MISSING:
            raise GroundTruthError(f"{_where(owner, i, 'category_ids', label)}: {_short(bad)} is not an integer id")
        if len(entry) and boxes is not None and boxes[i] is not None and len(entry) != len(boxes[i]):
            raise GroundTruthError(
                f"{_where(owner, i, 'category_ids', label)}: {len(entry)} ids for {len(boxes[i])} boxes"
            )
