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
"""Grounding (referring-expression comprehension) rewards: one predicted box against one ground-truth box."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry import paired_box_iou, paired_box_iou_giou, sanitize_boxes
from ..parsing import parse_boxes
from ._base import PerceptionReward, mean_or_nan
from ._registry import register_reward


_KINDS = ("iou", "iou_squared", "giou", "iou_threshold")


class GroundingReward(PerceptionReward):
    """
    Score the first predicted box against the row's ground-truth box (`boxes[0]`, original pixels), compared in the
    model's frame.

    | `kind` | reward |
    |---|---|
    | `"iou"` | IoU |
    | `"iou_squared"` | IoU² (Perception-R1's grounding reward) |
    | `"giou"` | (1 + GIoU) / 2, in [0, 1] so that a parse failure (0) never beats a badly placed box |
    | `"iou_threshold"` | 1 if IoU ≥ `threshold` (inclusive, like Acc@τ) else 0 |

    A parse failure, an invalid box (non-finite or inverted) or extra boxes with `multiple_boxes="reject"` give 0.
    Rows without a ground-truth box get `None`.

    Args:
        kind (`str`, *optional*, defaults to `"iou"`):
            One of the kinds above.
        threshold (`float`, *optional*, defaults to `0.5`):
            For `"iou_threshold"`.
        box_format (`str`, *optional*, defaults to `"auto"`):
            Output format for [`~trl_perception.parsing.parse_boxes`]: `"auto"` (the family's syntax first), or a registered box syntax (`"json"`, `"pairs"`, `"list"`, `"ref_box"`, ...).
        multiple_boxes (`str`, *optional*, defaults to `"first"`):
            `"first"` scores the first box (as Perception-R1); `"reject"` scores 0 when more than one box is given.
        plus_one (`bool`, *optional*, defaults to `False`):
            Legacy inclusive-pixel IoU.
        out_of_image (`str`, *optional*, defaults to `"clip"`):
            Predicted boxes are clipped to the frame (`"clip"`), rejected (`"reject"`) or kept (`"keep"`).
        inverted (`str`, *optional*, defaults to `"reject"`):
            Inverted boxes (`x2 < x1`) are rejected (0) or swapped (`"swap"`).
        **kwargs:
            `name`, `task` (default `"grounding"`), `frame`, `min_pixels`, `max_pixels`, `factor`: see
            [`PerceptionReward`].

    Logged metrics (`<name>/...`): `iou` (mean IoU, failures count 0), `acc@0.5`, `parse_failure_rate`,
    `invalid_box_rate`, `multiple_boxes_rate`.
    """

    default_name = "iou"
    default_task = "grounding"
    gt_columns = ("width", "height", "model_image_sizes", "boxes")

    def __init__(
        self,
        kind: str = "iou",
        threshold: float = 0.5,
        box_format: str = "auto",
        multiple_boxes: str = "first",
        plus_one: bool = False,
        out_of_image: str = "clip",
        inverted: str = "reject",
        **kwargs: Any,
    ):
        if kind not in _KINDS:
            raise ValueError(f"Unknown grounding reward kind {kind!r}; expected one of {_KINDS}.")
        if multiple_boxes not in ("first", "reject"):
            raise ValueError(f"multiple_boxes must be 'first' or 'reject', got {multiple_boxes!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
        kwargs.setdefault("name", kind)
        super().__init__(**kwargs)
        self.kind = kind
        self.threshold = float(threshold)
        self.box_format = box_format
        self.multiple_boxes = multiple_boxes
        self.plus_one = plus_one
        self.out_of_image = out_of_image
        self.inverted = inverted
        sanitize_boxes(np.zeros((0, 4)), out_of_image=out_of_image, inverted=inverted)  # validate the options now

    def _score(self, texts, rows, kwargs, completion_ids):
        gt_column = self._column(kwargs, "boxes", self.__name__)
        n = len(rows)
        no_box = [0.0, 0.0, 0.0, 0.0]
        gt_list, pred_list, has_gt, parsed, multiple = [], [], [], [], []
        syntax = self.box_syntax(kwargs)
        for k, i in enumerate(rows):
            gt_boxes = gt_column[i]
            if gt_boxes is None or len(gt_boxes) == 0:
                gt_list.append(no_box)
                pred_list.append(no_box)
                has_gt.append(False)
                parsed.append(False)
                multiple.append(False)
                continue
            gt_list.append(gt_boxes[0])
            has_gt.append(True)
            result = parse_boxes(texts[k], format=self.box_format, max_boxes=1, prefer=syntax)
            # A parse may succeed with no box (`[]`, or only malformed items): nothing to score, a parse failure.
            if result.error is None and result.value.coords:
                value = result.value
                pred_list.append(value.coords[0])
                parsed.append(True)
                multiple.append(value.num_items > 1)
            else:
                pred_list.append(no_box)
                parsed.append(False)
                multiple.append(False)
        has_gt = np.array(has_gt, dtype=bool)
        if not has_gt.any():
            return [None] * n, {}
        gt = np.array(gt_list, dtype=np.float64).reshape(n, 4)
        pred = np.array(pred_list, dtype=np.float64).reshape(n, 4)
        parsed = np.array(parsed, dtype=bool)
        multiple = np.array(multiple, dtype=bool)
        scale, extent = self.scales_and_extents(kwargs, rows)
        gt = gt * np.concatenate((scale, scale), axis=1)  # np.tile(scale, 2), without its Python overhead
        pred, valid = sanitize_boxes(pred, extent, out_of_image=self.out_of_image, inverted=self.inverted)
        scored = parsed & valid
        if self.multiple_boxes == "reject":
            scored &= ~multiple
        if self.kind == "giou":
            iou, giou = paired_box_iou_giou(pred, gt, plus_one=self.plus_one)
            values = (1.0 + giou) / 2.0
        else:
            iou = paired_box_iou(pred, gt, plus_one=self.plus_one)
            if self.kind == "iou":
                values = iou
            elif self.kind == "iou_squared":
                values = iou * iou
            else:
                values = (iou >= self.threshold).astype(np.float64)
        iou = np.where(scored, iou, 0.0)
        values = np.where(scored, values, 0.0)
        rewards = [float(v) if h else None for v, h in zip(values.tolist(), has_gt.tolist(), strict=True)]
        m = has_gt
        metrics = {
            "iou": mean_or_nan(iou[m]),
            "acc@0.5": mean_or_nan(iou[m] >= 0.5),
            "parse_failure_rate": mean_or_nan(~parsed[m]),
            "invalid_box_rate": mean_or_nan(parsed[m] & ~valid[m]),
            "multiple_boxes_rate": mean_or_nan(multiple[m]),
        }
        return rewards, metrics


@register_reward("iou")
def _iou(**options: Any) -> GroundingReward:
    """IoU of the first predicted box with the ground-truth box."""
    return GroundingReward(kind="iou", **options)


@register_reward("iou_squared")
def _iou_squared(**options: Any) -> GroundingReward:
    """IoU² of the first predicted box with the ground-truth box (Perception-R1's grounding reward)."""
    return GroundingReward(kind="iou_squared", **options)


@register_reward("giou")
def _giou(**options: Any) -> GroundingReward:
    """(1 + GIoU) / 2 of the first predicted box with the ground-truth box."""
    return GroundingReward(kind="giou", **options)


@register_reward("iou_threshold")
def _iou_threshold(**options: Any) -> GroundingReward:
    """1 if the first predicted box has IoU ≥ `threshold` with the ground-truth box, else 0."""
    return GroundingReward(kind="iou_threshold", **options)


for _factory in (_iou, _iou_squared, _giou, _iou_threshold):
    _factory.fixed_options = ("kind",)  # set by the name (see `reward_options`)


GROUNDING_PRESETS: dict[str, dict[str, Any]] = {
    # Perception-R1 as run: IoU² only (its format term was a constant, see D3), first box, continuous IoU.
    "released": {"kind": "iou_squared"},
    "pr1": {"kind": "iou_squared"},
}


@register_reward("grounding")
def _grounding(preset: str = "released", **options: Any) -> GroundingReward:
    """Grounding reward from a preset (`"released"` / `"pr1"`: IoU²); `options` override the preset."""
    if preset not in GROUNDING_PRESETS:
        raise ValueError(f"Unknown grounding preset {preset!r}; expected one of {sorted(GROUNDING_PRESETS)}.")
    options.setdefault("name", "grounding")
    return GroundingReward(**{**GROUNDING_PRESETS[preset], **options})


_grounding.presets = GROUNDING_PRESETS
