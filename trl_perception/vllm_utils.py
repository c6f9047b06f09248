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
"""vLLM rollouts for image prompts: prompt parity with the HF processor, and weight sync that works on every platform.

[`PerceptionVLLMGeneration`] is TRL's [`~trl.generation.vllm_generation.VLLMGeneration`] with six fixes, each
scoped to what TRL 1.16 gets wrong for Qwen2-VL / Qwen2.5-VL image prompts:

1. **Colocate prompts are sent un-expanded.** TRL sends the processor's ids, in which every image is already a run of
   `<|image_pad|>` tokens, together with the raw image; vLLM expands each run *again* (a 79-token prompt becomes 93
   tokens on the tiny model), so the rollout is generated from a corrupted context (huggingface/trl#6294, #6401).
   Each run is collapsed to one placeholder and vLLM's own expansion is then checked against the processor's ids.
2. **Server features are checked.** In server mode the image features are rendered by the server and re-anchored on
   the trainer's ids; the number of image tokens the server computed must equal the run length in the trainer's ids.
3. **Colocate weight sync works on the vLLM CPU build.** vLLM's CPU platform packs every linear weight into a oneDNN
   / SGL kernel handle after loading and replaces `layer.weight` with an empty `Parameter` that has no
   `weight_loader` (`dispatch_cpu_unquantized_gemm(layer, remove_weight=True)` in
   `vllm/model_executor/layers/utils.py`). TRL's `model.load_weights(...)` then fails with `'Parameter' object has no
   attribute 'weight_loader'`, and even a raw copy into the weight would be ignored, since the kernel computes from
   the packed copy. On CPU the weights therefore go through vLLM's layerwise `reload_weights`, which restores the
   checkpoint-format parameters, loads them and re-runs `process_weights_after_loading` (re-packing). The CUDA path
   is TRL's, unchanged.
4. **The encoder cache is reset after a sync.** vLLM caches vision-encoder outputs across requests, keyed by image
   hash; TRL only resets the prefix cache, so an image seen before the sync would keep its stale embeddings.
5. **LoRA weights reach vLLM without touching the base weights.** TRL merges the adapters into the base weights for
   the sync and un-merges them afterwards, which leaves every adapted base weight off by rounding (`W + BA - BA != W`:
   1e-8 after ten syncs in float32, an ulp of bfloat16 per sync); the training run then drifts from its base model
   with every rollout. Here each adapted weight is sent as a fresh `W + delta` tensor and `W` is never written.
6. **The colocated engine uses the trainer's pixel budget.** TRL builds `vllm.LLM` from the model path only, so vLLM
   reads `min_pixels` / `max_pixels` from the checkpoint's `preprocessor_config.json` while the trainer may resize
   with another budget (Perception-R1 trains with `max_pixels=1_000_000`; the Qwen checkpoints say 12,845,056). The
   trainer's budget is passed to the engine as `mm_processor_kwargs`; the start-up probe still verifies the result.

Example:

```python
>>> from trl_perception.vllm_utils import collapse_image_runs
>>> collapse_image_runs([1, 9, 9, 9, 2, 9, 9, 3], image_token_id=9)
[1, 9, 2, 9, 3]
```
"""

from __future__ import annotations

import contextlib
import functools
import logging

import trl.generation.vllm_generation as trl_vllm_generation
from trl.generation.vllm_generation import VLLMGeneration
from trl.import_utils import is_vllm_available


logger = logging.getLogger(__name__)

# Vision special tokens come from the family table (`trl_perception.families`); re-exported for callers.


def collapse_image_runs(ids: list[int], image_token_id: int, wrapper_ids: tuple[int, int] | None = None) -> list[int]:
    """Replace every run of `image_token_id` by a single token: the un-expanded prompt vLLM expects with raw images.

    `wrapper_ids` are the `(start, end)` tokens a processor puts around each run (InternVL's `<img>` / `</img>`), which
    vLLM adds again when it expands the placeholder, so they go too.

    Example:

    ```python
    >>> collapse_image_runs([5, 7, 7, 6], image_token_id=7)
    [5, 7, 6]
    >>> collapse_image_runs([5, 1, 7, 7, 2, 6], image_token_id=7, wrapper_ids=(1, 2))
    [5, 7, 6]
    ```
    """
    out = []
    previous = None
    start, end = wrapper_ids if wrapper_ids is not None else (None, None)
    for token in ids:
        if token == image_token_id and previous == image_token_id:
            continue
        if token == image_token_id and start is not None and out and out[-1] == start:
            out.pop()
        if not (token == end and previous == image_token_id):
            out.append(token)
        previous = token
    return out


