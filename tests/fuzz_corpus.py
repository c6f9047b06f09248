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
"""Adversarial completions and reward variants, shared by `tests/test_fuzz.py` and `benchmarks/fuzz.py`.

Completions are built from pieces that exercise every parser path (tags, JSON, box syntaxes, numbers, Unicode that
expands or reorders under normalization), concatenated at random or repeated up to the 64 KB input cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from trl_perception.rewards import get_reward


MAX_CHARS = 65536

PIECES: tuple[str, ...] = (
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "```json\n",
    "```",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ":",
    '"',
    "\\",
    " ",
    "\n",
    '"bbox_2d"',
    '"point_2d"',
    '"label"',
    '"person"',
    '"cat"',
    "[]",
    "{}",
    "[{}]",
    '[{"foo": 1}]',
    '[{"bbox_2d": [10, 20, 30, 40], "label": "person"}]',
    '{"bbox_2d": [1, 2, 3], "label": 7}',
    '{"point_2d": [5, 7]}',
    "(12,5),(300,400)",
    "[1, 2, 3, 4]",
    "(3, 4)",
    "0",
    "1",
    "7",
    "-3",
    "2.5",
    "1e308",
    "-1e999",
    "1" * 400,
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "inf",
    "true",
    "null",
    "seven",
    "twenty-one",
    "a hundred",
    "three",
    "\u0000",
    "\ud7ff",
    "\ufeff",
    "\u200b",
    "\u00e9",
    "e\u0301",
    "\u0301\u0316",
    "\u0f73",
    "\ufdfa",
    "\u3300",
    "\ufb01",
    "\uff21",
    "\u1100\u1161\u11a8",
    "\U0001f600",
    "\u017fix",  # long s: "six" under re.IGNORECASE
    "e\u0130ght",
    "\u212a",
)

# Whole-input attacks at (or near) the cap: tag spam, number-dense text, expanding Unicode, mark runs, deep nesting.
SPAM_UNITS: tuple[str, ...] = (
    "</think><answer>",
    "<answer>",
    "<think>",
    "[1,2,3,",
    "(1,",
    "1 ",
    "one ",
    "[",
    "{",
    '{"bbox_2d": [1, 2, 3, 4], "label": "person"},',
    '{"point_2d": [1, 2]},',
    "(1,2),(3,4),",
    "[1,2,3,4]",
    "\ufdfa",
    "\u3300",
    "\u0301\u0316",
    "\u0f73",
    "e\u0301",
    "<ref>a</ref><box>[[1,2,3,4]]</box>",
    '"label": "',
    "\\u0000",
    "9",
)


def random_completion(rng: random.Random, max_pieces: int = 24) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, max_pieces)))


_SPAM_PREFIXES = ("", "<think>", "<answer>", "<think>x</think><answer>", "```json\n")
_MESSAGES: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("message", lambda text: [{"role": "assistant", "content": text}]),
    (
        "message parts",
        lambda text: [{"role": "assistant", "content": [{"type": "text", "text": text}, {"type": "image"}]}],
    ),
    ("message text None", lambda text: [{"role": "assistant", "content": [{"type": "text", "text": None}]}]),
    ("message text int", lambda text: [{"role": "assistant", "content": [{"type": "text", "text": 123}]}]),
    ("message content None", lambda text: [{"role": "assistant", "content": None}]),
    ("message no content", lambda text: [{"role": "assistant"}]),
    ("empty list", lambda text: []),
    ("None", lambda text: None),
    ("int", lambda text: 42),
)


def _spam(rng: random.Random, max_chars: int = MAX_CHARS) -> tuple[str, str]:
    unit = rng.choice(SPAM_UNITS)
    size = rng.choice((max_chars // 16, max_chars // 4, max_chars))
    prefix = rng.choice(_SPAM_PREFIXES)
    body = unit * max(1, (size - len(prefix)) // len(unit))
    return (prefix + body)[:max_chars], f"{prefix!r} + {unit!r} x {size // 1024}K"


def spam_completion(rng: random.Random, max_chars: int = MAX_CHARS) -> str:
    return _spam(rng, max_chars)[0]


def adversarial_completion_and_family(rng: random.Random, spam_rate: float = 0.05) -> tuple[Any, str]:
    """`adversarial_completion` and the family it was drawn from (`"soup"`, a message form, or the attack: prefix,
    repeated unit and size); the same draws from `rng`."""
    roll = rng.random()
    if roll < spam_rate:
        return _spam(rng)
    text = random_completion(rng)
    if roll < spam_rate + 0.05:  # conversational forms, some malformed
        family, build = rng.choice(_MESSAGES)
        return build(text), family
    return text, "soup"


def adversarial_completion(rng: random.Random, spam_rate: float = 0.05) -> Any:
    """One completion: mostly random piece soup, sometimes a cap-sized attack, sometimes a malformed message."""
    return adversarial_completion_and_family(rng, spam_rate)[0]


def ground_truth(task: str) -> dict[str, Any]:
    """Valid ground-truth columns of one row of `task` (original pixels of a 640 x 480 image)."""
    row: dict[str, Any] = {
        "task": task,
        "id": f"fuzz-{task}",
        "width": 640,
        "height": 480,
        "boxes": None,
        "labels": None,
        "category_ids": None,
        "count": None,
        "points": None,
        "text": None,
    }
    if task == "grounding":
        row["boxes"] = [[100.0, 50.0, 300.0, 400.0]]
    elif task == "counting":
        row["points"] = [[100.0, 100.0], [200.0, 150.0], [320.5, 400.0]]
        row["count"] = 3
    elif task == "detection":
        row["boxes"] = [[10.0, 20.0, 30.0, 40.0], [100.0, 100.0, 400.0, 300.0]]
        row["labels"] = ["person", "cat"]
        row["category_ids"] = [1, 17]
    elif task == "ocr":
        row["text"] = "Hello world, \u00e9t\u00e9 \ufb01ne."
    return row


TASK_OF = {
    "answer_format": "grounding",
    "box_format": "detection",
    "qwen2_vl_grounding_format": "grounding",
    "iou": "grounding",
    "iou_squared": "grounding",
    "giou": "grounding",
    "iou_threshold": "grounding",
    "grounding": "grounding",
    "count_match": "counting",
    "count_exact": "counting",
    "ocr_edit_distance": "ocr",
    "detection": "detection",
}


def reward_variants() -> list[tuple[str, Callable[..., list], str]]:
    """`(label, reward, task)` for every registered reward, its presets and its main option variants."""
    q = {"family": "qwen2_5_vl"}
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("answer_format", "answer_format", {}),
        ("answer_format/no_think", "answer_format", {"require_think": False}),
        ("box_format", "box_format", {}),
        ("box_format/labels_graded", "box_format", {"require_label": True, "graded": True}),
        ("box_format/pairs", "box_format", {"box_format": "pairs"}),
        ("box_format/ref_box", "box_format", {"box_format": "ref_box"}),
        ("qwen2_vl_grounding_format", "qwen2_vl_grounding_format", {}),
        ("iou", "iou", q),
        ("iou_squared", "iou_squared", q),
        ("giou", "giou", q),
        ("iou_threshold", "iou_threshold", q),
        ("grounding/released", "grounding", q),
        (
            "iou/reject_keep_qwen2_vl",
            "iou",
            {"family": "qwen2_vl", "multiple_boxes": "reject", "out_of_image": "keep"},
        ),
        ("iou/swap_plus_one_internvl", "iou", {"family": "internvl", "inverted": "swap", "plus_one": True}),
        ("giou/qwen3_vl", "giou", {"family": "qwen3_vl"}),
        ("count_match", "count_match", q),
        ("count_match/points_qwen2_vl", "count_match", {"family": "qwen2_vl", "prediction": "points"}),
        ("count_exact", "count_exact", {}),
        ("count_exact/answer", "count_exact", {"source": "answer"}),
        ("count_exact/internvl", "count_exact", {"family": "internvl"}),
        ("ocr_edit_distance", "ocr_edit_distance", {}),
        (
            "ocr_edit_distance/nfc_remove_lower",
            "ocr_edit_distance",
            {"unicode_form": "NFC", "whitespace": "remove", "lowercase": True},
        ),
        ("ocr_edit_distance/raw", "ocr_edit_distance", {"unicode_form": None, "whitespace": "keep"}),
        ("detection/pr1", "detection", {**q, "preset": "pr1"}),
        ("detection/paper", "detection", {**q, "preset": "paper"}),
        ("detection/vlm_r1", "detection", {**q, "preset": "vlm_r1"}),
        ("detection/greedy_lenient", "detection", {**q, "matcher": "greedy", "strict_json": False}),
        ("detection/internvl", "detection", {"family": "internvl"}),
    ]
    out = [(label, get_reward(name, **options), TASK_OF[name]) for label, name, options in specs]
    for task in ("grounding", "counting", "ocr", "detection"):
        out.append((f"perception/{task}", get_reward("perception", family="qwen2_5_vl"), task))
    return out


def value_range(reward: Any) -> tuple[float, float]:
    """The documented range of a reward (the router's: the widest of its task rewards')."""
    if hasattr(reward, "rewards"):
        ranges = [value_range(r) for r in reward.rewards.values()]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    return getattr(reward, "value_range", (0.0, float(getattr(reward, "max_reward", 1.0))))


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [row[key] for row in rows] for key in rows[0]}
