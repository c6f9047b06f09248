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

import ast
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_perception import parsing
from trl_perception.parsing import (
    PARSE_ERRORS,
    ParseResult,
    check_answer_format,
    check_qwen2_vl_grounding_format,
    extract_answer,
    parse_boxes,
    parse_count,
    parse_points,
    parse_text,
)


def test_parsing_never_evaluates_text():
    tree = ast.parse(Path(parsing.__file__).read_text())
    called = {
        node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}


# ----------------------------------------------------------------------------------------------------------------
# Answer region
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[1, 2, 3, 4]", "[1, 2, 3, 4]"),
        ("  padded \n", "padded"),
        ("<think>a [9,9,9,9]</think><answer> [1, 2, 3, 4] </answer>", "[1, 2, 3, 4]"),
        ("<think>\nmulti\nline\n</think>\n<answer>\n42\n</answer><|im_end|>", "42"),
        ("<think>reasoning</think> after think", "after think"),
        ("<answer>first</answer> <answer>second</answer>", "second"),
        ("<think>x</think><answer>truncated answer", "truncated answer"),
        ("result<|im_end|><|endoftext|>", "result"),
    ],
)
def test_extract_answer(text, expected):
    result = extract_answer(text)
    assert result.ok and result.value == expected


def test_extract_answer_failures():
    assert extract_answer("<think>I think [1, 2, 3, 4] but").error == "unterminated_think"
    assert extract_answer("no tags", require_tags=True).error == "missing_answer_tags"
    assert extract_answer("<b>no tags</b>", require_tags=True).error == "missing_answer_tags"
    assert extract_answer("x" * 100, max_chars=99).error == "too_long"
    assert extract_answer(None).error == "not_a_string"
    assert extract_answer(["list"]).error == "not_a_string"
    assert not ParseResult(error="no_boxes").ok and ParseResult(1).ok


# ----------------------------------------------------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------------------------------------------------

QWEN25_OUTPUT = (
    '```json\n[\n\t{"bbox_2d": [10, 20, 30, 40], "label": "cat"},\n\t{"bbox_2d": [50.5, 60, 70, 80], "label": "dog"}\n]'
    "\n```"
)


def test_parse_boxes_qwen2_5_vl_json():
    r = parse_boxes(QWEN25_OUTPUT)
    assert r.ok
    v = r.value
    np.testing.assert_array_equal(v.boxes, [[10, 20, 30, 40], [50.5, 60, 70, 80]])
    assert v.labels == ("cat", "dog") and v.num_items == 2 and v.num_malformed == 0
    assert v.format == "json" and v.well_formed and not v.capped


@pytest.mark.parametrize(
    "text",
    [
        '[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]',  # no fence
        'Here you go: [{"bbox_2d": [10, 20, 30, 40], "label": "cat"}] Done.',  # text around
        '```[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]```\nok',  # fence on one line
        '{"bbox_2d": [10, 20, 30, 40], "label": "cat"}',  # a single object
        '<answer>```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]\n```</answer>',
    ],
)
def test_parse_boxes_json_variants(text):
    v = parse_boxes(text).value
    assert v.coords == [[10, 20, 30, 40]] and v.labels == ("cat",) and v.well_formed


def test_parse_boxes_truncated_json_keeps_complete_items():
    text = QWEN25_OUTPUT[: QWEN25_OUTPUT.index("60")]  # cut inside the second item
    v = parse_boxes(text).value
    assert v.coords == [[10, 20, 30, 40]] and v.labels == ("cat",)
    assert not v.well_formed
    # Cut inside the first item, after its box: the bare key is still usable.
    v = parse_boxes('```json\n[{"bbox_2d": [1, 2, 3, 4], "lab').value
    assert v.coords == [[1, 2, 3, 4]] and v.labels == (None,)
    assert parse_boxes('```json\n[{"bbox_2d": [1, 2').error == "no_boxes"


def test_parse_boxes_counts_malformed_items():
    text = json.dumps(
        [
            {"bbox_2d": [1, 2, 3, 4], "label": "a"},
            {"bbox_2d": [1, 2, 3], "label": "three numbers"},
            {"bbox_2d": [True, 2, 3, 4]},  # booleans are not numbers
            {"bbox_2d": ["1", 2, 3, 4]},
            {"label": "no box"},
            "not an object",
            {"bbox_2d": [5, 6, 7, 8], "label": 7},  # non-string label
        ]
    )
    v = parse_boxes(text).value
    assert v.coords == [[1, 2, 3, 4], [5, 6, 7, 8]] and v.labels == ("a", None)
    assert v.num_items == 7 and v.num_malformed == 5


def test_parse_boxes_json_without_any_usable_item():
    assert parse_boxes('[{"bbox_2d": "nope"}]').value.num_malformed == 1
    assert parse_boxes("[]", format="json").value.num_items == 0  # "no objects" is an answer, not a failure
    assert parse_boxes("not json at all", format="json").error == "no_boxes"


