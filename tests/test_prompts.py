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
import json

import pytest

from trl_perception.families import list_families
from trl_perception.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    PRESETS,
    PROMPT_TASKS,
    RELEASED_SYSTEM_PROMPT,
    THINKING_SYSTEM_PROMPT,
    PromptTemplate,
    build_prompt,
    get_prompt_template,
)


SLOTS = {"question": "the red mug", "categories": "person, car, toothbrush"}


def test_paper_strings_qwen2_vl():
    # Paper Table 8 / released code strings, verbatim.
    assert build_prompt("grounding", family="qwen2_vl", question="man in red")[-1]["content"] == (
        "Output the bounding box of the man in red in the image."
    )
    assert build_prompt("counting", family="qwen2_vl", question="people")[-1]["content"] == (
        "Output all the bounding boxes of the people"
    )
    assert build_prompt("ocr", family="qwen2_vl")[-1]["content"] == "OCR this image."
    detection = build_prompt("detection", family="qwen2_5_vl", categories="person, bicycle")
    assert detection[-1]["content"] == "Please output bbox coordinates and names of person, bicycle."


@pytest.mark.parametrize("task", ["grounding", "counting"])
def test_qwen2_5_vl_asks_for_json_bbox_2d(task):
    content = build_prompt(task, family="qwen2_5_vl", question="green apples")[-1]["content"]
    assert '"bbox_2d"' in content and "JSON" in content
    assert "green apples" in content
    assert "{" in content  # literal JSON braces survive formatting
    assert "{question}" not in content


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("family", list_families())
@pytest.mark.parametrize("task", PROMPT_TASKS)
@pytest.mark.parametrize("thinking", [False, True])
def test_every_combination_builds_string_messages(task, family, preset, thinking):
    for variant in ("train", "eval"):
        messages = build_prompt(task, family=family, thinking=thinking, variant=variant, preset=preset, **SLOTS)
        assert [m["role"] for m in messages] == ["system", "user"]
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)
        assert "{" not in messages[-1]["content"].replace('{"bbox_2d"', "")
        json.dumps(messages)  # Arrow/JSON-serializable
        if thinking:
            assert messages[0]["content"] == THINKING_SYSTEM_PROMPT
            assert "<think>" in messages[-1]["content"] and "<answer>" in messages[-1]["content"]
        else:
            assert "<think>" not in messages[-1]["content"]


def test_train_eval_same_by_default_and_mismatch_only_in_released():
    for task in PROMPT_TASKS:
        for family in list_families():
            train = build_prompt(task, family=family, variant="train", **SLOTS)
            assert build_prompt(task, family=family, variant="eval", **SLOTS) == train
    released_train = build_prompt("detection", variant="train", preset="released", **SLOTS)
    released_eval = build_prompt("detection", variant="eval", preset="released", **SLOTS)
    assert released_train != released_eval
    assert released_eval[-1]["content"].startswith("Locate every item from the category list")
    assert released_eval[-1]["content"].endswith("The category set includes person, car, toothbrush.")
    assert released_train[0]["content"] == RELEASED_SYSTEM_PROMPT == "You are a helpful assistant. "


def test_default_system_prompt():
    assert build_prompt("ocr")[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def test_user_overrides():
    messages = build_prompt("grounding", template="Find {question} (as {label}).", question="a cat", label="cat")
    assert messages[-1]["content"] == "Find a cat (as cat)."
    assert messages[0]["content"] == DEFAULT_SYSTEM_PROMPT
    assert build_prompt("grounding", question="x", system_prompt="")[0]["role"] == "user"
    assert build_prompt("grounding", question="x", system_prompt="Be brief.")[0]["content"] == "Be brief."
    custom = PromptTemplate('Return {"boxes": ...} for {question}', system=None)
    assert build_prompt("grounding", template=custom, question="dogs") == [
        {"role": "user", "content": 'Return {"boxes": ...} for dogs'}
    ]


def test_missing_slot_names_the_slot():
    with pytest.raises(KeyError, match="question"):
        build_prompt("grounding")
    with pytest.raises(KeyError, match="categories"):
        build_prompt("detection", question="unused")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "segmentation"}, "Unknown prompt task"),
        ({"task": "ocr", "family": "qwen3"}, r"Unknown model family 'qwen3'; registered families are \[.*'qwen3_vl'"),
        ({"task": "ocr", "variant": "test"}, "Unknown prompt"),
    ],
)
def test_unknown_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_prompt_template(**kwargs)


def test_template_slots_ignore_json_braces():
    template = get_prompt_template("counting", family="qwen2_5_vl")
    assert template.slots == ("question",)
    assert template.format_user(question="birds").count("birds") == 2  # instruction + JSON label example
