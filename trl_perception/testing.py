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
"""Offline tiny models of every registered family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, InternVL) for tests,
benchmarks and the CPU quickstart; `trl_perception.families` names each family's factory.

Nothing here touches the Hub. The factory writes a checkpoint directory with:

- a byte-level tokenizer (256 byte tokens, no merges) plus the Qwen special tokens and the Qwen2-VL ChatML chat
  template, left-padded as TRL requires for VLM training;
- a `Qwen2VLImageProcessor` with a small pixel budget (images become at most `max_pixels / 28**2` visual tokens);
- a randomly initialised tiny model whose image/video/vision token ids match the tokenizer.

The text head dimension is 64: vLLM's CPU attention backend rejects head dimensions below 32.

Example:

```python
>>> from transformers import AutoModelForImageTextToText, AutoProcessor
>>> from trl_perception.testing import build_tiny_model
>>> path = build_tiny_model("/tmp/tiny-qwen2.5-vl")
>>> model = AutoModelForImageTextToText.from_pretrained(path)
>>> processor = AutoProcessor.from_pretrained(path)
```
"""

from __future__ import annotations

import os
from pathlib import Path


# Special tokens in Qwen2-VL / Qwen2.5-VL order. Their ids follow the 256 byte tokens.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2-VL / Qwen2.5-VL chat template (image parts render as vision_start, image_pad, vision_end).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or ('image' in content and content['image'] is not none) "
    "or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or ('video' in content and content['video'] is not none) %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Any registered family with an offline tiny model (`trl_perception.families.ModelFamily.tiny`).
Arch = str

# Pixel budget of the tiny processors: 4 to 16 merged visual tokens per image (factor 28 for Qwen2/2.5-VL, 32 for
# Qwen3-VL / Qwen3.5).
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 16

# InternVL special tokens (transformers format), by the tokenizer attribute its processor reads them from.
INTERNVL_SPECIAL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def build_tiny_tokenizer(chat_template: str = QWEN_VL_CHAT_TEMPLATE, named_tokens: dict[str, str] | None = None):
    """
    Byte-level tokenizer with the Qwen special tokens and a chat template (no Hub). `named_tokens` adds special
    tokens reachable as attributes (`tokenizer.<name>` / `tokenizer.<name>_id`, saved with the tokenizer).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = {token: i for i, token in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    # The alphabet is a set: sort it so token ids do not depend on hash randomisation.
    byte_vocab = {token: i for i, token in enumerate(sorted(byte_vocab))}
    backend = Tokenizer(models.BPE(vocab=byte_vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    named_tokens = dict(named_tokens or {})
    special = list(QWEN_SPECIAL_TOKENS) + list(named_tokens.values())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in special if t not in ("<|im_end|>", "<|endoftext|>")],
        padding_side="left",
        truncation_side="left",
        model_max_length=32768,
        chat_template=chat_template,
        **({"extra_special_tokens": named_tokens} if named_tokens else {}),
    )
    # Add in a fixed order so ids are the same on every machine.
    tokenizer.add_special_tokens({"additional_special_tokens": special})
    return tokenizer


def _qwen_image_processors(patch_size: int, min_pixels: int, max_pixels: int, video_cls):
    from transformers import Qwen2VLImageProcessor

    # Newer transformers store the pixel budget as size={shortest_edge, longest_edge}; pass both spellings.
    budget = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(patch_size=patch_size, merge_size=2, size=size, **budget)
    video_processor = video_cls(patch_size=patch_size, merge_size=2, size=size, **budget)
    return image_processor, video_processor


def _qwen_text_config(tokenizer, hidden_size, num_hidden_layers, num_attention_heads, initializer_range, **extra):
    head_dim = hidden_size // num_attention_heads
    if head_dim < 32:
        raise ValueError(f"head_dim={head_dim} is below 32, which vLLM's CPU attention rejects.")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections.
    half = head_dim // 2
    mrope_section = [half // 2, half // 4, half - half // 2 - half // 4]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section, **extra.pop("rope", {})}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
        "initializer_range": initializer_range,
        **extra,
    }
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    return text, token_ids


def tiny_qwen2_5_vl(
    tokenizer=None,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    initializer_range: float = 0.02,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
):
    """`(config, processor)` of a tiny Qwen2.5-VL (patch 14 x merge 2, windowed vision attention)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tiny_tokenizer()
    text, token_ids = _qwen_text_config(
        tokenizer, hidden_size, num_hidden_layers, num_attention_heads, initializer_range
    )
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden_size,
        "intermediate_size": 2 * vision_hidden_size,
        "num_heads": 1,
        "out_hidden_size": hidden_size,
        "fullatt_block_indexes": [vision_depth - 1],
        "window_size": 112,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "initializer_range": initializer_range,
    }
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    image_processor, video_processor = _qwen_image_processors(14, min_pixels, max_pixels, Qwen2VLVideoProcessor)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    return config, processor


