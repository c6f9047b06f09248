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
"""Model families: everything trl-perception knows about a vision-language model family, in one table.

A *family* says how a model writes and reads perception answers. Every other module looks it up here by name, so a
new family is one [`register_family`] call, with no edit anywhere else:

| field | used by |
|---|---|
| `box_frame`, `point_frame` | rewards (ground truth → model frame), evaluation (predictions → original pixels) |
| `box_syntax` | the parser ([`trl_perception.parsing.parse_boxes`]): which answer syntax the model writes |
| `prompt_style` | [`trl_perception.prompts`]: which prompt templates ask for that syntax |
| `patch_size`, `merge_size`, `min_pixels`, `max_pixels` | `smart_resize` when no processor is at hand, pixel-budget keywords of the processor |
| `vision_tokens` | the trainer and vLLM backend: special tokens the policy must never sample |
| `vision_tower`, `vision_projector`, `language_model` | the trainer: `freeze_vision_tower` / `freeze_vision_projector`, LoRA's default targets |
| `model_types` | recognising the family of a checkpoint (`config.model_type`), i.e. `family="auto"` |
| `tiny` | the offline tiny-model factory ([`trl_perception.testing`]) |

Registered families:

| family | checkpoints | boxes | frame |
|---|---|---|---|
| `qwen2_vl` | Qwen2-VL (Perception-R1's grounding, counting, OCR models) | `(x1,y1),(x2,y2)` box tokens | `grid_1000` |
| `qwen2_5_vl` | Qwen2.5-VL (Perception-R1's detection model) | JSON `bbox_2d` | `resized` (model-input pixels) |
| `qwen3_vl` | Qwen3-VL (dense and MoE) | JSON `bbox_2d` | `grid_1000` |
| `qwen3_5` | Qwen3.5 (natively multimodal, dense and MoE) | JSON `bbox_2d` | `grid_1000` |
| `internvl` | InternVL3 / 3.5 in transformers format (`*-hf`) | `<ref>label</ref><box>[[x1,y1,x2,y2]]</box>` | `grid_1000` |

Example:

```python
>>> from trl_perception.families import get_family, resolve_family
>>> get_family("qwen3_vl").box_frame
'grid_1000'
>>> get_family("qwen2_5_vl").factor
28
>>> resolve_family("auto", model_type="qwen3_vl_moe").name
'qwen3_vl'

```
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


# The vision special tokens of the Qwen-VL vocabularies (Qwen2-VL through Qwen3.5); the policy must never sample one.
QWEN_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
INTERNVL_VISION_TOKENS = ("<IMG_CONTEXT>", "<img>", "</img>")

# A recipe or a reward option that is not set: the family's own value then applies.
AUTO = "auto"

# The attention and MLP projections of the Qwen2-style decoder layers every family's language model uses.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelFamily:
    """
    What trl-perception needs to know about one model family (see the module docstring for who reads what).

    Args:
        name (`str`):
            Registry name (lower case, e.g. `"qwen3_vl"`). Accepted wherever a `family=` is, and as a frame name
            (meaning the family's box frame).
        model_types (`tuple[str, ...]`):
            `config.model_type` values of the family's checkpoints, for `family="auto"`.
        box_frame (`str`):
            Coordinate frame of the boxes the model writes: a frame registered in [`trl_perception.geometry`]
            (`"grid_1000"`, `"resized"`, `"normalized"`, `"original"`, or one registered with `register_frame`).
        box_syntax (`str`):
            Answer syntax of its boxes: a syntax registered in [`trl_perception.parsing`] (`"json"`, `"pairs"`,
            `"ref_box"`, `"list"`, or one registered with `register_box_syntax`). `"auto"` parsing tries it first.
        prompt_style (`str`):
            Key of the family's prompt templates in [`trl_perception.prompts`] (`register_prompt_style`).
        patch_size (`int`):
            Vision patch size in pixels.
        merge_size (`int`, *optional*, defaults to `1`):
            Spatial merge of patches into one visual token (2 for Qwen-VL): the resize factor is
            `patch_size * merge_size`.
        min_pixels, max_pixels (`int`):
            The checkpoints' default pixel budget (their `preprocessor_config.json`).
        point_frame (`str`, *optional*):
            Frame of the points it writes; defaults to `box_frame`.
        point_syntax (`str`, *optional*, defaults to `"json"`):
            `parse_points` format of its points.
        vision_tokens (`tuple[str, ...]`):
            Special tokens of image/video placeholders, banned during generation.
        image_wrapper_tokens (`tuple[str, str]` or `None`):
            Tokens the processor writes around each run of image tokens (InternVL's `<img>` / `</img>`); vLLM adds
            them itself when it expands an image placeholder, so the trainer strips them from the prompts it sends.
        pixel_budget_keys (`tuple[str, str]` or `None`):
            Processor keyword names of the pixel budget (`("min_pixels", "max_pixels")` for Qwen); `None` if the
            processor takes no pixel budget (fixed-size tiles).
        vision_tower (`str`, *optional*, defaults to `"model.visual"`):
            Module path (in `model.named_modules()` of the `...ForConditionalGeneration` model) of the vision encoder,
            which `freeze_vision_tower` freezes. It may contain the projector (Qwen-VL's `merger`); the projector's
            parameters are then left to `freeze_vision_projector`.
        vision_projector (`tuple[str, ...]`, *optional*, defaults to `("model.visual.merger",)`):
            Module paths of the vision-to-language projector(s) (Qwen3-VL adds its DeepStack mergers), which
            `freeze_vision_projector` freezes.
        language_model (`str`, *optional*, defaults to `"model.language_model"`):
            Module path of the language model: LoRA's default targets are its linear layers only.
        lora_target_modules (`tuple[str, ...]`):
            Names of the language model's linear layers that LoRA targets by default ([`ModelFamily.lora_targets`]).
        tiny (`str`, *optional*):
            `"module:function"` building the family's offline tiny model config and processor (tests, quickstart).
        description (`str`):
            One line for listings and docs.
    """

    name: str
    model_types: tuple[str, ...]
    box_frame: str
    box_syntax: str
    prompt_style: str
    patch_size: int
    merge_size: int = 1
    min_pixels: int = 3136
    max_pixels: int = 12845056
    point_frame: str | None = None
    point_syntax: str = "json"
    vision_tokens: tuple[str, ...] = QWEN_VISION_TOKENS
    image_wrapper_tokens: tuple[str, str] | None = None
    pixel_budget_keys: tuple[str, str] | None = ("min_pixels", "max_pixels")
    vision_tower: str = "model.visual"
    vision_projector: tuple[str, ...] = ("model.visual.merger",)
    language_model: str = "model.language_model"
    lora_target_modules: tuple[str, ...] = LORA_TARGET_MODULES
    tiny: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not self.name or self.name != self.name.lower() or self.name == AUTO:
            raise ValueError(
                f"A family name must be a non-empty lower-case identifier other than 'auto', got {self.name!r}."
            )
        if self.patch_size <= 0 or self.merge_size <= 0 or not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"Family {self.name!r}: invalid geometry patch_size={self.patch_size}, merge_size={self.merge_size}, "
                f"min_pixels={self.min_pixels}, max_pixels={self.max_pixels}."
            )

    @property
    def factor(self) -> int:
        """Resize factor: both sides of the model input are multiples of it (`patch_size * merge_size`)."""
        return self.patch_size * self.merge_size

    @property
    def points_frame(self) -> str:
        """Frame of the points the model writes."""
        return self.point_frame or self.box_frame

    def lora_targets(self) -> str:
        """
        LoRA's default `target_modules`: a regular expression (PEFT full-matches it against module names) for the
        family's `lora_target_modules` inside its language model only. A bare list of names would also match the
        vision tower's layers of the same name (InternVL's encoder has `q_proj`/`k_proj`/`v_proj`).

        Example:

        ```python
        >>> import re
        >>> targets = get_family("internvl").lora_targets()
        >>> bool(re.fullmatch(targets, "model.language_model.layers.0.self_attn.q_proj"))
        True
        >>> bool(re.fullmatch(targets, "model.vision_tower.encoder.layer.0.attention.q_proj"))
        False

        ```
        """
        import re

        names = "|".join(re.escape(name) for name in self.lora_target_modules)
        return rf"{re.escape(self.language_model)}\..*\.({names})"

    def processor_kwargs(self, min_pixels: int | None = None, max_pixels: int | None = None) -> dict[str, Any]:
        """`AutoProcessor.from_pretrained` keywords that set a pixel budget (empty when none is given)."""
        if self.pixel_budget_keys is None:
            if min_pixels is not None or max_pixels is not None:
                raise ValueError(
                    f"Family {self.name!r} takes no pixel budget (its processor uses fixed-size tiles); "
                    "drop min_pixels/max_pixels."
                )
            return {}
        kwargs: dict[str, Any] = {}
        low_key, high_key = self.pixel_budget_keys
        if min_pixels is not None:
            kwargs[low_key] = int(min_pixels)
        if max_pixels is not None:
            kwargs[high_key] = int(max_pixels)
        return kwargs


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------

_FAMILIES: dict[str, ModelFamily] = {}
_MODEL_TYPES: dict[str, str] = {}

_HOW_TO_REGISTER = (
    "Register one with `trl_perception.families.register_family(ModelFamily(...))` (see docs/families.md)."
)


def register_family(family: ModelFamily, *, overwrite: bool = False) -> ModelFamily:
    """
    Add `family` to the registry. Its frame and box syntax must already be registered
    ([`trl_perception.geometry.register_frame`], [`trl_perception.parsing.register_box_syntax`]); its prompt style
    is looked up when a prompt is built.

    Raises `ValueError` if the name or one of its model types is taken (unless `overwrite=True`).
    """
    from . import geometry, parsing  # the family layer sits on top of frames and syntaxes

    if not overwrite and family.name in _FAMILIES:
        raise ValueError(f"Model family {family.name!r} is already registered; pass overwrite=True to replace it.")
    for frame in {family.box_frame, family.points_frame}:
        if frame not in geometry.list_frames():
            raise ValueError(
                f"Family {family.name!r}: unknown frame {frame!r}; registered frames are {geometry.list_frames()} "
                "(add one with trl_perception.geometry.register_frame)."
            )
    parsing.get_box_syntax(family.box_syntax)  # raises with the registered syntaxes
    for model_type in family.model_types:
        owner = _MODEL_TYPES.get(model_type)
        if owner is not None and owner != family.name and not overwrite:
            raise ValueError(f"Model type {model_type!r} already belongs to family {owner!r}.")
    old = _FAMILIES.get(family.name)
    if old is not None:
        for model_type in old.model_types:
            _MODEL_TYPES.pop(model_type, None)
    _FAMILIES[family.name] = family
    for model_type in family.model_types:
        _MODEL_TYPES[model_type] = family.name
    return family


def unregister_family(name: str) -> None:
    """Remove a family (tests, experiments)."""
    family = _FAMILIES.pop(name, None)
    if family is not None:
        for model_type in family.model_types:
            if _MODEL_TYPES.get(model_type) == name:
                del _MODEL_TYPES[model_type]


def list_families() -> list[str]:
    """Names of the registered families, in registration order."""
    return list(_FAMILIES)


def get_family(family: str | ModelFamily) -> ModelFamily:
    """
    The registered family called `family` (a [`ModelFamily`] is returned as is).

    Raises a `ValueError` listing the registered families for an unknown name, and for `"auto"` (resolve it with
    [`resolve_family`] from a model).
    """
    if isinstance(family, ModelFamily):
        return family
    spec = _FAMILIES.get(family) if isinstance(family, str) else None
    if spec is not None:
        return spec
    if family == AUTO:
        raise ValueError(
            "family='auto' needs a model to resolve from (resolve_family(model=...)); here no model is at hand, so "
            f"name the family explicitly: one of {list_families()}."
        )
    raise ValueError(f"Unknown model family {family!r}; registered families are {list_families()}. {_HOW_TO_REGISTER}")


def family_for_model_type(model_type: str) -> ModelFamily:
    """The family whose checkpoints have `config.model_type == model_type`."""
    name = _MODEL_TYPES.get(model_type)
    if name is None:
        known = ", ".join(f"{t} ({n})" for t, n in _MODEL_TYPES.items())
        raise ValueError(
            f"No registered model family recognises model_type {model_type!r} (known: {known}). Pass the family "
            f"explicitly (family=...) if it writes the same answers as one of {list_families()}, or register it: "
            f"{_HOW_TO_REGISTER}"
        )
    return _FAMILIES[name]


def model_type_of(model: Any) -> str:
    """
    `config.model_type` of a model, config, processor-free checkpoint directory or Hub id.

    A directory is read from its `config.json` (no weights are loaded); anything else goes through
    `transformers.AutoConfig`.
    """
    if isinstance(model, (str, os.PathLike)):
        config_path = os.path.join(os.fspath(model), "config.json")
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        else:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(os.fspath(model)).model_type
    else:
        config = getattr(model, "config", model)
        model_type = getattr(config, "model_type", None)
    if not model_type:
        raise ValueError(f"Cannot read config.model_type from {model!r}; pass the family explicitly.")
    return str(model_type)


def resolve_family(
    family: str | ModelFamily | None = AUTO, model: Any = None, model_type: str | None = None
) -> ModelFamily:
    """
    `family` as a [`ModelFamily`]; `"auto"` (or `None`) recognises it from `model` (a model, config or checkpoint
    path) or from `model_type`.

    Example:

    ```python
    >>> resolve_family("qwen2_vl").box_frame
    'grid_1000'
    >>> resolve_family("auto", model_type="qwen2_5_vl").box_frame
    'resized'

    ```
    """
    if family not in (None, AUTO):
        return get_family(family)
    if model_type is None:
        if model is None:
            get_family(AUTO)  # raises the explanation
        model_type = model_type_of(model)
    return family_for_model_type(model_type)


def resolve_frame(frame: str | None, family: str | ModelFamily | None = None) -> str:
    """
    Canonical frame name: `frame` when given (a frame name, or a family name meaning that family's box frame),
    else the box frame of `family`.
    """
    from .geometry import get_frame

    if frame not in (None, AUTO):
        return get_frame(frame).name
    if family in (None, AUTO):
        raise ValueError("Neither a frame nor a family is given: name one (frame=... or family=...).")
    return get_family(family).box_frame


# ----------------------------------------------------------------------------------------------------------------
# Processors (shared by training and evaluation)
# ----------------------------------------------------------------------------------------------------------------


def load_processor(
    model: str | os.PathLike,
    family: str | ModelFamily | None = AUTO,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    **kwargs: Any,
):
    """
    `AutoProcessor.from_pretrained(model)` with the family's pixel-budget keywords and left padding (which GRPO and
    batched generation need). `min_pixels` / `max_pixels` default to the checkpoint's own budget.
    """
    from transformers import AutoProcessor

    budget = {}
    if min_pixels is not None or max_pixels is not None:  # only then does the family's keyword spelling matter
        budget = resolve_family(family, model=model).processor_kwargs(min_pixels, max_pixels)
    processor = AutoProcessor.from_pretrained(os.fspath(model), **budget, **kwargs)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    return processor


def processor_pixel_budget(processor) -> tuple[int, int, int]:
    """`(factor, min_pixels, max_pixels)` an image processor resizes with (`factor = patch_size * merge_size`)."""
    ip = getattr(processor, "image_processor", processor)
    size = getattr(ip, "size", None) or {}
    get = size.get if hasattr(size, "get") else lambda k, d=None: getattr(size, k, d)
    min_pixels = getattr(ip, "min_pixels", None) or get("shortest_edge") or get("min_pixels")
    max_pixels = getattr(ip, "max_pixels", None) or get("longest_edge") or get("max_pixels")
    patch_size = getattr(ip, "patch_size", None)
    if min_pixels is None or max_pixels is None or patch_size is None:
        raise ValueError(f"Cannot read the pixel budget of {type(ip).__name__} (size={size!r}).")
    return int(patch_size) * int(getattr(ip, "merge_size", 1) or 1), int(min_pixels), int(max_pixels)


def model_input_size(processor, width: int, height: int) -> tuple[int, int]:
    """`(W_r, H_r)` a smart-resizing processor turns a `width` x `height` image into (a fixed-tile processor: its
    tile)."""
    from .geometry import smart_resize

    ip = getattr(processor, "image_processor", processor)
    size = getattr(ip, "size", None)
    tile = (getattr(size, "width", None), getattr(size, "height", None)) if size is not None else (None, None)
    if getattr(ip, "patch_size", None) is None and None not in tile:
        return int(tile[0]), int(tile[1])  # a fixed-tile processor (InternVL): every image becomes the tile
    factor, min_pixels, max_pixels = processor_pixel_budget(processor)
    resized_height, resized_width = smart_resize(height, width, factor, min_pixels, max_pixels)
    return resized_width, resized_height


def vision_token_ids(tokenizer, family: str | ModelFamily | None = None) -> dict[str, int]:
    """
    Ids of the vision special tokens that exist in `tokenizer`, by token string: those of `family`, or of every
    registered family when `None` (a token a vocabulary does not have is skipped).
    """
    if family is None:
        tokens = dict.fromkeys(t for spec in _FAMILIES.values() for t in spec.vision_tokens)
    else:
        tokens = dict.fromkeys(get_family(family).vision_tokens)
    ids = {}
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else None
    for token in tokens:
        token_id = vocab.get(token) if vocab is not None else tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids[token] = int(token_id)
    return ids


VISION_PARTS = ("tower", "projector")


def vision_parameters(model: Any, family: str | ModelFamily, part: str) -> dict[str, Any]:
    """
    The parameters of one part of `model`'s vision side, by name: `part="tower"` is the vision encoder
    (`family.vision_tower`) without the projector, `part="projector"` the vision-to-language projector(s)
    (`family.vision_projector`). `model` is the `...ForConditionalGeneration` model, or a PEFT model wrapping one
    (its base model is searched; LoRA weights inside the part count as its parameters).

    Raises a `ValueError` naming the family's module path and the model's top-level modules when the model has no
    such module (a fine-tune with another layout: register a family with its paths, see docs/families.md).

    Example:

    ```python
    >>> from trl_perception.testing import build_tiny_model
    >>> from transformers import AutoModelForImageTextToText
    >>> model = AutoModelForImageTextToText.from_pretrained(build_tiny_model("tiny-qwen3", arch="qwen3_vl"))
    >>> sorted({name.split(".")[2] for name in vision_parameters(model, "qwen3_vl", "projector")})
    ['deepstack_merger_list', 'merger']
    >>> any("merger" in name for name in vision_parameters(model, "qwen3_vl", "tower"))
    False

    ```
    """
    if part not in VISION_PARTS:
        raise ValueError(f"Unknown vision part {part!r}; one of {VISION_PARTS}.")
    spec = get_family(family)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    modules = dict(base.named_modules())
    paths = (spec.vision_tower,) if part == "tower" else spec.vision_projector
    for path in paths:
        if path not in modules:
            top = [name for name in modules if name and name.count(".") <= 1]
            field_name = "vision_tower" if part == "tower" else "vision_projector"
            raise ValueError(
                f"Family {spec.name!r} locates the vision {part} at {path!r} (`ModelFamily.{field_name}`), but "
                f"{type(base).__name__} has no such module; its top-level modules are {top}. Check `model_family`, "
                "or register a family with this model's module paths (docs/families.md)."
            )
    projector = tuple(f"{path}." for path in spec.vision_projector)
    params = {}
    for path in paths:
        for name, param in modules[path].named_parameters(prefix=path):
            if part == "tower" and name.startswith(projector):
                continue  # Qwen-VL's merger sits inside the vision tower: it is the projector's
            params[name] = param
    return params


def tiny_factory(family: str | ModelFamily) -> Callable[..., Any]:
    """The family's offline tiny-model factory (`ModelFamily.tiny`), imported."""
    import importlib

    spec = get_family(family)
    if spec.tiny is None:
        families = [name for name, f in _FAMILIES.items() if f.tiny]
        raise ValueError(f"Family {spec.name!r} has no offline tiny model; families with one: {families}.")
    module, _, function = spec.tiny.partition(":")
    return getattr(importlib.import_module(module), function)


# ----------------------------------------------------------------------------------------------------------------
# Built-in families
# ----------------------------------------------------------------------------------------------------------------

register_family(
    ModelFamily(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        box_frame="grid_1000",
        box_syntax="pairs",
        prompt_style="qwen2_vl",
        patch_size=14,
        merge_size=2,
        min_pixels=3136,
        max_pixels=12845056,
        point_syntax="list",
        tiny="trl_perception.testing:tiny_qwen2_vl",
        description="Qwen2-VL: <|box_start|>(x1,y1),(x2,y2)<|box_end|> on a 0-1000 grid",
    )
)
register_family(
    ModelFamily(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        box_frame="resized",
        box_syntax="json",
        prompt_style="qwen2_5_vl",
        patch_size=14,
        merge_size=2,
        min_pixels=3136,
        max_pixels=12845056,
        tiny="trl_perception.testing:tiny_qwen2_5_vl",
        description='Qwen2.5-VL: JSON [{"bbox_2d": [x1, y1, x2, y2]}] in pixels of the resized model input',
    )
)
register_family(
    ModelFamily(
        name="qwen3_vl",
        model_types=("qwen3_vl", "qwen3_vl_moe"),
        box_frame="grid_1000",
        box_syntax="json",
        prompt_style="qwen3_vl",
        patch_size=16,
        merge_size=2,
        min_pixels=65536,
        max_pixels=16777216,
        # DeepStack: besides the final merger, one merger per tapped encoder layer feeds the language model.
        vision_projector=("model.visual.merger", "model.visual.deepstack_merger_list"),
        tiny="trl_perception.testing:tiny_qwen3_vl",
        description='Qwen3-VL: JSON [{"bbox_2d": [x1, y1, x2, y2]}] on a 0-1000 relative grid',
    )
)
register_family(
    ModelFamily(
        name="qwen3_5",
        model_types=("qwen3_5", "qwen3_5_moe"),
        box_frame="grid_1000",
        box_syntax="json",
        prompt_style="qwen3_vl",
        patch_size=16,
        merge_size=2,
        min_pixels=65536,
        max_pixels=16777216,
        # Hybrid layers: the Gated DeltaNet (linear attention) projections too; its small `in_proj_a`/`in_proj_b`
        # gates stay as they are.
        lora_target_modules=(*LORA_TARGET_MODULES, "in_proj_qkv", "in_proj_z", "out_proj"),
        tiny="trl_perception.testing:tiny_qwen3_5",
        description="Qwen3.5 (natively multimodal, hybrid linear attention): as Qwen3-VL, 0-1000 JSON boxes",
    )
)
register_family(
    ModelFamily(
        name="internvl",
        model_types=("internvl",),
        box_frame="grid_1000",
        box_syntax="ref_box",
        prompt_style="internvl",
        patch_size=14,
        merge_size=2,
        min_pixels=448 * 448,
        max_pixels=448 * 448,
        point_syntax="list",
        vision_tokens=INTERNVL_VISION_TOKENS,
        image_wrapper_tokens=("<img>", "</img>"),
        pixel_budget_keys=None,
        vision_tower="model.vision_tower",
        vision_projector=("model.multi_modal_projector",),
        tiny="trl_perception.testing:tiny_internvl",
        description="InternVL3 (transformers format): <ref>label</ref><box>[[x1, y1, x2, y2]]</box> on a 0-1000 grid",
    )
)


__all__ = [
    "AUTO",
    "ModelFamily",
    "family_for_model_type",
    "get_family",
    "list_families",
    "load_processor",
    "model_input_size",
    "model_type_of",
    "processor_pixel_budget",
    "register_family",
    "resolve_family",
    "resolve_frame",
    "tiny_factory",
    "unregister_family",
    "vision_parameters",
    "vision_token_ids",
]
