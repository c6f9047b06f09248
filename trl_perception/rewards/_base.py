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
"""Shared machinery of the perception rewards: TRL call convention, task filtering, frames, metric logging."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..families import AUTO, ModelFamily, get_family
from ..geometry import FrameSpec, _smart_resize, get_frame
from ..validation import (
    NOT_COLUMNS,
    ROWS_KWARG,
    GroundTruthError,
    check_column_lengths,
    row_labeler,
    validate_ground_truth,
)


# Without a `model_family` kwarg (stock `trl grpo`), `family="auto"` falls back to Perception-R1's detection family.
FALLBACK_FAMILY = "qwen2_5_vl"


@dataclass(frozen=True)
class RewardGeometry:
    """What a reward needs of the model family on one call: its frame, box syntax and resize settings."""

    family: ModelFamily
    frame: FrameSpec
    box_syntax: str
    factor: int
    min_pixels: int
    max_pixels: int


def completion_text(completion: Any) -> Any:
    """
    Text of one TRL completion: a plain string, or the content of the last message of a conversational completion
    (`[{"role": "assistant", "content": ...}]`; the `text` of list-of-parts contents are joined). Anything else is
    returned as is, and the parsers reject it (`"not_a_string"`), so it scores as a counted parse failure; that
    includes a content whose text part has a `text` that is not a string (`None`, a number).
    """
    if type(completion) is str:
        return completion
    if type(completion) is list and completion and type(completion[-1]) is dict:
        completion = completion[-1]
    if isinstance(completion, dict):
        content = completion.get("content")
        if type(content) is list:
            parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if all(type(p) is str for p in parts):
                return "".join(parts)
            return None  # a text part without text: not a completion the parsers can read
        return content
    return completion


class PerceptionReward:
    """
    Base class of every reward: a callable following TRL's reward API,
    `reward(prompts, completions, completion_ids=None, **kwargs) -> list[float | None]`.

    Dataset columns arrive as keyword lists (one entry per completion). The base class handles what every reward
    shares:

    - **task filtering**: with `task` set (each reward has a default), rows whose `task` column holds another task get
      `None` ("not applicable"); rows without a `task` column, or with `task=None`, are scored;
    - **families and frames**: the model family ([`trl_perception.families`]) gives the coordinate frame of the
      model's answers, its box syntax and its resize settings. With `family="auto"` (the default) it is the
      `model_family` kwarg that [`PerceptionGRPOTrainer`] passes from its model; without one (stock `trl grpo`) it
      falls back to `"qwen2_5_vl"` with a warning. [`scales_and_extents`] maps ground truth from original pixels
      into the model's frame, using the `model_image_sizes` column when present and
      `smart_resize(height, width, factor, min_pixels, max_pixels)` otherwise;
    - **metrics**: [`_score`] returns a dict of component metrics, logged as `f"{__name__}/{key}"` through TRL's
      `log_metric` kwarg. A metric is logged on a call when at least one row defines it; undefined metrics are
      omitted rather than logged as NaN, because TRL 1.16 sums the logged values of a step (a single NaN would turn
      the step's average into NaN) and already merges metric names across ranks.

    Args:
        name (`str`, *optional*):
            The reward's `__name__` (TRL names its `rewards/<name>/mean` logs after it). Defaults to the registry name.
        task (`str` or `None`, *optional*):
            Rows whose `task` column differs are not applicable (`None`). Defaults to the reward's own task.
        family (`str`, *optional*, defaults to `"auto"`):
            Model family (`trl_perception.families.list_families()`): `"auto"` follows the trainer's model.
        frame (`str`, *optional*):
            Explicit override of the family's coordinate frame: `"resized"` (model-input pixels), `"grid_1000"`
            (0-1000), `"normalized"` (0-1), `"original"` (source pixels), a registered frame, or a family name.
        min_pixels, max_pixels, factor (`int`, *optional*):
            Processor pixel budget and patch size x merge size, for `smart_resize` when no `model_image_sizes` column
            is given; default: the family's (Perception-R1 trained with `max_pixels=1_000_000`).
    """

    default_name = "perception_reward"
    default_task: str | None = None
    # Ground-truth columns this reward reads: they are validated (`trl_perception.validation`) for the scored rows
    # before `_score` runs, so invalid ground truth raises a `ValueError` naming the reward, the row and the column.
    gt_columns: tuple[str, ...] = ()
    # Documented range of the reward's values (the fuzz tests check it); `None` (not applicable) is always allowed.
    value_range: tuple[float, float] = (0.0, 1.0)

    def __init__(
        self,
        name: str | None = None,
        task: str | None = "default",
        frame: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        factor: int | None = None,
        family: str | ModelFamily | None = AUTO,
    ):
        for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels), ("factor", factor)):
            if value is not None and (
                not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0
            ):
                raise ValueError(f"Invalid resize setting {key}={value!r}: expected a positive integer.")
        if min_pixels is not None and max_pixels is not None and max_pixels < min_pixels:
            raise ValueError(f"Invalid resize settings: min_pixels={min_pixels} > max_pixels={max_pixels}.")
        self.__name__ = name or self.default_name
        self.task = self.default_task if task == "default" else task
        self._frame_override = None if frame in (None, AUTO) else get_frame(frame)
        self._resize_override = (min_pixels, max_pixels, factor)
        self.family = AUTO if family in (None, AUTO) else get_family(family).name
        self._geometries: dict[str, RewardGeometry] = {}
        self._warned_fallback = False
        if self.family != AUTO:
            self._geometries[self.family] = self._make_geometry(self.family)

    def _make_geometry(self, family: str) -> RewardGeometry:
        spec = get_family(family)
        min_pixels, max_pixels, factor = self._resize_override
        min_pixels = int(min_pixels if min_pixels is not None else spec.min_pixels)
        max_pixels = int(max_pixels if max_pixels is not None else spec.max_pixels)
        if max_pixels < min_pixels:
            raise ValueError(
                f"Invalid resize settings for family {family!r}: min_pixels={min_pixels} > max_pixels={max_pixels}."
            )
        frame = self._frame_override or get_frame(spec.box_frame)
        return RewardGeometry(spec, frame, spec.box_syntax, int(factor or spec.factor), min_pixels, max_pixels)

    def geometry(self, kwargs: dict[str, Any] | None = None) -> RewardGeometry:
        """The family geometry of this call: the fixed family, or the trainer's `model_family` kwarg for `"auto"`."""
        family = self.family
        if family == AUTO:
            family = (kwargs or {}).get("model_family")
            if isinstance(family, (list, tuple)):  # a per-row column: one model per run
                family = family[0] if family else None
            if family is None:
                family = FALLBACK_FAMILY
                if not self._warned_fallback:
                    self._warned_fallback = True
                    warnings.warn(
                        f"Reward {self.__name__!r}: family='auto' but no `model_family` was passed (only "
                        f"PerceptionGRPOTrainer passes it); assuming {FALLBACK_FAMILY!r}. Set `family=` explicitly "
                        "when training with stock TRL.",
                        stacklevel=3,
                    )
        geometry = self._geometries.get(family)
        if geometry is None:
            geometry = self._geometries[family] = self._make_geometry(family)
        return geometry

    @property
    def frame(self) -> str:
        """Canonical name of the frame of the model's answers (for `"auto"` without a model: the fallback's)."""
        return self.geometry({"model_family": FALLBACK_FAMILY} if self.family == AUTO else None).frame.name

    def box_syntax(self, kwargs: dict[str, Any]) -> str | None:
        """The family's box syntax, tried first by `"auto"` parsing; `None` for `"auto"` without a model (no warning:
        parsing does not depend on the frame)."""
        if self.family == AUTO and not (kwargs or {}).get("model_family"):
            return None
        return self.geometry(kwargs).box_syntax

    @property
    def min_pixels(self) -> int:
        """Lower pixel budget of `smart_resize` (for `"auto"` without a model: the fallback family's)."""
        return self.geometry({"model_family": FALLBACK_FAMILY} if self.family == AUTO else None).min_pixels

    @property
    def max_pixels(self) -> int:
        """Upper pixel budget of `smart_resize` (for `"auto"` without a model: the fallback family's)."""
        return self.geometry({"model_family": FALLBACK_FAMILY} if self.family == AUTO else None).max_pixels

    @property
    def factor(self) -> int:
        """Resize factor (patch size x merge size) of `smart_resize`."""
        return self.geometry({"model_family": FALLBACK_FAMILY} if self.family == AUTO else None).factor

    def __repr__(self) -> str:
        frame = self._frame_override.name if self._frame_override else None
        return f"{type(self).__name__}(name={self.__name__!r}, task={self.task!r}, family={self.family!r}, frame={frame!r})"

    # -- TRL entry point ---------------------------------------------------------------------------------------

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids=None,
        **kwargs,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"{self.__name__} needs `completions` (TRL passes them as a keyword argument).")
        n = len(completions)
        owner = f"Reward {self.__name__!r}"
        check_column_lengths(owner, kwargs, n, ("task",))
        rows = self._applicable_rows(n, kwargs)
        rewards: list[float | None] = [None] * n
        if rows:
            validate_ground_truth(owner, kwargs, rows, n, self.gt_columns)
            texts = [completion_text(completions[i]) for i in rows]
            values, metrics = self._score(texts, rows, kwargs, completion_ids)
            for i, value in zip(rows, values, strict=True):
                rewards[i] = None if value is None else float(value)
            self._log(kwargs.get("log_metric"), metrics)
        return rewards

    def _score(
        self, texts: list[Any], rows: list[int], kwargs: dict[str, Any], completion_ids: Any
    ) -> tuple[Sequence[float | None], dict[str, float]]:
        """Score the applicable rows (`texts[k]` is the completion of row `rows[k]`); return rewards and metrics."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------------------------

    def _applicable_rows(self, n: int, kwargs: dict[str, Any]) -> list[int]:
        tasks = kwargs.get("task")
        if self.task is None or tasks is None:
            return list(range(n))
        return [i for i in range(n) if tasks[i] is None or tasks[i] == self.task]

    def _where(self, kwargs: dict[str, Any], row: int, column: str) -> str:
        """`"Reward 'iou', row 3 (id 'x'), column 'boxes'"`: the start of a ground-truth error message."""
        n = len(kwargs[ROWS_KWARG]) if kwargs.get(ROWS_KWARG) is not None else row + 1
        return f"Reward {self.__name__!r}, {row_labeler(kwargs, n)(row)}, column {column!r}"

    def _log(self, log_metric: Callable[[str, float], None] | None, metrics: dict[str, float]) -> None:
        if log_metric is None:
            return
        for key, value in metrics.items():
            if value is not None and not math.isnan(value):
                log_metric(f"{self.__name__}/{key}", float(value))

    @staticmethod
    def _column(kwargs: dict[str, Any], name: str, reward_name: str) -> Sequence[Any]:
        column = kwargs.get(name)
        if column is None:
            raise ValueError(
                f"Reward {reward_name!r} needs the dataset column {name!r} (see trl_perception/data/schema.py); "
                f"got columns {sorted(k for k in kwargs if k not in NOT_COLUMNS)}."
            )
        return column

    def scales_and_extents(self, kwargs: dict[str, Any], rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """
        Per row: `scale` (shape `(n, 2)`), mapping original pixels into the model's frame, and the frame's `extent`
        `(X, Y)` (shape `(n, 2)`). For the `"original"` frame without size columns, the scale is 1 and the extent
        infinite.
        """
        n = len(rows)
        geometry = self.geometry(kwargs)
        frame = geometry.frame
        widths, heights = kwargs.get("width"), kwargs.get("height")
        if widths is None or heights is None:
            if frame.name == "original":
                return np.ones((n, 2)), np.full((n, 2), np.inf)
            self._column(kwargs, "width" if widths is None else "height", self.__name__)
        # The sizes were validated (`gt_columns`); `None` means "not applicable" there, but the size is needed here.
        missing = next((i for i in rows if widths[i] is None or heights[i] is None), None)
        if missing is not None:
            column = "width" if widths[missing] is None else "height"
            raise GroundTruthError(
                f"{self._where(kwargs, missing, column)}: missing (the reward needs the image size)"
            )
        size = np.array([(widths[i], heights[i]) for i in rows], dtype=np.float64).reshape(n, 2)
        if frame.needs_resized:
            sizes = kwargs.get("model_image_sizes")
            resized = [_first_size(sizes[i]) if sizes is not None else None for i in rows]
            args = (geometry.factor, geometry.min_pixels, geometry.max_pixels)
            extent = np.array(
                [r if r is not None else self._resized(kwargs, i, args) for i, r in zip(rows, resized, strict=True)],
                dtype=np.float64,
            ).reshape(n, 2)
        else:
            ex, ey = frame.extent(size[:, 0], size[:, 1], None, None)
            extent = np.empty((n, 2))
            extent[:, 0], extent[:, 1] = ex, ey
        return extent / size, extent

    def _resized(self, kwargs: dict[str, Any], i: int, args: tuple[int, int, int]) -> tuple[int, int]:
        width, height = int(kwargs["width"][i]), int(kwargs["height"][i])
        try:
            return _smart_resize(height, width, *args)[::-1]
        except ValueError as e:  # aspect ratio above 200: the processor refuses such an image too
            raise GroundTruthError(
                f"{self._where(kwargs, i, 'width')}: a {width}x{height} image cannot be smart-resized ({e}); fix the "
                "row or pass `model_image_sizes`"
            ) from None


def _first_size(sizes: Any) -> tuple[int, int] | None:
    """`[W_r, H_r]` of the first image from a `model_image_sizes` entry (`[[W_r, H_r], ...]` or `[W_r, H_r]`)."""
    if sizes is None or len(sizes) == 0:
        return None
    first = sizes[0]
    if isinstance(first, (int, float, np.integer, np.floating)):
        return int(sizes[0]), int(sizes[1])
    return int(first[0]), int(first[1])


def mean_or_nan(values: Sequence[float] | np.ndarray) -> float:
    """Mean of `values`, NaN when empty (NaN metrics are not logged)."""
    n = len(values)
    if not n:
        return math.nan
    if n < 8 and type(values) is list:
        # A short list (the usual one-completion-per-group batch): numpy sums fewer than 8 values left to right, so
        # this is its exact result, without its ~5 µs per call (rewards log about ten metrics per call).
        return float(sum(values)) / n
    return float(np.mean(values))
