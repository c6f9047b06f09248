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
"""Registry, TRL call convention, grounding, counting, OCR, format and router rewards (detection: its own file)."""

import copy
import importlib
import json
import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.trainer.utils import get_callable_name

import trl_perception.rewards as rewards_module
from trl_perception.rewards import get_reward, list_rewards


class MetricLog:
    """Stand-in for TRL's `log_metric` kwarg."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def __call__(self, name: str, value: float) -> None:
        assert isinstance(value, float) and not math.isnan(value), (name, value)
        self.values.setdefault(name, []).append(value)

    def last(self, name: str) -> float:
        return self.values[name][-1]


def call(reward, completions, log=None, **columns):
    """Call a reward the way TRL does: keyword arguments, conversational completions, `log_metric` in kwargs."""
    conversational = [[{"role": "assistant", "content": c}] if isinstance(c, str) else c for c in completions]
    extra = {"log_metric": log} if log is not None else {}
    return reward(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions),
        completions=conversational,
        completion_ids=[[0]] * len(completions),
        trainer_state=None,
        log_extra=lambda *a: None,
        **extra,
        **columns,
    )


def box_json(*items):
    return "```json\n" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in items]) + "\n```"


# ----------------------------------------------------------------------------------------------------------------
# Registry and TRL integration
# ----------------------------------------------------------------------------------------------------------------

EXPECTED_REWARDS = {
    "answer_format",
    "box_format",
    "count_exact",
    "count_match",
    "detection",
    "giou",
    "grounding",
    "iou",
    "iou_squared",
    "iou_threshold",
    "ocr_edit_distance",
    "perception",
    "qwen2_vl_grounding_format",
}

MODULE_INSTANCES = [
    "iou",
    "iou_squared",
    "giou",
    "iou_threshold",
    "count_match",
    "count_exact",
    "ocr_edit_distance",
    "detection",
    "detection_paper",
    "detection_vlm_r1",
    "answer_format",
    "box_format",
    "qwen2_vl_grounding_format",
    "perception",
]


def test_registry_lists_every_reward():
    assert EXPECTED_REWARDS <= set(list_rewards())
    assert list_rewards() == sorted(list_rewards())
    with pytest.raises(ValueError, match="Unknown reward"):
        get_reward("no_such_reward")


@pytest.mark.parametrize("attribute", MODULE_INSTANCES)
def test_dotted_paths_resolve_like_trl_grpo(attribute):
    # `trl grpo --reward_funcs trl_perception.rewards.<name>`: TRL's script does rsplit + import_module + getattr.
    module_path, func_name = f"trl_perception.rewards.{attribute}".rsplit(".", 1)
    reward = getattr(importlib.import_module(module_path), func_name)
    assert callable(reward)
    assert get_callable_name(reward) == attribute  # TRL names the `rewards/<name>/mean` metric after it
    pickle.loads(pickle.dumps(reward))  # multiprocessing / accelerate may pickle reward functions
    copy.deepcopy(reward)


def test_get_reward_names_and_options():
    reward = get_reward("iou_squared", max_pixels=1_000_000, name="iou2_1mp")
    assert reward.__name__ == "iou2_1mp" and reward.max_pixels == 1_000_000
    assert get_reward("detection", preset="paper").__name__ == "detection_paper"
    assert get_reward("grounding").kind == "iou_squared"
    with pytest.raises(ValueError):
        get_reward("iou", frame="pixels")
    with pytest.raises(ValueError):
        get_reward("grounding", preset="nope")
    with pytest.raises(TypeError):
        get_reward("iou", no_such_option=1)


def test_plain_completions_and_positional_prompts():
    reward = get_reward("iou", frame="original")
    assert reward(["p"], ["[0, 0, 10, 10]"], boxes=[[[0, 0, 10, 20]]]) == [0.5]
    assert reward(prompts=["p"], completions=["[0, 0, 10, 10]"], boxes=[[[0, 0, 10, 20]]]) == [0.5]
    # List-of-parts message content.
    parts = [
        {"role": "assistant", "content": [{"type": "text", "text": "[0, 0, "}, {"type": "text", "text": "10, 10]"}]}
    ]
    assert reward(prompts=["p"], completions=[parts], boxes=[[[0, 0, 10, 20]]]) == [0.5]


def test_missing_column_is_an_actionable_error():
    with pytest.raises(ValueError, match="boxes"):
        call(get_reward("iou", frame="original"), ["[0, 0, 1, 1]"])
    with pytest.raises(ValueError, match="width"):
        call(get_reward("iou"), ["[0, 0, 1, 1]"], boxes=[[[0, 0, 1, 1]]])


# ----------------------------------------------------------------------------------------------------------------
# Grounding
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("iou", {}, 0.5),  # [0,0,10,10] vs [0,0,10,20]: 100 / 200
        ("iou_squared", {}, 0.25),
        ("giou", {}, 0.75),  # enclosing box = union, so GIoU = IoU = 0.5 -> (1 + 0.5) / 2
        ("iou_threshold", {}, 1.0),  # 0.5 >= 0.5 (inclusive)
        ("iou_threshold", {"threshold": 0.6}, 0.0),
    ],
)
def test_grounding_hand_values(name, options, expected):
    reward = get_reward(name, frame="original", **options)
    assert call(reward, ["[0, 0, 10, 10]"], boxes=[[[0, 0, 10, 20]]]) == [expected]


def test_giou_far_box_scores_below_near_box_but_not_below_zero():
    reward = get_reward("giou", frame="original")
    # [20,0,30,10] vs [0,0,10,10]: IoU 0, enclosing 300, union 200 -> GIoU -1/3 -> (1 - 1/3) / 2.
    far, fail = call(reward, ["[20, 0, 30, 10]", "no box"], boxes=[[[0, 0, 10, 10]]] * 2)
    assert far == pytest.approx(1 / 3) and fail == 0.0


def test_grounding_converts_ground_truth_into_the_qwen2_5_vl_frame():
    # 640x480 -> smart_resize 644x476: GT [64, 48, 320, 240] becomes [64.4, 47.6, 322, 238].
    reward = get_reward("iou")
    columns = {"boxes": [[[64, 48, 320, 240]]] * 2, "width": [640] * 2, "height": [480] * 2}
    exact = box_json(([64.4, 47.6, 322, 238], "x"))
    original = box_json(([64, 48, 320, 240], "x"))
    values = call(reward, [exact, original], **columns)
    assert values[0] == pytest.approx(1.0)
    inter = (320 - 64.4) * (238 - 48)
    union = 256 * 192 + 257.6 * 190.4 - inter
    assert values[1] == pytest.approx(inter / union)


def test_grounding_qwen2_vl_frame_and_tokens_never_decide_the_frame():
    columns = {"boxes": [[[64, 48, 320, 240]]] * 2, "width": [640] * 2, "height": [480] * 2}
    completions = ["<|box_start|>(100,100),(500,500)<|box_end|>", "the cat(100,100),(500,500)"]
    assert call(get_reward("iou", frame="qwen2_vl"), completions, **columns) == [1.0, 1.0]
    # The same text read in the Qwen2.5-VL frame is compared with [64.4, 47.6, 322, 238] (no x1000 guessing, D4),
    # after clipping the prediction to the 644x476 frame: [100, 100, 500, 476].
    inter = (322 - 100) * (238 - 100)
    expected = inter / (400 * 376 + 257.6 * 190.4 - inter)
    assert call(get_reward("iou"), completions, **columns) == [pytest.approx(expected)] * 2


def test_grounding_model_image_sizes_override_smart_resize():
    reward = get_reward("iou")
    # The trainer says the model saw 700x500: GT [64, 48, 320, 240] -> [70, 50, 350, 250].
    columns = {"boxes": [[[64, 48, 320, 240]]], "width": [640], "height": [480], "model_image_sizes": [[[700, 500]]]}
    assert call(reward, ["[70, 50, 350, 250]"], **columns) == [pytest.approx(1.0)]
    assert call(get_reward("iou", max_pixels=100_000), ["[70, 50, 350, 250]"], **columns) == [pytest.approx(1.0)]


def test_grounding_uses_processor_max_pixels():
    # 3000x2000 with max_pixels 1e6 -> 1204x812 (Perception-R1's training setting).
    reward = get_reward("iou", max_pixels=1_000_000)
    assert call(reward, ["[0, 0, 1204, 812]"], boxes=[[[0, 0, 3000, 2000]]], width=[3000], height=[2000]) == [1.0]


def test_grounding_failures_none_and_metrics():
    log = MetricLog()
    reward = get_reward("iou_squared", frame="original")
    values = call(
        reward,
        ["[0, 0, 10, 10]", "I cannot find it", "<think>[0, 0, 10, 10]", "[0, 0, 10, 10]", "[0, 0, 10, 10]"],
        log,
        boxes=[[[0, 0, 10, 10]], [[0, 0, 10, 10]], [[0, 0, 10, 10]], [], [[0, 0, 10, 10]]],
        task=["grounding", "grounding", "grounding", "grounding", "ocr"],
    )
    # parse failure -> 0.0; unterminated reasoning -> 0.0 (D9); no GT -> None; another task -> None.
    assert values == [1.0, 0.0, 0.0, None, None]
    assert log.last("iou_squared/parse_failure_rate") == pytest.approx(2 / 3)
    assert log.last("iou_squared/iou") == pytest.approx(1 / 3)
    assert log.last("iou_squared/acc@0.5") == pytest.approx(1 / 3)
    assert set(log.values) == {
        f"iou_squared/{k}" for k in ("iou", "acc@0.5", "parse_failure_rate", "invalid_box_rate", "multiple_boxes_rate")
    }


def test_grounding_not_applicable_batch_logs_nothing():
    log = MetricLog()
    assert call(get_reward("iou"), ["x"], log, boxes=[[[0, 0, 1, 1]]], task=["ocr"]) == [None]
    assert log.values == {}


def test_grounding_box_rules():
    boxes = {"boxes": [[[0, 0, 10, 10]]], "width": [100], "height": [100]}
    reward = get_reward("iou", frame="original")
    assert call(reward, ["[-10, -10, 10, 10]"], **boxes) == [1.0]  # clipped to the image
    assert call(get_reward("iou", frame="original", out_of_image="reject"), ["[-10, -10, 10, 10]"], **boxes) == [0.0]
    assert call(reward, ["[10, 10, 0, 0]"], **boxes) == [0.0]  # inverted: rejected
    assert call(get_reward("iou", frame="original", inverted="swap"), ["[10, 10, 0, 0]"], **boxes) == [1.0]
    assert call(reward, ['[{"bbox_2d": [NaN, 0, 10, 10]}]'], **boxes) == [0.0]
    assert call(reward, ["[0, 0, 10, 10] [50, 50, 60, 60]"], **boxes) == [1.0]  # first box
    assert call(
        get_reward("iou", frame="original", multiple_boxes="reject"), ["[0, 0, 10, 10] [5, 5, 6, 6]"], **boxes
    ) == [0.0]
    assert call(reward, ["<think>[50, 50, 60, 60]</think><answer>[0, 0, 10, 10]</answer>"], **boxes) == [1.0]


def test_grounding_plus_one_option():
    reward = get_reward("iou", frame="original", plus_one=True)
    assert call(reward, ["[0, 0, 9, 9]"], boxes=[[[5, 0, 14, 9]]]) == [pytest.approx(50 / 150)]


# ----------------------------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------------------------


def test_count_match_hand_value():
    reward = get_reward("count_match", frame="original")
    # Centres (10, 10) and (50, 52) vs points (10, 10) and (50, 50): d = (0 + 2) / 2 = 1, diagonal = 100·√2.
    text = box_json(([5, 5, 15, 15], "a"), ([45, 47, 55, 57], "a"))
    values = call(reward, [text], points=[[[10, 10], [50, 50]]], count=[2], width=[100], height=[100])
    assert values == [pytest.approx(1 - 1 / (100 * math.sqrt(2)))]


def test_count_match_extra_predictions_and_hungarian():
    reward = get_reward("count_match", frame="original")
    # Three centres for two points; Hungarian pairs (50,50)->(50,50) and (12,10)->(10,10): d = 1; ratio 2/3.
    text = "[48, 48, 52, 52] [10, 8, 14, 12] [90, 90, 94, 94]"
    values = call(reward, [text], points=[[[10, 10], [50, 50]]], count=[2], width=[100], height=[100])
    assert values == [pytest.approx(2 / 3 * (1 - 1 / (100 * math.sqrt(2))))]


def test_count_match_qwen2_vl_frame_uses_the_1000_grid_diagonal():
    reward = get_reward("count_match", frame="qwen2_vl")
    # Point (200, 100) on a 200x100 image is (1000, 1000) on the grid; a centre at (0, 0) is 1000·√2 away.
    values = call(
        reward, ["(0,0),(0,0)", "(990,990),(1000,1000)"], points=[[[200, 100]]] * 2, width=[200] * 2, height=[100] * 2
    )
    assert values == [0.0, pytest.approx(1 - math.hypot(5, 5) / (1000 * math.sqrt(2)))]


def test_count_match_points_output_and_edge_cases():
    reward = get_reward("count_match", frame="original")
    log = MetricLog()
    columns = {
        "points": [[[10, 10]], [], [], [[10, 10]], []],
        "count": [1, 0, 0, 1, 3],
        "width": [100] * 5,
        "height": [100] * 5,
    }
    completions = ['[{"point_2d": [10, 10]}]', "There are none.", "[1, 1, 3, 3]", "There are none.", "[1, 1, 3, 3]"]
    values = call(reward, completions, log, **columns)
    # exact point; both empty -> 1; a box for an empty image -> 0; nothing for one point -> 0; count without points.
    assert values == [1.0, 1.0, 0.0, 0.0, None]
    assert log.last("count_match/count_accuracy") == pytest.approx(2 / 4)


def test_count_match_caps_matching_but_counts_every_prediction():
    reward = get_reward("count_match", frame="original", max_predictions=2)
    text = " ".join(["[8, 8, 12, 12]"] * 2 + ["[48, 48, 52, 52]"] * 2)
    values = call(reward, [text], points=[[[10, 10], [50, 50]]], width=[100], height=[100])
    # Four predictions, two matched (both at distance 0 from (10, 10)? no: one-to-one -> one at 0, one at 40·√2).
    expected = 2 / 4 * (1 - (0 + math.hypot(40, 40)) / 2 / (100 * math.sqrt(2)))
    assert values == [pytest.approx(expected)]


@pytest.mark.parametrize(
    "text, count, expected",
    [
        ("<answer>3</answer>", 3, 1.0),
        ("<answer>3</answer>", 4, 0.0),
        ("There are two dogs.", 2, 1.0),
        (box_json(([0, 0, 1, 1], "a"), ([2, 2, 3, 3], "a")), 2, 1.0),
        ("(1,1),(2,2) (3,3),(4,4) (5,5),(6,6)", 3, 1.0),
        ("2 or 3", 2, 0.0),
        ("nothing", 0, 0.0),
    ],
)
def test_count_exact(text, count, expected):
    assert call(get_reward("count_exact"), [text], count=[count]) == [expected]


def test_count_exact_ground_truth_from_points_and_metrics():
    log = MetricLog()
    values = call(
        get_reward("count_exact"), ["2", "5", "x"], log, count=[None, 3, None], points=[[[1, 1], [2, 2]], [], None]
    )
    assert values == [1.0, 0.0, None]
    assert log.last("count_exact/accuracy") == 0.5 and log.last("count_exact/abs_error") == 1.0
    text = "<answer>[0, 0, 1, 1] [2, 2, 3, 3], so 7</answer>"
    assert call(get_reward("count_exact", source="answer"), [text], count=[7]) == [1.0]  # last integer in the tags
    assert call(get_reward("count_exact"), [text], count=[7]) == [0.0]  # auto: two boxes


# ----------------------------------------------------------------------------------------------------------------
# OCR
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, pred, gt, expected",
    [
        ({}, "hello world", "hello world", 1.0),
        ({}, "abc", "abd", 1 - 1 / 3),
        ({}, "hello \n  world\n", "hello world", 1.0),  # whitespace runs collapse
        ({"whitespace": "keep"}, "hello \n world", "hello world", 1 - 2 / 13),
        ({"whitespace": "remove"}, "h e l l o", "hello", 1.0),
        ({}, "\ufb01le", "file", 1.0),  # NFKC: the "fi" ligature
        ({"unicode_form": None}, "\ufb01le", "file", 1 - 2 / 4),
        ({}, "Ｈｅｌｌｏ", "Hello", 1.0),  # full-width letters
        ({}, "HELLO", "hello", 0.0),
        ({"lowercase": True}, "HELLO", "hello", 1.0),
        ({}, "", "", 1.0),  # a blank page read as blank
        ({}, "   ", "", 1.0),
        ({}, "", "text", 0.0),
        ({}, "text", "", 0.0),
        ({}, "<think>hmm</think><answer>abc</answer>", "abc", 1.0),
        ({}, "<think>abc", "abc", 0.0),  # unterminated reasoning: parse failure
    ],
)
def test_ocr_edit_distance(options, pred, gt, expected):
    assert call(get_reward("ocr_edit_distance", **options), [pred], text=[gt]) == [pytest.approx(expected)]


def test_ocr_not_applicable_and_metrics():
    log = MetricLog()
    values = call(get_reward("ocr_edit_distance"), ["abc", "abd", "x"], log, text=["abc", "abc", None])
    assert values == [1.0, pytest.approx(2 / 3), None]
    assert log.last("ocr_edit_distance/edit_distance") == pytest.approx(1 / 6)
    assert log.last("ocr_edit_distance/exact_match") == 0.5
    with pytest.raises(ValueError):
        get_reward("ocr_edit_distance", whitespace="squash")


# ----------------------------------------------------------------------------------------------------------------
# Format rewards
# ----------------------------------------------------------------------------------------------------------------


def test_answer_format_reward():
    reward = get_reward("answer_format")
    texts = ["<think>a\nb</think>\n<answer>1</answer>", "<answer>1</answer>", "1", "<think>a</think><answer>1"]
    assert call(reward, texts, task=["ocr", "counting", "grounding", "detection"]) == [1.0, 0.0, 0.0, 0.0]
    assert call(get_reward("answer_format", require_think=False), ["<answer>1</answer>"]) == [1.0]


def test_box_format_reward():
    reward = get_reward("box_format")
    texts = [
        box_json(([1, 2, 3, 4], "a")),
        box_json(([1, 2, 3, 4], "a"))[:-10],  # truncated
        '[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [4, 3, 2, 1]}]',  # one inverted box
        "[1, 2, 3, 4]",  # not JSON
        "[]",
    ]
    assert call(reward, texts) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert call(get_reward("box_format", graded=True), texts[2:3]) == [0.5]
    assert call(get_reward("box_format", box_format="list"), ["[1, 2, 3, 4]"]) == [1.0]
    assert call(get_reward("box_format", require_label=True), ['[{"bbox_2d": [1, 2, 3, 4]}]']) == [0.0]
    assert call(reward, ["x", "x"], task=["ocr", "detection"]) == [None, 0.0]


class FakeTokenizer:
    def batch_decode(self, ids, skip_special_tokens=True):
        assert skip_special_tokens is False
        return ["<|object_ref_start|>cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|><|im_end|>" for _ in ids]


def test_qwen2_vl_grounding_format_reward():
    good = "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|><|im_end|>"
    reward = get_reward("qwen2_vl_grounding_format")
    assert call(reward, [good, "<", "cat(1,2),(3,4)"]) == [1.0, 0.0, 0.0]  # D3: "<" is not a valid completion
    # With a tokenizer, completion_ids are re-decoded with the special tokens TRL strips.
    assert call(get_reward("qwen2_vl_grounding_format", tokenizer=FakeTokenizer()), ["cat(1,2),(3,4)"]) == [1.0]


# ----------------------------------------------------------------------------------------------------------------
# Router
# ----------------------------------------------------------------------------------------------------------------


def test_router_routes_by_task_and_prefixes_metrics():
    log = MetricLog()
    router = get_reward("perception", frame="original")
    values = call(
        router,
        ["[0, 0, 10, 10]", "hello", "<answer>3</answer>", box_json(([0, 0, 10, 10], "person")), "x"],
        log,
        task=["grounding", "ocr", "counting", "detection", "captioning"],
        boxes=[[[0, 0, 10, 20]], [], [], [[0, 0, 10, 10]], []],
        category_ids=[[], [], [], [1], []],
        text=[None, "hello", None, None, None],
        points=[[], [], [[1, 1], [2, 2], [3, 3]], [], []],
        count=[None, None, 3, None, None],
        width=[100] * 5,
        height=[100] * 5,
    )
    # IoU² = 0.25; OCR exact; counting "3" has no box/point to match -> 0; detection perfect -> 3; unknown task -> None.
    assert values == [0.25, 1.0, 0.0, 3.0, None]
    assert "perception/grounding/iou" in log.values and "perception/detection/f1" in log.values
    assert "perception/ocr/edit_distance" in log.values


def test_router_custom_mapping_and_errors():
    router = get_reward(
        "perception",
        rewards={
            "grounding": {"name": "iou_threshold", "threshold": 0.4},
            "ocr": lambda prompts, completions, **kw: [7.0] * len(completions),
        },
        frame="original",
    )
    values = call(router, ["[0, 0, 10, 10]", "x"], task=["grounding", "ocr"], boxes=[[[0, 0, 10, 20]], []])
    assert values == [1.0, 7.0]
    with pytest.raises(ValueError, match="task"):
        call(router, ["x"])
    with pytest.raises(ValueError):
        get_reward("perception", rewards={"ocr": "nope"})
    with pytest.raises(TypeError):
        get_reward("perception", threshold=0.3)


# ----------------------------------------------------------------------------------------------------------------
# Adversarial completions: never raise, stay in the documented range
# ----------------------------------------------------------------------------------------------------------------

ADVERSARIAL = [
    "",
    "[" * 50000,
    '{"bbox_2d": ' * 5000,
    "[1e308, 1e308, -1e308, 1e308]",
    "[" + "9" * 5000 + ", 0, 1, 1]",
    '[{"bbox_2d": [NaN, Infinity, -Infinity, 1], "label": "person"}]',
    " ".join(["[1, 2, 3, 4]"] * 5000),
    "x" * 100000,
    "<think>" * 1000,
    "\x00\ud7ff\U0010ffff" * 10,
    None,
    42,
]
RANGES = {
    "iou": (0, 1),
    "iou_squared": (0, 1),
    "giou": (0, 1),
    "iou_threshold": (0, 1),
    "count_match": (0, 1),
    "count_exact": (0, 1),
    "ocr_edit_distance": (0, 1),
    "answer_format": (0, 1),
    "box_format": (0, 1),
    "detection": (0, 3),
    "perception": (0, 3),
}
COLUMNS = {
    "boxes": [[[10, 10, 50, 50], [60, 60, 90, 90]]],
    "category_ids": [[1, 90]],
    "points": [[[20, 20], [70, 70]]],
    "count": [2],
    "text": ["hello"],
    "width": [100],
    "height": [100],
}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_adversarial_completions_stay_in_range(name):
    reward = get_reward(name, frame="original")
    for text in ADVERSARIAL:
        task = {"count_match": "counting", "count_exact": "counting", "ocr_edit_distance": "ocr"}.get(
            name, "detection"
        )
        columns = {**COLUMNS, "task": [task]} if name in ("perception", "count_match", "count_exact") else COLUMNS
        (value,) = call(reward, [text], MetricLog(), **columns)
        low, high = RANGES[name]
        assert value is not None and low <= value <= high, (name, str(text)[:40], value)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_random_unicode_completions_stay_in_range(text):
    for name in ("iou_squared", "giou", "count_match", "ocr_edit_distance", "detection"):
        (value,) = call(get_reward(name, frame="original"), [text], **COLUMNS)
        low, high = RANGES[name]
        assert low <= value <= high


def test_module_rewards_are_shared_instances():
    # The dotted-path instances are built once, at import (no per-call regex compilation or setup).
    assert rewards_module.iou_squared is importlib.import_module("trl_perception.rewards").iou_squared


def test_grounding_without_a_usable_box_is_a_counted_parse_failure():
    reward = get_reward("iou_squared", frame="original")
    logged = {}
    texts = ['[{"bbox_2d": [1, 2, 3]}]', '[{"label": "a"}, {"bbox_2d": [0, 0, 10, 10]}]', "[]"]
    scores = reward(
        prompts=[None] * 3,
        completions=texts,
        boxes=[[[0.0, 0.0, 10.0, 10.0]]] * 3,
        width=[100] * 3,
        height=[100] * 3,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert scores == [0.0, 1.0, 0.0]
    assert logged["iou_squared/parse_failure_rate"] == pytest.approx(2 / 3)


def test_empty_list_counts_zero_objects():
    from trl_perception.rewards._counting import predicted_count

    assert predicted_count("[]") == (0, None)
    assert predicted_count("```json\n[]\n```") == (0, None)
    assert get_reward("count_exact")(prompts=[None], completions=["[]"], count=[0]) == [1.0]


def test_count_match_needs_the_image_size_in_every_frame():
    reward = get_reward("count_match", frame="original")
    with pytest.raises(ValueError, match="width"):
        reward(prompts=[None], completions=['[{"point_2d": [0, 0]}]'], points=[[[900.0, 900.0]]], count=[1])
