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
"""Prompt templates of Perception-R1, per task × prompt style × thinking mode × train/eval variant.

Each model family (see [`trl_perception.families`]) names its *prompt style*: the templates that ask for the answer
syntax the family writes. `build_prompt(task, family=...)` looks the style up; a new style is one
[`register_prompt_style`] call.

A template is a user-message format string plus an optional system prompt. Slots are written ``{name}`` where
``name`` is an identifier; every other brace is literal, so JSON examples such as ``{"bbox_2d": [...]}`` need no
escaping. Documented slots:

| task | slot | filled with |
|---|---|---|
| ``grounding`` | ``{question}`` | the referring expression |
| ``counting`` | ``{question}`` | the object label (e.g. ``"people"``) |
| ``detection`` | ``{categories}`` | comma-separated category names, in category-id order |
| ``ocr`` | — | |

Builders pass more slots than a template needs (e.g. ``{label}``, ``{expression}``), so user templates may use them.

Presets:

- ``"default"``: the paper's strings (Table 8) for Qwen2-VL (style ``qwen2_vl``); for Qwen2.5-VL (``qwen2_5_vl``),
  grounding and counting ask for the JSON ``bbox_2d`` format that the model family emits; Qwen3-VL and Qwen3.5
  (``qwen3_vl``) get Qwen3-VL's own grounding phrasing ("Locate … output … in JSON format"), whose coordinates are
  on the 0–1000 grid; InternVL (``internvl``) its ``<ref>…</ref><box>[[…]]</box>`` phrasing. Train and eval use the
  same prompt.
- ``"released"``: the strings of the released Perception-R1 code, including its detection train/eval prompt mismatch
  and the ``"You are a helpful assistant. "`` system prompt (trailing space), for parity runs only. They are the same
  for every style.

Thinking templates append the R1-style instruction to the no-thinking prompt and use the R1-style system prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal


Variant = Literal["train", "eval"]

PROMPT_TASKS: tuple[str, ...] = ("grounding", "counting", "ocr", "detection")
VARIANTS: tuple[str, ...] = ("train", "eval")
PRESETS: tuple[str, ...] = ("default", "released")

# Qwen2-VL / Qwen2.5-VL chat templates insert this system prompt when none is given; stating it keeps rows explicit.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# The released code's `default`/`qwen` system prompt (note the trailing space).
RELEASED_SYSTEM_PROMPT = "You are a helpful assistant. "
# DeepSeek-R1-style system prompt used by R1-V-style "thinking" training.
THINKING_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The "
    "reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think><answer> answer here </answer>"
)
THINKING_SUFFIX = " Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."

_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """A user-message format string and an optional system prompt.

    Args:
        user (`str`):
            Format string with ``{slot}`` placeholders (identifiers only; other braces are literal).
        system (`str` or `None`, *optional*):
            System prompt. `None` or `""` means no system message (the chat template's default then applies).

    Example:
    ```python
    >>> PromptTemplate("Output the bounding box of the {question} in the image.").slots
    ('question',)
    ```
    """

    user: str
    system: str | None = None

    @property
    def slots(self) -> tuple[str, ...]:
        """Slot names the user string uses, in order of first appearance."""
        return tuple(dict.fromkeys(_SLOT.findall(self.user)))

    def format_user(self, **slots: object) -> str:
        """Fill the slots of ``user``. Missing slots raise a `KeyError` naming them; extra slots are ignored."""
        missing = [name for name in self.slots if name not in slots]
        if missing:
            raise KeyError(f"Prompt template {self.user!r} needs slot(s) {missing}; got {sorted(slots)}.")
        return _SLOT.sub(lambda m: str(slots[m.group(1)]), self.user)

    def build(self, **slots: object) -> list[dict[str, str]]:
        """The conversational prompt: an optional system message and one user message, with string contents."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.format_user(**slots)})
        return messages


_JSON_BOX = '[{"bbox_2d": [x1, y1, x2, y2], "label": "{question}"}]'
_JSON_BOXES = '[{"bbox_2d": [x1, y1, x2, y2], "label": "{question}"}, ...]'
_ANY_STYLE = "*"  # presets whose strings do not depend on the style (the released code's)

# (preset, task, style, variant) -> no-thinking user string. Thinking variants are derived below.
_USER: dict[tuple[str, str, str, str], str] = {}


def register_prompt_style(
    style: str,
    templates: dict[str, str | tuple[str, str]],
    *,
    preset: str = "default",
    overwrite: bool = False,
) -> None:
    """
    Register the no-thinking user templates of a prompt style, per task: a string (train and eval alike) or a
    `(train, eval)` pair. Thinking variants are derived (the R1 suffix and system prompt). Tasks may be any name,
    so a new task needs no edit here.

    Example:

    ```python
    >>> register_prompt_style("my_style", {"grounding": "Box the {question}."}, overwrite=True)
    >>> get_prompt_template("grounding", style="my_style").user
    'Box the {question}.'

    ```
    """
    for task, template in templates.items():
        train, eval = (template, template) if isinstance(template, str) else template
        for variant, text in (("train", train), ("eval", eval)):
            key = (preset, task, style, variant)
            if key in _USER and not overwrite:
                raise ValueError(f"Prompt {key} is already registered; pass overwrite=True to replace it.")
            _USER[key] = text


def list_prompt_styles() -> list[str]:
    """Registered prompt styles (of the default preset)."""
    return list(dict.fromkeys(style for preset, _, style, _ in _USER if preset == "default"))


# Paper Table 8 (Qwen2-VL; 0-1000 box tokens, so no output format needs spelling out).
register_prompt_style(
    "qwen2_vl",
    {
        "grounding": "Output the bounding box of the {question} in the image.",
        "counting": "Output all the bounding boxes of the {question}",
        "ocr": "OCR this image.",
        "detection": "Please output bbox coordinates and names of {categories}.",
    },
)
# Qwen2.5-VL answers grounding/counting in JSON `bbox_2d` (absolute pixels of its input) when asked explicitly; the
# paper's Table 8 detection prompt (Qwen2.5-VL answers it with a JSON `bbox_2d` list).
register_prompt_style(
    "qwen2_5_vl",
    {
        "grounding": f"Output the bounding box of the {{question}} in the image in JSON format, as {_JSON_BOX}.",
        "counting": f"Output all the bounding boxes of the {{question}} in the image in JSON format, as {_JSON_BOXES}.",
        "ocr": "OCR this image.",
        "detection": "Please output bbox coordinates and names of {categories}.",
    },
)
# Qwen3-VL / Qwen3.5: the phrasing of Qwen3-VL's grounding cookbook; the model writes `bbox_2d` on its 0-1000 grid.
register_prompt_style(
    "qwen3_vl",
    {
        "grounding": f"Locate the {{question}} in the image and output its bbox coordinates in JSON format, as {_JSON_BOX}.",
        "counting": f"Locate every {{question}} in the image and output all bbox coordinates in JSON format, as {_JSON_BOXES}.",
        "ocr": "OCR this image.",
        "detection": "Locate every instance that belongs to the following categories: {categories}. "
        'Report bbox coordinates in JSON format, as [{"bbox_2d": [x1, y1, x2, y2], "label": "category"}, ...].',
    },
)
# InternVL3: its grounding phrasing; boxes come back as <ref>label</ref><box>[[x1, y1, x2, y2]]</box> on 0-1000.
register_prompt_style(
    "internvl",
    {
        "grounding": "Please provide the bounding box coordinate of the region this sentence describes: <ref>{question}</ref>",
        "counting": "Please detect every <ref>{question}</ref> in the image and output each bounding box as "
        "<ref>{question}</ref><box>[[x1, y1, x2, y2], ...]</box>.",
        "ocr": "OCR this image.",
        "detection": "Please detect the following categories in the image: {categories}. Output each category as "
        "<ref>category</ref><box>[[x1, y1, x2, y2], ...]</box>.",
    },
)

# Released code: the same strings for every family; as the paper except detection eval (a different prompt) and OCR
# eval (literal "<image>\n").
register_prompt_style(
    _ANY_STYLE,
    {
        "grounding": "Output the bounding box of the {question} in the image.",
        "counting": "Output all the bounding boxes of the {question}",
        "ocr": ("OCR this image.", "<image>\nOCR this image: "),
        "detection": (
            "Please output bbox coordinates and names of {categories}.",
            "Locate every item from the category list in the image and output the coordinates in JSON format. "
            "The category set includes {categories}.",
        ),
    },
    preset="released",
)


def get_prompt_template(
    task: str,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    variant: str = "train",
    preset: str = "default",
    *,
    style: str | None = None,
) -> PromptTemplate:
    """Return the registered template for a task, model family (or prompt `style`), thinking mode, variant, preset.

    Example:
    ```python
    >>> get_prompt_template("counting", family="qwen2_vl").user
    'Output all the bounding boxes of the {question}'
    >>> get_prompt_template("detection", variant="eval", preset="released").user[:20]
    'Locate every item fr'
    ```
    """
    from .families import get_family

    if style is None:
        style = get_family(family).prompt_style
    _check("variant", variant, VARIANTS)
    _check("preset", preset, PRESETS)
    user = _USER.get((preset, task, style, variant)) or _USER.get((preset, task, _ANY_STYLE, variant))
    if user is None:
        tasks = sorted({t for p, t, st, _ in _USER if p == preset and st in (style, _ANY_STYLE)})
        raise ValueError(
            f"Unknown prompt task {task!r}: no {preset!r} prompt for it in prompt style {style!r} (tasks with one: {tasks}). Register "
            "it with trl_perception.prompts.register_prompt_style, or pass `template=`."
        )
    if thinking:
        return PromptTemplate(user + THINKING_SUFFIX, THINKING_SYSTEM_PROMPT)
    return PromptTemplate(user, RELEASED_SYSTEM_PROMPT if preset == "released" else DEFAULT_SYSTEM_PROMPT)


def build_prompt(
    task: str,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    *,
    variant: str = "train",
    preset: str = "default",
    template: str | PromptTemplate | None = None,
    system_prompt: str | None = None,
    **slots: object,
) -> list[dict[str, str]]:
    """Build the conversational prompt (string contents) for one example.

    TRL's GRPO trainer inserts the image part before the first user text, so no image placeholder is added here.

    Args:
        task (`str`):
            One of ``"grounding"``, ``"counting"``, ``"ocr"``, ``"detection"``.
        family (`str`, *optional*, defaults to `"qwen2_5_vl"`):
            A registered model family (`trl_perception.families.list_families()`); its prompt style selects the
            output format the prompt asks for.
        thinking (`bool`, *optional*, defaults to `False`):
            Use the thinking (``<think>``/``<answer>``) variant.
        variant (`str`, *optional*, defaults to `"train"`):
            ``"train"`` or ``"eval"`` (they differ only in the ``"released"`` preset).
        preset (`str`, *optional*, defaults to `"default"`):
            ``"default"`` or ``"released"``.
        template (`str` or `PromptTemplate`, *optional*):
            User override. A string replaces the user text (the preset's system prompt is kept); a `PromptTemplate`
            replaces both.
        system_prompt (`str`, *optional*):
            Override of the system prompt; ``""`` removes the system message.
        **slots:
            Slot values, e.g. ``question="the red car"`` or ``categories="person, dog"``.

    Example:
    ```python
    >>> build_prompt("grounding", family="qwen2_vl", question="the man on the left")
    [{'role': 'system', 'content': 'You are a helpful assistant.'}, {'role': 'user', 'content': 'Output the bounding box of the the man on the left in the image.'}]
    >>> build_prompt("ocr", template="Read all text.", system_prompt="")
    [{'role': 'user', 'content': 'Read all text.'}]
    ```
    """
    base = get_prompt_template(task, family=family, thinking=thinking, variant=variant, preset=preset)
    if isinstance(template, PromptTemplate):
        base = template
    elif template is not None:
        base = replace(base, user=template)
    if system_prompt is not None:
        base = replace(base, system=system_prompt or None)
    return base.build(**slots)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown prompt {name} {value!r}; expected one of {list(allowed)}.")


__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "PRESETS",
    "PROMPT_TASKS",
    "RELEASED_SYSTEM_PROMPT",
    "THINKING_SUFFIX",
    "THINKING_SYSTEM_PROMPT",
    "VARIANTS",
    "PromptTemplate",
    "build_prompt",
    "get_prompt_template",
    "list_prompt_styles",
    "register_prompt_style",
]
