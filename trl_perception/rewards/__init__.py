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
"""Perception rewards for TRL's `GRPOTrainer` (see docs/rewards.md).

Every reward follows TRL's reward API, `reward(prompts, completions, completion_ids=None, **kwargs) ->
list[float | None]`, reads its ground truth from the dataset columns of `trl_perception/data/schema.py`, and logs its
components through TRL's `log_metric`. Use them:

- by name, with options: `get_reward("detection", preset="paper", max_pixels=1_000_000)`; `list_rewards()` lists
  the names;
- by dotted path from stock `trl grpo`, with default options: `--reward_funcs trl_perception.rewards.iou_squared`.
"""

from . import _counting, _detection, _format, _grounding, _ocr, _router  # noqa: F401 (register the rewards)
from ._base import PerceptionReward, completion_text
from ._counting import CountExactReward, CountMatchReward, predicted_count
from ._detection import DETECTION_PRESETS, DetectionReward
from ._format import AnswerFormatReward, BoxFormatReward, Qwen2VLGroundingFormatReward
from ._grounding import GROUNDING_PRESETS, GroundingReward
from ._ocr import OcrEditDistanceReward, normalize_text
from ._registry import get_reward, list_rewards, register_reward
from ._router import DEFAULT_TASK_REWARDS, TaskRouterReward
from .categories import COCO_CATEGORIES, CategoryTable
from .matching import greedy_match, hungarian_match


# Ready-made rewards with default options, for `trl grpo --reward_funcs trl_perception.rewards.<name>`.
# Defaults: Qwen2.5-VL frame with the checkpoints' min/max pixels (3136 / 12845056). For other settings, build one
# with `get_reward` in your own module and pass its dotted path.
iou = get_reward("iou")
iou_squared = get_reward("iou_squared")
giou = get_reward("giou")
iou_threshold = get_reward("iou_threshold")
count_match = get_reward("count_match")
count_exact = get_reward("count_exact")
ocr_edit_distance = get_reward("ocr_edit_distance")
detection = get_reward("detection")  # preset "pr1" (as released: penalty off)
detection_paper = get_reward("detection", preset="paper")
detection_vlm_r1 = get_reward("detection", preset="vlm_r1")
answer_format = get_reward("answer_format")
box_format = get_reward("box_format")
qwen2_vl_grounding_format = get_reward("qwen2_vl_grounding_format")
perception = get_reward("perception")

__all__ = [
    "COCO_CATEGORIES",
    "DEFAULT_TASK_REWARDS",
    "DETECTION_PRESETS",
    "GROUNDING_PRESETS",
    "AnswerFormatReward",
    "BoxFormatReward",
    "CategoryTable",
    "CountExactReward",
    "CountMatchReward",
    "DetectionReward",
    "GroundingReward",
    "OcrEditDistanceReward",
    "PerceptionReward",
    "Qwen2VLGroundingFormatReward",
    "TaskRouterReward",
    "answer_format",
    "box_format",
    "completion_text",
    "count_exact",
    "count_match",
    "detection",
    "detection_paper",
    "detection_vlm_r1",
    "get_reward",
    "giou",
    "greedy_match",
    "hungarian_match",
    "iou",
    "iou_squared",
    "iou_threshold",
    "list_rewards",
    "normalize_text",
    "ocr_edit_distance",
    "perception",
    "predicted_count",
    "qwen2_vl_grounding_format",
    "register_reward",
]
