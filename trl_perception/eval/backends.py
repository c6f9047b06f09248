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
"""Greedy generation backends for evaluation: ``hf`` (`model.generate`) and ``vllm`` (`vllm.LLM`).

Both take the same inputs (conversational prompts with string contents, one image per prompt) and return a
`Generation` per prompt with the decoded text and the model-input image size ``(W_r, H_r)`` that the evaluation needs
to map Qwen2.5-VL pixel coordinates back to the original image.

Both render the prompt with the processor's chat template after inserting the image before the first user text, as
TRL does in training (`trl.data_utils.prepare_multimodal_messages`). vLLM receives the templated *string* plus the
image in ``multi_modal_data`` and expands the image placeholder itself, so the image is never expanded twice.

Pixel budget: ``min_pixels`` / ``max_pixels`` (when given) go to the HF processor and to vLLM's
``mm_processor_kwargs``; otherwise both read the checkpoint's preprocessor config. `VLLMBackend` checks on its first
batch that vLLM's prompt length equals the HF processor's (same number of image tokens, hence the same resize).

vllm is imported lazily: this module imports without it.

Example:

```python
backend = make_backend("hf", "/tmp/tiny-qwen2.5-vl", max_new_tokens=16)
[g.text for g in backend.generate([[{"role": "user", "content": "Describe."}]], [image])]

```
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


logger = logging.getLogger("trl_perception.eval")

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class Generation:
    """One greedy completion.

    Args:
        text: decoded completion.
        num_prompt_tokens: prompt length after image expansion.
        num_completion_tokens: generated tokens.
        finish_reason: ``"stop"`` (EOS) or ``"length"`` (hit ``max_new_tokens``).
        model_image_size: ``(W_r, H_r)`` of the image as the model saw it.
    """

    text: str
    num_prompt_tokens: int
    num_completion_tokens: int
    finish_reason: str
    model_image_size: tuple[int, int]


def to_multimodal_messages(prompt: list[dict[str, Any]], num_images: int = 1) -> list[dict[str, Any]]:
    """Insert ``num_images`` image placeholders before the first user text, as TRL does for training.

    >>> to_multimodal_messages([{"role": "user", "content": "Hi"}])[0]["content"]
    [{'type': 'image'}, {'type': 'text', 'text': 'Hi'}]
    """
    from trl.data_utils import prepare_multimodal_messages

    # Placeholders only: the image objects travel separately (processor `images=` / vLLM `multi_modal_data`).
    messages = prepare_multimodal_messages(prompt, images=[None] * num_images)
    for message in messages:
        for part in message["content"]:
            if part.get("type") == "image":
                part.pop("image", None)
    return messages


# Processor loading and its pixel budget belong to the family layer, shared with training.
from trl_perception.families import load_processor, model_input_size, processor_pixel_budget  # noqa: E402, F401


class HFBackend:
    """Batched greedy generation with `transformers` (left padding, ``do_sample=False``).

    Args:
        model: checkpoint path or Hub id (loaded with `AutoModelForImageTextToText`).
        max_new_tokens: generation budget per sample.
        skip_special_tokens: decode without special tokens (Qwen2-VL box tokens are special: keep them for
            grounding/counting, as the paper's evaluation does).
        min_pixels, max_pixels: optional pixel budget override.
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, …
        device: ``"cpu"``, ``"cuda"``, …; default: CUDA if available.
        repetition_penalty: 1.0 is plain greedy decoding (Perception-R1's grounding evaluation used 1.05).
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        max_new_tokens: int = 512,
        skip_special_tokens: bool = True,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        dtype: str = "auto",
        device: str | None = None,
        repetition_penalty: float = 1.0,
    ):
        import torch
        from transformers import AutoModelForImageTextToText

        self.processor = load_processor(model, min_pixels=min_pixels, max_pixels=max_pixels)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.skip_special_tokens = skip_special_tokens
        self.repetition_penalty = repetition_penalty

    def generate(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Any]) -> list[Generation]:
        import torch

        processor = self.processor
        texts = [
            processor.apply_chat_template(to_multimodal_messages(p), add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        inputs = processor(text=texts, images=list(images), padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.max_new_tokens,
                # Explicit, so that a checkpoint's generation_config (Qwen-VL ships 1.05) cannot change the decoding.
                repetition_penalty=self.repetition_penalty,
                top_p=None,
                top_k=None,
                temperature=None,
            )
        completions = output[:, inputs["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = processor.tokenizer.pad_token_id
        patch = getattr(self.processor.image_processor, "patch_size", None)
        grids = inputs["image_grid_thw"].tolist() if "image_grid_thw" in inputs else None
        results = []
        for i, ids in enumerate(completions.tolist()):
            stop = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            kept = ids if stop is None else ids[: stop + 1]
            text = processor.tokenizer.decode(kept, skip_special_tokens=self.skip_special_tokens)
            if grids is not None:  # the resize the model saw, from the processor's own grid
                _, grid_h, grid_w = grids[i]
                model_image_size = (grid_w * patch, grid_h * patch)
            else:
                model_image_size = model_input_size(processor, *images[i].size)
            results.append(
                Generation(
                    text=text,
                    num_prompt_tokens=int((inputs["attention_mask"][i] == 1).sum()),
                    num_completion_tokens=len([t for t in kept if t != pad or t in eos_ids]),
                    finish_reason="length" if stop is None else "stop",
                    model_image_size=model_image_size,
                )
            )
        return results


class VLLMBackend:
    """Greedy generation with `vllm.LLM` (``SamplingParams(temperature=0)``), images via ``multi_modal_data``.

    Args:
        model: checkpoint path or Hub id.
        max_new_tokens, skip_special_tokens, min_pixels, max_pixels, repetition_penalty: as for `HFBackend`.
        dtype: vLLM dtype (``"auto"``, ``"float32"``, ``"bfloat16"``).
        max_model_len: context length to allocate (always set it: Qwen2.5-VL's default is 128k).
        enforce_eager: skip graph capture (faster start-up, needed on CPU).
        gpu_memory_utilization: memory fraction vLLM may reserve (on the CPU build: of host memory).
        kv_cache_memory_bytes: explicit KV-cache size; bypasses the memory-fraction check (used on CPU).
        seed: vLLM seed (greedy decoding does not depend on it).
        in_process: run the engine in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, unless the variable is
            already set); avoids spawning an engine process that re-imports the caller's ``__main__``.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        max_new_tokens: int = 512,
        skip_special_tokens: bool = True,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        dtype: str = "auto",
        max_model_len: int = 4096,
        enforce_eager: bool = True,
        gpu_memory_utilization: float | None = None,
        kv_cache_memory_bytes: int | None = None,
        seed: int = 0,
        in_process: bool = True,
        repetition_penalty: float = 1.0,
    ):
        if in_process:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM, SamplingParams

        self.processor = load_processor(model, min_pixels=min_pixels, max_pixels=max_pixels)
        mm_processor_kwargs = {}
        if min_pixels is not None:
            mm_processor_kwargs["min_pixels"] = int(min_pixels)
        if max_pixels is not None:
            mm_processor_kwargs["max_pixels"] = int(max_pixels)
        kwargs: dict[str, Any] = {}
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if kv_cache_memory_bytes is None and gpu_memory_utilization is None and _vllm_on_cpu():
            # The CPU build reserves `gpu_memory_utilization` (default 0.92) of *host* memory and refuses to start
            # when that much is not free; an explicit KV-cache size skips that check.
            kv_cache_memory_bytes = 512 * 2**20
        if kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            limit_mm_per_prompt={"image": 1},
            mm_processor_kwargs=mm_processor_kwargs or None,
            seed=seed,
            **kwargs,
        )
        self.sampling_params = SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            skip_special_tokens=skip_special_tokens,
            repetition_penalty=repetition_penalty,
        )
        self._checked_pixels = False

    def generate(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Any]) -> list[Generation]:
        processor = self.processor
        texts = [
            processor.apply_chat_template(to_multimodal_messages(p), add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        requests = [{"prompt": t, "multi_modal_data": {"image": img}} for t, img in zip(texts, images)]
        outputs = self.llm.generate(requests, self.sampling_params, use_tqdm=False)
        if not self._checked_pixels:
            self._check_pixel_budget(texts[0], images[0], len(outputs[0].prompt_token_ids))
        results = []
        for output, image in zip(outputs, images):
            completion = output.outputs[0]
            results.append(
                Generation(
                    text=completion.text,
                    num_prompt_tokens=len(output.prompt_token_ids),
                    num_completion_tokens=len(completion.token_ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    model_image_size=model_input_size(processor, *image.size),
                )
            )
        return results

    def _check_pixel_budget(self, text: str, image: Any, vllm_prompt_len: int) -> None:
        """vLLM and the HF processor must expand the image to the same number of tokens (same resize)."""
        hf_len = int(self.processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1])
        if hf_len != vllm_prompt_len:
            raise RuntimeError(
                f"vLLM expanded the prompt to {vllm_prompt_len} tokens but the HF processor to {hf_len}: the two "
                "resize images differently. Pass the same --min-pixels/--max-pixels to both (or fix the "
                "checkpoint's preprocessor config)."
            )
        self._checked_pixels = True


def _vllm_on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def make_backend(name: str, model: str, **kwargs: Any) -> HFBackend | VLLMBackend:
    """Build a backend by name (``"hf"`` or ``"vllm"``); ``kwargs`` go to its constructor."""
    if name == "hf":
        return HFBackend(model, **kwargs)
    if name == "vllm":
        return VLLMBackend(model, **kwargs)
    raise ValueError(f"Unknown backend {name!r}; expected one of {BACKENDS}.")
