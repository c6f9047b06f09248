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
"""Score model outputs with the perception rewards, outside any trainer.

python examples/score_completions.py
"""

from trl_perception.rewards import get_reward


# A 640x480 image; ground truth is always in original pixels. Qwen2.5-VL answers in pixels of the smart-resized
# input (here 644x476), Qwen2-VL on the 0-1000 grid: the reward converts the ground truth into the model's frame.
rows = {"boxes": [[[100.0, 120.0, 300.0, 360.0]]], "width": [640], "height": [480]}
completions = {
    "qwen2_5_vl": '```json\n[{"bbox_2d": [101, 118, 302, 357], "label": "dog"}]\n```',
    "qwen2_vl": "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(156,250),(470,748)<|box_end|>",
}

for frame, text in completions.items():
    reward = get_reward("iou_squared", frame=frame)
    print(f"{frame:10s} IoU² = {reward(prompts=[None], completions=[text], **rows)[0]:.3f}")

counting = get_reward("count_exact", source="answer")
print("count_exact:", counting(prompts=[None, None], completions=["3", "There are three."], count=[3, 4]))

detection = get_reward("detection", preset="paper")
score = detection(
    prompts=[None],
    completions=['[{"bbox_2d": [10, 10, 50, 50], "label": "person"}, {"bbox_2d": [60, 60, 90, 90], "label": "cat"}]'],
    boxes=[[[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]],
    labels=[["person", "dog"]],
    width=[100],
    height=[100],
    model_image_sizes=[[[100, 100]]],
)
print("detection (paper preset, one wrong class):", score)
