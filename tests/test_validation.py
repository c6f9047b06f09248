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
"""Bad ground truth is a clear error naming the reward, the row and the column; bad model output is a counted 0."""

import math
import re

import pytest

from trl_perception.rewards import get_reward
from trl_perception.validation import GroundTruthError, validate_ground_truth


BOX = '[{"bbox_2d": [10, 10, 50, 50], "label": "person"}]'


def call(reward, completions, **columns):
    conversational = [[{"role": "assistant", "content": c}] if isinstance(c, str) else c for c in completions]
    return reward(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions), completions=conversational, **columns
    )


def grounding_row(**override):
    row = {"boxes": [[[10.0, 10.0, 50.0, 50.0]]], "width": [100], "height": [80], "task": ["grounding"]}
    row.update(override)
    return row


def counting_row(**override):
    row = {"points": [[[30.0, 30.0]]], "count": [1], "width": [100], "height": [80], "task": ["counting"]}
    row.update(override)
    return row


def detection_row(**override):
    row = {
        "boxes": [[[10.0, 10.0, 50.0, 50.0]]],
        "category_ids": [[1]],
        "labels": [["person"]],
        "width": [100],
        "height": [80],
        "task": ["detection"],
    }
    row.update(override)
    return row


def expect_error(reward, completions, column, row=0, **columns):
    pattern = rf"Reward '{re.escape(reward.__name__)}', row {row}\b.*column '{column}'"
    with pytest.raises(ValueError, match=pattern) as info:
        call(reward, completions, **columns)
    assert isinstance(info.value, GroundTruthError)
    return str(info.value)


# -- model output ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["[]", "{}", '[{"foo": 1}]', "[{}]"])
@pytest.mark.parametrize("graded", [False, True])
def test_box_format_require_label_on_answers_without_boxes(answer, graded):
    reward = get_reward("box_format", require_label=True, graded=graded)
    assert call(reward, [answer, BOX]) == [0.0, 1.0]


@pytest.mark.parametrize(
    "name", ["iou", "count_match", "count_exact", "ocr_edit_distance", "detection", "answer_format"]
)
@pytest.mark.parametrize("text", [None, 123])
def test_content_parts_with_non_string_text_score_zero(name, text):
    reward = get_reward(name, family="qwen2_5_vl")
    completion = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    columns = {**grounding_row(), **counting_row(), **detection_row(), "text": ["hello"], "task": [None]}
    assert call(reward, [completion], **columns) == [0.0]


# -- counting -------------------------------------------------------------------------------------------------


def test_count_match_nan_point_is_an_error_not_nan():
    reward = get_reward("count_match", family="qwen2_5_vl")
    message = expect_error(reward, ["(30, 30)"], "points", **counting_row(points=[[[math.nan, 50.0]]]))
    assert "non-finite" in message


@pytest.mark.parametrize("sizes", [[[0, 0]], [[-28, 56]], [[28.5, 56]], [["28", 56]], [[28]]])
def test_count_match_invalid_model_image_sizes(sizes):
    reward = get_reward("count_match", family="qwen2_5_vl")
    expect_error(reward, ["(30, 30)"], "model_image_sizes", **counting_row(model_image_sizes=[sizes]))


@pytest.mark.parametrize("count", [-1, 1e30, 1.5, "1", True])
@pytest.mark.parametrize("name", ["count_exact", "count_match"])
def test_invalid_count(name, count):
    reward = get_reward(name, family="qwen2_5_vl")
    expect_error(reward, ["<answer>1</answer>"], "count", **counting_row(count=[count]))


def test_integer_valued_float_count_and_sizes_are_accepted():
    reward = get_reward("count_exact")
    assert call(reward, ["<answer>3</answer>"], count=[3.0], width=[100.0], height=[80]) == [1.0]


# -- boxes ----------------------------------------------------------------------------------------------------

BAD_BOXES = {
    "nan": [[math.nan, 10.0, 50.0, 50.0]],
    "inf": [[10.0, 10.0, math.inf, 50.0]],
    "inverted": [[50.0, 10.0, 10.0, 50.0]],
    "zero_area": [[10.0, 10.0, 10.0, 50.0]],
    "outside": [[10.0, 10.0, 150.0, 50.0]],
    "negative": [[-20.0, 10.0, 50.0, 50.0]],
    "flat": [10.0, 10.0, 50.0, 50.0],
    "three_numbers": [[10.0, 10.0, 50.0]],
    "five_numbers": [[10.0, 10.0, 50.0, 50.0, 1.0]],
    "strings": [["10", "10", "50", "50"]],
    "not_a_list": "10,10,50,50",
}


@pytest.mark.parametrize("case", sorted(BAD_BOXES))
@pytest.mark.parametrize("name", ["iou", "iou_squared", "giou", "detection"])
def test_invalid_gt_boxes(name, case):
    reward = get_reward(name, family="qwen2_5_vl")
    rows = detection_row if name == "detection" else grounding_row
    expect_error(reward, [BOX], "boxes", **rows(boxes=[BAD_BOXES[case]]))