def image_run_lengths(ids: list[int], image_token_id: int) -> list[int]:
    """Lengths of the runs of `image_token_id` in `ids`, in order (one run per image)."""
    lengths = []
    run = 0
    for token in ids:
        if token == image_token_id:
            run += 1
        elif run:
            lengths.append(run)
            run = 0
    if run:
        lengths.append(run)
    return lengths


def pixel_budget(processing_class) -> str:
    """Human-readable pixel budget of a processor's image processor, for error messages."""
    image_processor = getattr(processing_class, "image_processor", processing_class)
    size = getattr(image_processor, "size", None)
    min_pixels = getattr(image_processor, "min_pixels", None)
    max_pixels = getattr(image_processor, "max_pixels", None)
    return f"min_pixels={min_pixels}, max_pixels={max_pixels}, size={size}"


@contextlib.contextmanager
def _llm_defaults(**defaults):
    """Add keyword arguments to the `vllm.LLM(...)` call inside TRL's `VLLMGeneration._init_vllm`.

    TRL has no hook for engine arguments. Remove once: TRL forwards `mm_processor_kwargs` (or the processor's budget)
    to `vllm.LLM`.
    """
    defaults = {k: v for k, v in defaults.items() if v is not None}
    original = getattr(trl_vllm_generation, "LLM", None)
    if not defaults or original is None:
        yield
        return
    trl_vllm_generation.LLM = functools.partial(original, **defaults)
    try:
        yield
    finally:
        trl_vllm_generation.LLM = original


def _lora_layers(model) -> dict | None:
    """The LoRA layers of a PEFT model by module name, or `None` when another tuner type or a variant (DoRA) whose
    merged weight is not `W + get_delta_weight` is present (TRL's in-place merge then applies)."""
    try:
        from peft.tuners.lora import LoraLayer
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return None
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        if not isinstance(module, LoraLayer) or module.merged or any(getattr(module, "use_dora", {}).values()):
            return None
        if getattr(module, "lora_variant", None):
            return None
        layers[name] = module
    return layers