def test_parse_boxes_plain_lists():
    v = parse_boxes("The box is [10, 20.5, 30, 40] and (1,2,3,4).").value
    assert v.format == "list" and v.coords == [[10, 20.5, 30, 40], [1, 2, 3, 4]] and v.labels == (None, None)
    assert parse_boxes("[[1, 2, 3, 4], [5, 6, 7, 8]]").value.coords == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert parse_boxes("[-1.5e1, +2, .5, 3.]").value.coords == [[-15, 2, 0.5, 3]]


@pytest.mark.parametrize(
    "text",
    [
        "<|object_ref_start|>the woman<|object_ref_end|><|box_start|>(157,459),(208,622)<|box_end|><|im_end|>",
        "the woman(157,459),(208,622)",  # decoded with special tokens skipped (TRL)
        "the woman (157, 459), (208, 622)",
    ],
)
def test_parse_boxes_qwen2_vl_with_or_without_tokens(text):
    v = parse_boxes(text).value
    assert v.format == "pairs" and v.coords == [[157, 459, 208, 622]]
    # The parser never rescales: the same numbers come back whether or not box tokens are present (D4).
    assert parse_boxes(text, format="qwen2_vl").value.coords == [[157, 459, 208, 622]]


def test_parse_boxes_qwen2_vl_labels_and_many_boxes():
    text = "".join(
        f"<|object_ref_start|>cup {i}<|object_ref_end|><|box_start|>({i},{i}),({i + 5},{i + 5})<|box_end|>"
        for i in range(3)
    )
    v = parse_boxes(text).value
    assert v.labels == ("cup 0", "cup 1", "cup 2") and len(v.coords) == 3
    assert parse_boxes("nothing here", format="qwen2_vl").error == "no_boxes"


def test_parse_boxes_ignores_numbers_in_reasoning():
    text = "<think>maybe [1, 2, 3, 4]</think><answer>I don't know</answer>"
    assert parse_boxes(text).error == "no_boxes"  # D9: no stray numbers from the reasoning
    assert parse_boxes("<think>maybe [1, 2, 3, 4]").error == "unterminated_think"
    assert parse_boxes("<think>maybe [1, 2, 3, 4]", extract=False).value.coords == [[1, 2, 3, 4]]


def test_parse_boxes_cap():
    items = [{"bbox_2d": [i, i, i + 1, i + 1], "label": "x"} for i in range(50)]
    v = parse_boxes(json.dumps(items), max_boxes=10).value
    assert len(v.coords) == 10 and v.num_items == 50 and v.capped
    v = parse_boxes(" ".join(f"[{i},{i},{i},{i}]" for i in range(50)), max_boxes=10).value
    assert len(v.coords) == 10 and v.num_items == 50 and v.capped
    v = parse_boxes(" ".join(f"({i},{i}),({i},{i})" for i in range(50)), max_boxes=10).value
    assert len(v.coords) == 10 and v.num_items == 50 and v.capped and v.format == "pairs"


def test_parse_boxes_unknown_format():
    with pytest.raises(ValueError):
        parse_boxes("[1,2,3,4]", format="yaml")


# ----------------------------------------------------------------------------------------------------------------
# Adversarial inputs: never raise, bounded time, values as documented
# ----------------------------------------------------------------------------------------------------------------


def test_huge_and_non_finite_numbers():
    v = parse_boxes('[{"bbox_2d": [1, 2, 3, ' + "9" * 400 + "]}]").value  # beyond float range, still valid JSON
    assert v.coords[0][:3] == [1, 2, 3] and v.coords[0][3] == math.inf
    v = parse_boxes('[{"bbox_2d": [1, 2, 3, ' + "9" * 5000 + "]}]").value  # beyond Python's int-digit limit
    assert v.coords[0][3] == math.inf and not v.well_formed
    v = parse_boxes('[{"bbox_2d": [NaN, 2, Infinity, -Infinity]}]').value  # Python's json accepts these
    assert math.isnan(v.coords[0][0]) and v.coords[0][2] == math.inf
    assert parse_boxes("[1e999, 2, 3, 4]").value.coords[0][0] == math.inf


def test_deeply_nested_json_is_cheap():
    for text in ("[" * 60000, "[" * 30000 + "]" * 30000, '{"bbox_2d": ' * 5000, '[{"a":' * 10000 + "1" + "}]" * 10000):
        start = time.perf_counter()
        result = parse_boxes(text)
        assert time.perf_counter() - start < 1.0
        assert result.error in ("no_boxes", "too_long")


def test_ten_thousand_boxes_are_bounded():
    items = [{"bbox_2d": [i, i, i + 3, i + 3], "label": "x"} for i in range(10000)]
    text = json.dumps(items, separators=(",", ":"))
    assert parse_boxes(text, max_chars=10**6).value.num_items == 10000
    start = time.perf_counter()
    v = parse_boxes(text, max_chars=10**6).value
    assert len(v.coords) == 1000 and v.capped and time.perf_counter() - start < 1.0
    assert parse_boxes(text).error == "too_long"  # over the default 65,536-character cap


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_random_unicode_never_raises(text):
    for result in (parse_boxes(text), parse_points(text), parse_count(text), parse_text(text), extract_answer(text)):
        assert result.ok or result.error in PARSE_ERRORS
    check_answer_format(text)
    check_qwen2_vl_grounding_format(text)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
