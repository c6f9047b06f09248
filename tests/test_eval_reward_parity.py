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
"""Evaluation and rewards read the same completions the same way (one parser, one geometry, one counting rule)."""

import json

import numpy as np
import pytest

from trl_perception.eval.metrics import grounding_metrics
from trl_perception.eval.scoring import score_counting, score_grounding, score_ocr
from trl_perception.geometry import ImageGeometry
from trl_perception.rewards import get_reward


SIZES = [(640, 480), (96, 64), (333, 517), (1000, 40)]


def grounding_cases(seed=0):
    """(completion, width, height, gt box) covering JSON, lists, Qwen2-VL pairs, failures and bad boxes."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(60):
        width, height = SIZES[k % len(SIZES)]
        x1, y1 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
        gt = [x1, y1, x1 + rng.uniform(5, width * 0.4), y1 + rng.uniform(5, height * 0.4)]
        pred = (np.asarray(gt) + rng.normal(0, 0.15, 4) * [width, height, width, height]).round(1).tolist()
        kind = k % 6
        if kind == 0:
            text = json.dumps([{"bbox_2d": pred, "label": "thing"}])
        elif kind == 1:
            text = f"<answer>[{pred[0]}, {pred[1]}, {pred[2]}, {pred[3]}]</answer>"
        elif kind == 2:
            text = f"<|box_start|>({int(pred[0])},{int(pred[1])}),({int(pred[2])},{int(pred[3])})<|box_end|>"
        elif kind == 3:
            text = "no box"
        elif kind == 4:
            text = json.dumps([{"bbox_2d": [pred[2], pred[3], pred[0], pred[1]]}])  # inverted
        else:
            text = json.dumps([{"bbox_2d": [-20, -20, width + 50, height * 2]}])  # out of image
        cases.append((text, width, height, gt))
    return cases


@pytest.mark.parametrize("frame", ["qwen2_5_vl", "qwen2_vl", "original"])
@pytest.mark.parametrize("out_of_image", ["keep", "clip"])
def test_grounding_eval_iou_equals_reward_iou(frame, out_of_image):
    cases = grounding_cases()
    texts = [c[0] for c in cases]
    widths, heights, gts = [c[1] for c in cases], [c[2] for c in cases], [[c[3]] for c in cases]
    geometries = [ImageGeometry.from_size(w, h) for w, h in zip(widths, heights)]
    sizes = [[[g.resized_width, g.resized_height]] for g in geometries]
    reward = get_reward("iou", frame=frame, out_of_image=out_of_image)
    rewards = reward(prompts=[None] * len(texts), completions=texts, boxes=gts, width=widths, height=heights,
                     model_image_sizes=sizes)  # fmt: skip
    scores = [
        score_grounding(t, {"boxes": gt}, g, frame, out_of_image=out_of_image)["score"]
        for t, gt, g in zip(texts, gts, geometries)
    ]
    assert scores == pytest.approx(rewards, abs=1e-9)
    assert any(0 < s < 1 for s in scores) and scores.count(0.0) >= len(scores) // 6  # the cases are not trivial
    # Acc@0.5 equals the mean of the thresholded reward.
    threshold = get_reward("iou_threshold", threshold=0.5, frame=frame, out_of_image=out_of_image)
    hits = threshold(prompts=[None] * len(texts), completions=texts, boxes=gts, width=widths, height=heights,
                     model_image_sizes=sizes)  # fmt: skip
    records = [score_grounding(t, {"boxes": gt}, g, frame, out_of_image) for t, gt, g in zip(texts, gts, geometries)]
    acc = grounding_metrics([r["prediction"] for r in records], [gt[0] for gt in gts])["acc@0.5"]
    assert acc == pytest.approx(np.mean(hits))


COUNT_COMPLETIONS = [
    json.dumps([{"bbox_2d": [i, i, i + 4, i + 4], "label": "a"} for i in range(3)]),
    json.dumps([{"bbox_2d": [1, 1, 5, 5]}, {"bbox_2d": [9, 9, 2, 2]}, {"label": "no box"}]),
    "<|box_start|>(1,2),(3,4)<|box_end|><|box_start|>(5,6),(7,8)<|box_end|>",
    json.dumps([{"point_2d": [3, 4]}, {"point_2d": [5, 6]}, {"point_2d": [7, 8]}]),
    "(3, 4) and (5, 6)",
    "<answer>3</answer>",
    "There are three apples.",
    "2 or 3",
    "<think>counting 1, 2, 3",
    "",
]


@pytest.mark.parametrize("mode", ["auto", "boxes", "points", "answer"])
def test_counting_eval_exact_match_equals_reward(mode):
    reward = get_reward("count_exact", source=mode)
    for gt in (2, 3):
        rewards = reward(prompts=[None] * len(COUNT_COMPLETIONS), completions=COUNT_COMPLETIONS,
                         count=[gt] * len(COUNT_COMPLETIONS))  # fmt: skip
        scores = [score_counting(t, {"count": gt}, mode)["score"] for t in COUNT_COMPLETIONS]
        assert scores == rewards
    assert sum(score_counting(t, {"count": 3}, "auto")["score"] for t in COUNT_COMPLETIONS) >= 4


def test_ocr_eval_score_equals_reward_without_normalization():
    pairs = [
        ("Hello world", "Hello world"),
        ("Hello  world\n", "Hello world"),
        ("感知策略", "感知的策略"),
        ("", "text"),
        ("", ""),
        ("<think>reading", "text"),
        ("<answer>the page</answer>", "the page"),
    ]
    reward = get_reward("ocr_edit_distance", unicode_form=None, whitespace="keep")
    rewards = reward(prompts=[None] * len(pairs), completions=[p for p, _ in pairs], text=[g for _, g in pairs])
    scores = [score_ocr(p, {"text": g})["score"] for p, g in pairs]
    failures = [score_ocr(p, {"text": g})["failure"] for p, g in pairs]
    # A parse failure is 0 for the reward and an empty prediction for the evaluation: both 0 against a non-empty GT.
    assert scores == pytest.approx(rewards)
    assert failures.count("unterminated_think") == 1


def test_grounding_eval_without_a_usable_box_is_a_failure_not_a_crash():
    from trl_perception.eval.scoring import score_grounding
    from trl_perception.geometry import ImageGeometry

    row = {"boxes": [[0.0, 0.0, 10.0, 10.0]], "width": 100, "height": 100}
    geometry = ImageGeometry(100, 100, 100, 100)
    for text in ('[{"bbox_2d": [1, 2, 3]}]', "[]"):
        result = score_grounding(text, row, geometry, "qwen2_5_vl")
        assert result["failure"] == "no_boxes" and result["score"] == 0.0
    # The first well-formed box is scored, as the reward does.
    ok = score_grounding('[{"label": "a"}, {"bbox_2d": [0, 0, 10, 10]}]', row, geometry, "qwen2_5_vl")
    assert ok["failure"] is None and ok["score"] == 1.0