def tiny_qwen2_vl(
    tokenizer=None,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    initializer_range: float = 0.02,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
):
    """`(config, processor)` of a tiny Qwen2-VL (patch 14 x merge 2)."""
    from transformers import Qwen2VLConfig, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tiny_tokenizer()
    text, token_ids = _qwen_text_config(
        tokenizer, hidden_size, num_hidden_layers, num_attention_heads, initializer_range
    )
    vision = {
        "depth": vision_depth,
        "embed_dim": vision_hidden_size,
        "hidden_size": hidden_size,
        "num_heads": 1,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "initializer_range": initializer_range,
    }
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    image_processor, video_processor = _qwen_image_processors(14, min_pixels, max_pixels, Qwen2VLVideoProcessor)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    return config, processor


def _qwen3_vision(vision_depth, vision_hidden_size, hidden_size, initializer_range, deepstack: bool):
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden_size,
        "intermediate_size": 2 * vision_hidden_size,
        "num_heads": 1,
        "out_hidden_size": hidden_size,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        # Learned position embeddings on a 16 x 16 grid, interpolated to the image grid.
        "num_position_embeddings": 256,
        "initializer_range": initializer_range,
    }
    if deepstack:
        vision["deepstack_visual_indexes"] = [0]
    return vision


def _tiny_qwen3_processor(tokenizer, chat_template, min_pixels, max_pixels):
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor, video_processor = _qwen_image_processors(16, min_pixels, max_pixels, Qwen3VLVideoProcessor)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )


def tiny_qwen3_vl(
    tokenizer=None,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 128,
    initializer_range: float = 0.02,
    min_pixels: int = 32 * 32 * 4,
    max_pixels: int = 32 * 32 * 16,
):
    """
    `(config, processor)` of a tiny Qwen3-VL: patch 16 x merge 2, DeepStack vision features, interleaved M-RoPE, TRL's
    Qwen3-VL chat template. The vision width is the text width (128): at 64, supervised counting on the quickstart's
    shapes stayed at the image-blind loss about twice as long (0.71 vs 0.35 mean loss over steps 80-100, seed 0),
    and GRPO after the quickstart's 60-step warm start found no image signal in 150 steps.
    """
    from transformers import Qwen3VLConfig
    from trl.chat_template_utils import qwen3_vl_chat_template

    tokenizer = tokenizer or build_tiny_tokenizer(qwen3_vl_chat_template)
    head_dim = hidden_size // num_attention_heads
    text, token_ids = _qwen_text_config(
        tokenizer,
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
        initializer_range,
        head_dim=head_dim,
        rope={"mrope_interleaved": True},
    )
    vision = _qwen3_vision(vision_depth, vision_hidden_size, hidden_size, initializer_range, deepstack=True)
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    return config, _tiny_qwen3_processor(tokenizer, qwen3_vl_chat_template, min_pixels, max_pixels)


