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
"""Format rewards: answer tags, well-formed box lists, Perception-R1's Qwen2-VL grounding format (escaped)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry import sanitize_boxes
from ..parsing import check_answer_format, check_qwen2_vl_grounding_format, parse_boxes
from ._base import PerceptionReward, mean_or_nan
from ._registry import register_reward


class AnswerFormatReward(PerceptionReward):
    """
    1 if the whole completion is `<think>…</think><answer>…</answer>` (newlines allowed, unlike Perception-R1's
    unregistered `think_format_reward`, D19), else 0. With `require_think=False`, `<answer>…</answer>` alone.
    Applies to every task (`task=None`). Logged metric: `rate`.
    """

    default_name = "answer_format"
    default_task = None

    def __init__(self, require_think: bool = True, **kwargs: Any):
        kwargs.setdefault("frame", "original")
        super().__init__(**kwargs)
        self.require_think = require_think

    def _score(self, texts, rows, kwargs, completion_ids):
        values = [1.0 if check_answer_format(t, self.require_think) else 0.0 for t in texts]
        return values, {"rate": mean_or_nan(values)}


class BoxFormatReward(PerceptionReward):
    """
    1 if the answer region is a well-formed box list, else 0: it parses in `box_format` (default `"json"`: the
    Qwen2.5-VL `bbox_2d` list; a truncated or otherwise undecodable JSON fails), has at least one item, and every item
    has 4 finite, non-inverted coordinates (and a string `label` when `require_label`). With `graded=True` the reward is
    the fraction of such items instead (0 for a parse failure). Applies to grounding, counting and detection rows.
    Logged metrics: `rate`, `parse_failure_rate`.
    """

    default_name = "box_format"
    default_task = None
    _BOX_TASKS = (None, "grounding", "counting", "detection")

    def __init__(
        self,
        box_format: str = "json",
        require_label: bool = False,
        graded: bool = False,
        max_boxes: int = 100,
        **kwargs: Any,
    ):
        kwargs.setdefault("frame", "original")
        super().__init__(**kwargs)
        parse_boxes("", format=box_format)  # validate the option now
        self.box_format = box_format
        self.require_label = require_label
        self.graded = graded
        self.max_boxes = int(max_boxes)

    def _applicable_rows(self, n, kwargs):
        tasks = kwargs.get("task")
        if self.task is not None or tasks is None:
            return super()._applicable_rows(n, kwargs)
        return [i for i in range(n) if tasks[i] in self._BOX_TASKS]

    def _score(self, texts, rows, kwargs, completion_ids):
        values, failures = [], []
        for text in texts:
            result = parse_boxes(text, format=self.box_format, max_boxes=self.max_boxes)
            failures.append(result.error is not None)
            if result.error is not None or not result.value.well_formed:
                values.append(0.0)
                continue
            parsed = result.value
            _, valid = sanitize_boxes(parsed.boxes, inverted="reject")
            if self.require_label:  # a mask of the same length as `valid`, also when no box parsed (`[]`, `[{}]`)
                valid &= np.fromiter((label is not None for label in parsed.labels), dtype=bool, count=len(valid))
            good = int(valid.sum())
            total = len(parsed.coords) + parsed.num_malformed
            if self.graded:
                values.append(good / total if total else 0.0)
            else:
                values.append(1.0 if total and good == total and not parsed.capped else 0.0)
        return values, {"rate": mean_or_nan(values), "parse_failure_rate": mean_or_nan(failures)}


class Qwen2VLGroundingFormatReward(PerceptionReward):
    """
    Perception-R1's grounding format reward with its special tokens escaped (D3): 1 if the completion is exactly
    `<|object_ref_start|>…<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>` (optionally `<|im_end|>`).

    The check needs the special tokens, which TRL strips from `completions`. Pass `tokenizer=` (the processor's
    tokenizer) to re-decode `completion_ids` with `skip_special_tokens=False`; without it the completion text is
    checked as given. Opt-in: Perception-R1's released grounding run is IoU² alone. Logged metric: `rate`.
    """

    default_name = "qwen2_vl_grounding_format"
    default_task = "grounding"

    def __init__(self, tokenizer: Any = None, **kwargs: Any):
        kwargs.setdefault("frame", "original")
        super().__init__(**kwargs)
        self.tokenizer = tokenizer

    def _score(self, texts, rows, kwargs, completion_ids):
        if self.tokenizer is not None and completion_ids is not None:
            texts = self.tokenizer.batch_decode([completion_ids[i] for i in rows], skip_special_tokens=False)
        values = [1.0 if check_qwen2_vl_grounding_format(t) else 0.0 for t in texts]
        return values, {"rate": mean_or_nan(values)}


@register_reward("answer_format")
def _answer_format(**options: Any) -> AnswerFormatReward:
    return AnswerFormatReward(**options)


@register_reward("box_format")
def _box_format(**options: Any) -> BoxFormatReward:
    return BoxFormatReward(**options)


@register_reward("qwen2_vl_grounding_format")
def _qwen2_vl_grounding_format(**options: Any) -> Qwen2VLGroundingFormatReward:
    return Qwen2VLGroundingFormatReward(**options)