class PerceptionVLLMGeneration(VLLMGeneration):
    """
    [`~trl.generation.vllm_generation.VLLMGeneration`] with correct image prompts and platform-independent weight
    sync; see the module docstring for the six fixes.

    Args:
        *args, **kwargs:
            Arguments of [`~trl.generation.vllm_generation.VLLMGeneration`].
        check_prompts (`bool`, *optional*, defaults to `True`):
            Verify that vLLM's expansion of every image prompt equals the trainer's ids (colocate), and that the
            server's image-token counts equal the trainer's runs (server).
        server_weight_sync (`bool`, *optional*, defaults to `True`):
            In server mode, join the server's NCCL weight-transfer group (needs CUDA). When `False`, the client only
            generates and [`sync_weights`] raises.

    Example:

    ```python
    >>> # Built by PerceptionGRPOTrainer when `use_vllm=True`; standalone use mirrors VLLMGeneration:
    >>> generation = PerceptionVLLMGeneration(model, accelerator, processor, mode="colocate", max_model_length=1024)
    >>> prompt_ids, completion_ids, logprobs, _ = generation.generate(prompt_ids, images, num_generations=1)
    ```
    """

    def __init__(self, *args, check_prompts: bool = True, server_weight_sync: bool = True, **kwargs):
        self.check_prompts = check_prompts
        self.server_weight_sync = server_weight_sync
        super().__init__(*args, **kwargs)
        self.image_token_id = getattr(self.processing_class, "image_token_id", None)
        # `(start, end)` ids around each image-token run that vLLM re-adds (the family's `image_wrapper_tokens`); the
        # trainer sets them once it knows the model family.
        self.image_wrapper_ids: tuple[int, int] | None = None

    def _init_vllm(self):
        if self.mode == "server" and not self.server_weight_sync:
            # TRL always joins the NCCL weight-transfer group, which fails without CUDA; generation alone needs only
            # the HTTP client.
            if not is_vllm_available():
                raise ImportError("vLLM is not available and `use_vllm` is set to True. Install `trl[vllm]`.")
            from trl.generation.vllm_client import VLLMClient

            if self.accelerator.is_main_process:
                base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
                self.vllm_client = VLLMClient(
                    base_url=base_url, group_port=self.group_port, connection_timeout=self.server_timeout
                )
            self.accelerator.wait_for_everyone()
            return
        try:
            with _llm_defaults(mm_processor_kwargs=self._mm_processor_kwargs() if self.mode == "colocate" else None):
                super()._init_vllm()
        except NotImplementedError as error:
            raise NotImplementedError(
                f"{error} vLLM's weight-transfer engines (NCCL, CUDA IPC) need CUDA on both sides, so server mode "
                "cannot sync weights here. Use `vllm_mode='colocate'`, or set `vllm_server_weight_sync=False` to "
                "only generate through the server (the trainer then stops at the first generation after an "
                "optimizer step)."
            ) from error

    def _mm_processor_kwargs(self) -> dict[str, int] | None:
        """The trainer processor's pixel budget, for the colocated engine (fix 5)."""
        from .families import processor_pixel_budget

        try:
            _, min_pixels, max_pixels = processor_pixel_budget(self.processing_class)
        except (AttributeError, ValueError):  # not a Qwen-style image processor: leave vLLM's defaults
            return None
        return {"min_pixels": min_pixels, "max_pixels": max_pixels}

    # ---------------------------------------------------------------- weight sync

    def _iter_named_params(self):
        """As TRL's, but a LoRA model's weights are merged out of place (fix 5): `W + delta` per adapted layer."""
        model = self.model
        layers = _lora_layers(model) if trl_vllm_generation.is_peft_model(model) and not self._dist.is_fsdp else None
        if layers is None:
            yield from super()._iter_named_params()
            return
        # Under ZeRO-3 a layer's delta needs its adapter weights and its base weight at once: gather all, as TRL does.
        with self._dist.gather_params(list(model.parameters())):
            for name, param in model.named_parameters():
                if model.prefix in name or "original_module" in name:
                    continue  # adapter weights (sent merged) and the originals of `modules_to_save`
                tensor = param.data
                layer = (
                    layers.get(name.removesuffix(".base_layer.weight"))
                    if name.endswith(".base_layer.weight")
                    else None
                )
                if layer is not None:
                    for adapter in layer.active_adapters:
                        if adapter in layer.lora_A:
                            tensor = tensor + layer.get_delta_weight(adapter).to(tensor.dtype)
                name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                yield self._fix_param_name_to_vllm(name, extra_prefixes=["modules_to_save.default."]), tensor

    def sync_weights(self):
        if self.mode == "server" and not self.server_weight_sync:
            raise RuntimeError(
                "The policy changed but `vllm_server_weight_sync=False`: the server would keep generating from stale "
                "weights. Enable weight sync (needs CUDA) or use `vllm_mode='colocate'`."
            )
        from vllm.platforms import current_platform

        if self.mode == "colocate" and current_platform.is_cpu():
            # vLLM's CPU platform repacks linear weights and drops their `weight_loader`, so TRL's `load_weights`
            # fails (see the module docstring). `reload_weights` restores, loads and re-packs layer by layer.
            # Remove once: vLLM's CPU linear layers keep a loadable weight, or TRL syncs through `reload_weights`.
            model_runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            model_runner.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
            self.llm.reset_prefix_cache()
        else:
            super().sync_weights()
        self._reset_encoder_cache()

    def _reset_encoder_cache(self):
        # vLLM reuses vision-encoder outputs across requests (keyed by image hash); after new weights they are stale.
        # Remove once: TRL resets the encoder cache in `VLLMGeneration.sync_weights`.
        if self.mode == "colocate":
            self.llm.llm_engine.reset_encoder_cache()
        elif self.accelerator.is_main_process:
            response = self.vllm_client.session.post(f"{self.vllm_client.base_url}/reset_encoder_cache")
            if response.status_code != 200:
                logger.warning(
                    "Could not reset the vLLM server's encoder cache (HTTP %s): rollouts on images seen before this "
                    "sync may use stale vision embeddings. Start the server with `VLLM_SERVER_DEV_MODE=1`.",
                    response.status_code,
                )

    # ---------------------------------------------------------------- generation

    def generate(self, prompts, images, num_generations, profiler=None):
        if self.mode != "colocate" or images is None or self.image_token_id is None:
            return super().generate(prompts, images, num_generations, profiler=profiler)

        # huggingface/trl#6294: vLLM expands image placeholders itself, so send one placeholder per image.
        # Remove once: TRL sends un-expanded prompts to vLLM (huggingface/trl#6718).
        sent = [
            collapse_image_runs(ids, self.image_token_id, self.image_wrapper_ids) if img_list else ids
            for ids, img_list in zip(prompts, images, strict=True)
        ]
        vllm_prompt_ids, completion_ids, logprobs, logprob_token_ids = super().generate(
            sent, images, num_generations, profiler=profiler
        )
        if self.check_prompts:
            for index, (expected, got) in enumerate(zip(prompts, vllm_prompt_ids, strict=True)):
                if list(got) != list(expected):
                    raise ValueError(self._mismatch_message(index, expected, list(got)))
        return list(prompts), completion_ids, logprobs, logprob_token_ids

    def _mismatch_message(self, index: int, expected: list[int], got: list[int]) -> str:
        ours = image_run_lengths(expected, self.image_token_id)
        theirs = image_run_lengths(got, self.image_token_id)
        return (
            f"vLLM built a different prompt than the trainer's processor for sample {index}: {len(got)} tokens with "
            f"image-token runs {theirs}, versus {len(expected)} tokens with runs {ours}. The two image processors "
            f"disagree (trainer: {pixel_budget(self.processing_class)}); vLLM reads `preprocessor_config.json` from "
            f"'{self.model.name_or_path}'. Save the trainer's processor into that checkpoint "
            "(`processor.save_pretrained(path)`), or load the trainer's processor from it."
        )

    def _place_features(self, features, prompt_ids):
        placed = super()._place_features(features, prompt_ids)
        if placed is not None and self.check_prompts:
            server = [p["length"] for p in features["mm_placeholders"]["image"]]
            ours = [p["length"] for p in placed["mm_placeholders"]["image"]]
            if server != ours:
                raise ValueError(
                    f"The vLLM server computed {server} image tokens for this prompt's images, but the trainer's "
                    f"processor ({pixel_budget(self.processing_class)}) built runs of {ours}. Start the server from "
                    "a checkpoint whose `preprocessor_config.json` has the trainer's pixel budget, or pass it with "
                    '`--mm-processor-kwargs \'{"min_pixels": ..., "max_pixels": ...}\'`.'
                )
        return placed

    def check_image_processor(self, probe_ids: list[int], probe_images: list) -> None:
        """Start-up probe: vLLM must expand `probe_ids` (the trainer's ids for `probe_images`) identically.

        The probe images are chosen to hit both ends of the pixel budget, so a `min_pixels` / `max_pixels` mismatch
        between the trainer's processor and vLLM's is caught before the first rollout.
        """
        if self.mode == "colocate":
            if self.enable_sleep_mode:
                logger.info("Skipping the vLLM pixel-budget probe: the engine is asleep (`vllm_enable_sleep_mode`).")
                return
            from vllm import SamplingParams

            request = {
                "prompt_token_ids": collapse_image_runs(probe_ids, self.image_token_id, self.image_wrapper_ids),
                "multi_modal_data": {"image": probe_images},
            }
            output = self.llm.generate([request], SamplingParams(max_tokens=1), use_tqdm=False)[0]
            got = list(output.prompt_token_ids)
            if got != list(probe_ids):
                raise ValueError("Start-up probe failed. " + self._mismatch_message(0, list(probe_ids), got))
        elif self.accelerator.is_main_process:
            features = self.vllm_client.image_features([probe_images])[0]
            self._place_features(features, probe_ids)