_json_value = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["bbox_2d", "label", "x"]), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_value, cut=st.integers(0, 200))
def test_random_json_never_raises(value, cut):
    text = json.dumps(value)
    for candidate in (text, text[:cut], "```json\n" + text):
        result = parse_boxes(candidate)
        assert result.ok or result.error in PARSE_ERRORS
        if result.ok:
            assert result.value.boxes.shape == (len(result.value.coords), 4)
            assert len(result.value.labels) == len(result.value.coords) <= result.value.num_items


# ----------------------------------------------------------------------------------------------------------------
# Points, counts, text
# ----------------------------------------------------------------------------------------------------------------


def test_parse_points():
    v = parse_points(
        '```json\n[{"point_2d": [5, 7], "label": "cup"}, {"point_2d": [1, 2]}, {"point_2d": [1]}]\n```'
    ).value
    assert v.coords == [[5, 7], [1, 2]] and v.labels == ("cup", None) and v.num_malformed == 1
    assert v.points.shape == (2, 2)
    assert parse_points("(3, 4) and [5.5, 6]").value.coords == [[3, 4], [5.5, 6]]
    assert parse_points('[{"point_2d": [5, 7]}, {"point_2d": [8,').value.coords == [[5, 7]]
    assert parse_points("no points").error == "no_points"
    assert parse_points("[1, 2, 3, 4]").error == "no_points"
    with pytest.raises(ValueError):
        parse_points("(1, 2)", format="qwen2_vl")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3),
        ("There are 12 apples.", 12),
        ("There are 3.", 3),
        ("007", 7),
        ("twenty-one", 21),
        ("Forty two birds", 42),
        ("I count seven.", 7),
        ("zero", 0),
        ("one hundred", 100),
        ("<think>1, 2, 3, 4 ... so 5</think><answer>5</answer>", 5),
        ("<answer>2 dogs + 1 dog = 3</answer>", 3),
        ("3 cats, yes 3", 3),
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text).value == expected


@pytest.mark.parametrize(
    "text, error",
    [
        ("no number", "no_count"),
        ("2 or 3", "ambiguous_count"),
        ("3.5", "no_count"),
        ("9" * 10, "count_too_large"),
        ("<think>there are 3", "unterminated_think"),
    ],
)
def test_parse_count_failures(text, error):
    assert parse_count(text).error == error


def test_parse_text():
    assert parse_text("<think>reading</think><answer>\n Hello  world \n</answer>").value == "Hello  world"
    assert parse_text("<answer></answer>").value == ""
    assert parse_text("  page text  ").value == "page text"
    assert parse_text("  raw  ", extract=False).value == "raw"
    assert parse_text("x" * 10, max_chars=5).error == "too_long"


# ----------------------------------------------------------------------------------------------------------------
# Format checks
# ----------------------------------------------------------------------------------------------------------------


def test_check_answer_format():
    assert check_answer_format("<think>a</think><answer>b</answer>")
    assert check_answer_format("<think>\nline 1\nline 2\n</think>\n<answer>\nb\n</answer>\n")  # D19: newlines
    assert not check_answer_format("<answer>b</answer>")
    assert check_answer_format("<answer>b</answer>", require_think=False)
    assert not check_answer_format("<think>a</think><answer>b</answer> trailing")
    assert not check_answer_format("<think>a</think>")
    assert not check_answer_format(None)


def test_check_qwen2_vl_grounding_format_is_properly_escaped():
    good = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(300,400)<|box_end|><|im_end|>"
    assert check_qwen2_vl_grounding_format(good)
    assert check_qwen2_vl_grounding_format(good.replace("<|im_end|>", "<|endoftext|>"))
    # D3: the released pattern's unescaped `|` accepted anything starting with "<"; these must all fail.
    for bad in ("<", "<|im_end|>", "<oops", "the cat(1,2),(3,4)", good.replace("(1,2)", "(1.5,2)"), good + "extra"):
        assert not check_qwen2_vl_grounding_format(bad)


def test_empty_json_list_is_zero_items_not_a_failure():
    for text in ("[]", "```json\n[]\n```", "<answer>[ ]</answer>"):
        boxes = parse_boxes(text)
        assert boxes.ok and boxes.value.num_items == 0 and len(boxes.value.coords) == 0
        points = parse_points(text)
        assert points.ok and points.value.num_items == 0


def test_malformed_first_item_does_not_hide_the_valid_box_under_a_cap():
    result = parse_boxes('[{"label": "a"}, {"bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": [1, 1, 2, 2]}]', max_boxes=1)
    assert result.ok and result.value.coords == [[0.0, 0.0, 10.0, 10.0]]
    assert result.value.num_malformed == 1 and result.value.num_items == 3 and result.value.capped
    # Only malformed items: a successful parse with no box (detection scores its format term from this).
    only_bad = parse_boxes('[{"bbox_2d": [1, 2, 3]}]')
    assert only_bad.ok and only_bad.value.coords == [] and only_bad.value.num_malformed == 1
