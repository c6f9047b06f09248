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
"""Offline tiny Qwen2-VL / Qwen2.5-VL models for tests, benchmarks and the CPU quickstart.

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
from typing import Literal


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

Arch = Literal["qwen2_5_vl", "qwen2_vl"]

# Pixel budget of the tiny processor: 4 to 16 merged visual tokens per image.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 16


def build_tiny_tokenizer():
    """Byte-level tokenizer with the Qwen special tokens and chat template (no Hub, no training)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = {token: i for i, token in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    # The alphabet is a set: sort it so token ids do not depend on hash randomisation.
    byte_vocab = {token: i for i, token in enumerate(sorted(byte_vocab))}
    backend = Tokenizer(models.BPE(vocab=byte_vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        padding_side="left",
        truncation_side="left",
        model_max_length=32768,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    # Add in a fixed order so ids are the same on every machine.
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


def build_tiny_processor(
    arch: Arch = "qwen2_5_vl", min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS
):
    """Processor (tokenizer + image/video processors) of the tiny model."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tokenizer = build_tiny_tokenizer()
    # Newer transformers store the pixel budget as size={shortest_edge, longest_edge}; pass both spellings.
    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    processor_cls = Qwen2_5_VLProcessor if arch == "qwen2_5_vl" else Qwen2VLProcessor
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def tiny_config(
    arch: Arch = "qwen2_5_vl",
    tokenizer=None,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    initializer_range: float = 0.02,
):
    """Tiny config whose special-token ids match `build_tiny_tokenizer()`."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    tokenizer = tokenizer or build_tiny_tokenizer()
    head_dim = hidden_size // num_attention_heads
    if head_dim < 32:
        raise ValueError(f"head_dim={head_dim} is below 32, which vLLM's CPU attention rejects.")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections.
    half = head_dim // 2
    mrope_section = [half // 2, half // 4, half - half // 2 - half // 4]
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
        "initializer_range": initializer_range,
    }
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    if arch == "qwen2_5_vl":
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
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    if arch == "qwen2_vl":
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
        return Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids, tie_word_embeddings=False)
    raise ValueError(f"Unknown arch {arch!r}; expected 'qwen2_5_vl' or 'qwen2_vl'.")


def build_tiny_model(
    path: str | os.PathLike,
    arch: Arch = "qwen2_5_vl",
    seed: int = 0,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    vision_depth: int = 2,
    initializer_range: float = 0.02,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
) -> str:
    """Write a random tiny Qwen2.5-VL (or Qwen2-VL) model and its processor to `path`, offline.

    Args:
        path (`str` or `os.PathLike`):
            Output directory (created if missing).
        arch (`str`, *optional*, defaults to `"qwen2_5_vl"`):
            `"qwen2_5_vl"` or `"qwen2_vl"`.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the random weights; the same seed gives identical weights.
        hidden_size, num_hidden_layers, vision_depth (`int`):
            Model size; the text head dimension is `hidden_size // 2` and must stay >= 32 for vLLM.
        initializer_range (`float`, *optional*, defaults to `0.02`):
            Std of the random weights (the Qwen default is 0.02).
        min_pixels, max_pixels (`int`):
            Pixel budget of the saved image processor (vLLM reads it from the checkpoint too).

    Returns:
        `str`: the checkpoint directory, loadable with `AutoProcessor` / `AutoModelForImageTextToText` and vLLM.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    processor = build_tiny_processor(arch, min_pixels=min_pixels, max_pixels=max_pixels)
    tokenizer = processor.tokenizer
    config = tiny_config(
        arch,
        tokenizer,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        vision_depth=vision_depth,
        initializer_range=initializer_range,
    )
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