def tiny_qwen3_5(
    tokenizer=None,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    initializer_range: float = 0.02,
    min_pixels: int = 32 * 32 * 4,
    max_pixels: int = 32 * 32 * 16,
):
    """
    `(config, processor)` of a tiny Qwen3.5: the Qwen3-VL vision tower and processor, and a hybrid text model whose
    layers alternate Gated DeltaNet linear attention and full attention (transformers runs the torch fallback of the
    linear-attention kernels on CPU). Chat template: TRL's Qwen3.5 thinking template (the checkpoints' default).
    """
    from transformers import Qwen3_5Config
    from trl.chat_template_utils import qwen3_5_think_chat_template

    if num_hidden_layers < 2:
        raise ValueError("A tiny Qwen3.5 needs at least 2 layers (one linear-attention, one full-attention).")
    tokenizer = tokenizer or build_tiny_tokenizer(qwen3_5_think_chat_template)
    head_dim = hidden_size // num_attention_heads
    layer_types = ["linear_attention" if i % 2 == 0 else "full_attention" for i in range(num_hidden_layers)]
    text, token_ids = _qwen_text_config(
        tokenizer,
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
        initializer_range,
        head_dim=head_dim,
        layer_types=layer_types,
        linear_conv_kernel_dim=4,
        linear_key_head_dim=64,
        linear_value_head_dim=64,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        rope={"mrope_interleaved": True, "partial_rotary_factor": 1.0},
    )
    vision = _qwen3_vision(vision_depth, vision_hidden_size, hidden_size, initializer_range, deepstack=False)
    config = Qwen3_5Config(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    return config, _tiny_qwen3_processor(tokenizer, qwen3_5_think_chat_template, min_pixels, max_pixels)


# InternVL (transformers format) chat template: ChatML, one `<IMG_CONTEXT>` placeholder per image part, which the
# processor expands to `<img>` + image tokens + `</img>`.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or ('image' in content and content['image'] is not none) %}<IMG_CONTEXT>\n"
    "{% elif content['type'] == 'video' %}<video>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_internvl(
    tokenizer=None,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    initializer_range: float = 0.02,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    image_size: int = 56,
):
    """
    `(config, processor)` of a tiny InternVL3 in transformers format: an InternViT on one fixed `image_size` tile
    (patch 14, pixel shuffle 0.5, so `(image_size / 28)**2` image tokens), a Qwen2 language model. InternVL tiles
    instead of resizing to a pixel budget, so `min_pixels` / `max_pixels` must stay unset.
    """
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLProcessor, InternVLVideoProcessor

    if min_pixels is not None or max_pixels is not None:
        raise ValueError("InternVL takes no pixel budget (fixed-size tiles); set image_size instead.")
    if image_size % 28:
        raise ValueError(f"image_size={image_size} must be a multiple of 28 (patch 14 x pixel shuffle 2).")
    tokenizer = tokenizer or build_tiny_tokenizer(INTERNVL_CHAT_TEMPLATE, INTERNVL_SPECIAL_TOKENS)
    head_dim = hidden_size // num_attention_heads
    if head_dim < 32:
        raise ValueError(f"head_dim={head_dim} is below 32, which vLLM's CPU attention rejects.")
    text = {
        "model_type": "qwen2",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads,
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "tie_word_embeddings": False,
        "initializer_range": initializer_range,
    }
    vision = {
        "hidden_size": vision_hidden_size,
        "num_hidden_layers": vision_depth,
        "num_attention_heads": 1,
        "intermediate_size": 2 * vision_hidden_size,
        "image_size": [image_size, image_size],
        "patch_size": [14, 14],
        "initializer_range": initializer_range,
    }
    image_seq_length = (image_size // 28) ** 2
    config = InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=image_seq_length,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    image_processor = GotOcr2ImageProcessor(
        size={"height": image_size, "width": image_size}, crop_to_patches=False, min_patches=1, max_patches=1
    )
    video_processor = InternVLVideoProcessor(size={"height": image_size, "width": image_size})
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=image_seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    return config, processor


def _tiny(arch: str):
    from .families import tiny_factory

    return tiny_factory(arch)


def build_tiny_processor(arch: Arch = "qwen2_5_vl", min_pixels: int | None = None, max_pixels: int | None = None):
    """Processor (tokenizer + image/video processors) of the tiny model of family `arch`."""
    budget = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    return _tiny(arch)(**budget)[1]


def tiny_config(arch: Arch = "qwen2_5_vl", tokenizer=None, **sizes):
    """Tiny config of family `arch` whose special-token ids match its tiny tokenizer."""
    return _tiny(arch)(tokenizer, **sizes)[0]


# Size presets of `build_tiny_model` (unset keys keep the family factory's defaults). "small" is large enough that
# decoding, not vLLM's per-request overhead, dominates generation on CPU (used by benchmarks/rollouts.py).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "vision_depth": 2},
    "small": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "vision_depth": 4,
        "vision_hidden_size": 256,
    },
}


def build_tiny_model(
    path: str | os.PathLike,
    arch: Arch = "qwen2_5_vl",
    seed: int = 0,
    *,
    size: str = "tiny",
    hidden_size: int | None = None,
    num_hidden_layers: int | None = None,
    num_attention_heads: int | None = None,
    vision_depth: int | None = None,
    vision_hidden_size: int | None = None,
    initializer_range: float = 0.02,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> str:
    """Write a random tiny model of a registered family and its processor to `path`, offline.

    Args:
        path (`str` or `os.PathLike`):
            Output directory (created if missing).
        arch (`str`, *optional*, defaults to `"qwen2_5_vl"`):
            Model family with a tiny model: `"qwen2_5_vl"`, `"qwen2_vl"`, `"qwen3_vl"`, `"qwen3_5"`, `"internvl"`
            (or any family registered with a `tiny` factory).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the random weights; the same seed gives identical weights.
        size (`str`, *optional*, defaults to `"tiny"`):
            Preset of [`MODEL_SIZES`]: `"tiny"` (about 0.7 M parameters, for tests) or `"small"` (about 75 M, a
            12-layer 768-wide text model, for benchmarks where decoding must dominate the per-request overhead).
        hidden_size, num_hidden_layers, num_attention_heads, vision_depth, vision_hidden_size (`int`, *optional*):
            Override the preset; the text head dimension `hidden_size // num_attention_heads` must stay >= 32 for
            vLLM.
        initializer_range (`float`, *optional*, defaults to `0.02`):
            Std of the random weights (the Qwen default is 0.02).
        min_pixels, max_pixels (`int`):
            Pixel budget of the saved image processor (vLLM reads it from the checkpoint too); defaults to 4 to 16
            merged visual tokens per image. Not for InternVL (fixed tiles).

    Returns:
        `str`: the checkpoint directory, loadable with `AutoProcessor` / `AutoModelForImageTextToText` and vLLM.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if size not in MODEL_SIZES:
        raise ValueError(f"Unknown model size {size!r}; expected one of {sorted(MODEL_SIZES)}.")
    overrides = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "vision_depth": vision_depth,
        "vision_hidden_size": vision_hidden_size,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
    }
    sizes = {**MODEL_SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    config, processor = _tiny(arch)(initializer_range=initializer_range, **sizes)
    tokenizer = processor.tokenizer
    # Seed only the construction, without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