def test_flat_box_error_says_how_to_fix_it():
    reward = get_reward("detection", family="qwen2_5_vl")
    message = expect_error(reward, [BOX], "boxes", **detection_row(boxes=[[10, 10, 50, 50]]))
    assert "wrap it" in message


def test_gt_box_within_a_pixel_of_the_border_is_accepted():
    reward = get_reward("iou", family="qwen2_5_vl")
    (value,) = call(reward, [BOX], **grounding_row(boxes=[[[0.0, 0.0, 100.5, 80.0]]]))
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize(
    "column,value",
    [("width", math.inf), ("width", 1e308), ("width", 0), ("height", -5), ("width", "100"), ("height", 80.5)],
)
@pytest.mark.parametrize("name", ["iou", "count_match", "detection"])
def test_invalid_image_size(name, column, value):
    reward = get_reward(name, family="qwen2_5_vl")
    rows = {"iou": grounding_row, "count_match": counting_row, "detection": detection_row}[name]
    message = expect_error(reward, [BOX], column, **rows(**{column: [value]}))
    assert "integer number of pixels" in message


def test_extreme_aspect_ratio_names_the_row():
    reward = get_reward("iou", family="qwen2_5_vl")
    columns = grounding_row(width=[10_000], height=[10], boxes=[[[0.0, 0.0, 5.0, 5.0]]])
    message = expect_error(reward, [BOX], "width", **columns)
    assert "smart-resized" in message


@pytest.mark.parametrize("ids", [[math.nan], ["1"], [1.5], 1, [1, 2]])
def test_invalid_category_ids(ids):
    reward = get_reward("detection", family="qwen2_5_vl")
    expect_error(reward, [BOX], "category_ids", **detection_row(category_ids=[ids]))


def test_unknown_category_names_the_column():
    reward = get_reward("detection", family="qwen2_5_vl")
    message = expect_error(reward, [BOX], "labels", **detection_row(category_ids=[[]], labels=[["unicorn"]]))
    assert "'unicorn'" in message


# -- columns --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iou", "count_exact", "ocr_edit_distance", "detection", "perception"])
def test_column_shorter_than_completions(name):
    reward = get_reward(name, family="qwen2_5_vl")
    column = {"iou": "boxes", "count_exact": "count", "ocr_edit_distance": "text", "detection": "boxes"}.get(
        name, "boxes"
    )
    columns = {
        **grounding_row(),
        "task": ["grounding"] * 2,
        "count": [1, 1],
        "text": ["a", "b"],
        "width": [100, 100],
        "height": [80, 80],
        "category_ids": [[1], [1]],
        "labels": [["person"], ["person"]],
        "boxes": [[[10.0, 10.0, 50.0, 50.0]]] * 2,
    }
    columns[column] = columns[column][:1]
    columns["task"] = [{"iou": "grounding", "perception": "grounding"}.get(name, None)] * 2
    with pytest.raises(ValueError, match=rf"Reward '{name}', column '{column}': has 1 entries for 2 completions"):
        call(reward, [BOX, BOX], **columns)


@pytest.mark.parametrize("text", [123, ["a"], b"bytes"])
def test_ocr_text_must_be_a_string(text):
    reward = get_reward("ocr_edit_distance")
    expect_error(reward, ["<answer>a</answer>"], "text", text=[text], task=["ocr"])


def test_error_names_the_row_and_its_id():
    reward = get_reward("iou", family="qwen2_5_vl")
    columns = {
        "boxes": [[[10.0, 10.0, 50.0, 50.0]], [[50.0, 10.0, 10.0, 50.0]]],
        "width": [100, 100],
        "height": [80, 80],
        "id": ["ok", "refcoco/val/7"],
    }
    message = expect_error(reward, [BOX, BOX], "boxes", row=1, **columns)
    assert "'refcoco/val/7'" in message and "inverted" in message


def test_router_names_the_batch_row():
    reward = get_reward("perception", family="qwen2_5_vl")
    columns = {
        "task": ["ocr", "grounding", "grounding"],
        "text": ["a", None, None],
        "boxes": [None, [[10.0, 10.0, 50.0, 50.0]], [[10.0, 10.0, 500.0, 50.0]]],
        "width": [None, 100, 100],
        "height": [None, 80, 80],
    }
    with pytest.raises(ValueError, match=r"Reward 'perception/grounding', row 2, column 'boxes'"):
        call(reward, ["<answer>a</answer>", BOX, BOX], **columns)


def test_rows_of_other_tasks_are_not_validated():
    """Only the scored rows are checked: a counting row's `count` never stops the grounding reward."""
    reward = get_reward("iou", family="qwen2_5_vl")
    columns = {**grounding_row(), "task": ["counting"], "boxes": [[[math.nan, 0, 1, 1]]]}
    assert call(reward, [BOX], **columns) == [None]


def test_valid_rows_pass_and_none_is_not_applicable():
    validate_ground_truth(
        "t",
        {"boxes": [None, [], [[0, 0, 5, 5]]], "width": [10, 10, 10], "height": [10, 10, 10], "count": [None, 0, 3]},
        [0, 1, 2],
        3,
        ["boxes", "width", "height", "count"],
    )
