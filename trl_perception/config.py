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
from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


# Chat-template kwargs that would let the processor cut a prompt, and with it image tokens (huggingface/trl#4153).
_TRUNCATING_TEMPLATE_KWARGS = ("truncation", "max_length")


@dataclass
class PerceptionGRPOConfig(GRPOConfig):
    r"""
    Configuration class for [`PerceptionGRPOTrainer`].

    Every [`~trl.GRPOConfig`] option (loss type, KL, sampling, vLLM) applies as in TRL; the options below control the
    perception-specific behaviour of the trainer. All of them default to the safe setting.

    Parameters:
        > Parameters that control the reward inputs

        model_family (`str`, *optional*, defaults to `"auto"`):
            Model family of the policy (`trl_perception.families.list_families()`): the coordinate frame, box syntax
            and resize settings rewards with `family="auto"` score in, and the vision special tokens that are
            suppressed. `"auto"` recognises it from `model.config.model_type`; a model no family recognises then
            gets no `model_family` (rewards fall back with a warning). Name it explicitly for a fine-tune whose
            `model_type` is unregistered.

        pass_model_image_sizes (`bool`, *optional*, defaults to `True`):
            Whether to pass the reward functions a `model_image_sizes` keyword argument: for each sample, a list of
            `[W_r, H_r]` per image, the smart-resized size the model actually sees (`grid * patch_size` from the
            processor's `image_grid_thw`). Rewards use it to convert ground truth into the Qwen2.5-VL pixel frame
            without re-deriving the resize.
        task_column (`str` or `None`, *optional*, defaults to `"task"`):
            Dataset column that routes rows to tasks. When rows carry it, reward statistics are also logged per task,
            as `rewards/{task}/{reward_name}/mean` and `.../std` (NaN in batches without that task, so the keys are
            the same on every rank and every step). Set to `None` to disable per-task metrics.

        > Parameters that control which weights train

        freeze_vision_tower (`bool`, *optional*, defaults to `False`):
            Whether to freeze the vision encoder (the family's `vision_tower` module, without its projector): its
            weights get no gradient and no optimizer state and stay bit-identical. The module is resolved per family
            (`trl_perception.families.vision_parameters`); a model without it is an error naming the paths.
        freeze_vision_projector (`bool`, *optional*, defaults to `False`):
            Whether to freeze the vision-to-language projector too (Qwen-VL's `merger`, with Qwen3-VL's DeepStack
            mergers; InternVL's `multi_modal_projector`). Independent of `freeze_vision_tower`.

        With a `peft_config` (`--use_peft`), LoRA's default targets (`lora_target_modules` unset) are the language
        model's attention and MLP projections only (`ModelFamily.lora_targets()`), so the vision side stays as it is
        unless you target it. A frozen part with LoRA adapters inside it is an error.

        > Parameters that control generation

        suppress_vision_tokens (`bool`, *optional*, defaults to `True`):
            Whether to forbid the policy from sampling image/video/vision special tokens (`<|image_pad|>`,
            `<|vision_start|>`, ...). TRL only suppresses the image token, and only with transformers generation; a
            sampled vision token makes the training forward pass fail with an image-feature mismatch.
        check_vllm_prompts (`bool`, *optional*, defaults to `True`):
            With `use_vllm=True`, whether to verify, for every generation batch, that the prompt vLLM expanded is
            token-for-token the prompt the trainer's processor built (one list comparison per prompt), and to probe
            the pixel budget of vLLM's image processor against the trainer's at start-up. A mismatch raises a
            `ValueError` naming the fix.
        vllm_server_weight_sync (`bool`, *optional*, defaults to `True`):
            In `vllm_mode="server"`, whether the trainer joins the server's weight-transfer group to push updated
            weights after each optimizer step. vLLM's weight-transfer engines need CUDA; set this to `False` only to
            generate through a server without syncing (frozen-policy rollouts, CPU smoke tests). The trainer then
            refuses to generate after an optimizer step, instead of silently training off-policy.

        > Parameters that control the rollout pictures

        rollout_pictures_steps (`int`, *optional*, defaults to `50`):
            Draw the rollouts of a few prompts at the first step and then every this many steps: for each prompt, the
            image with the ground truth and every rollout's parsed prediction, rewards and advantage, saved under
            `output_dir/rollouts/step_XXXXXX/` and sent to the trackers of `report_to`
            ([`~trl_perception.rollout_pictures.RolloutPicturesCallback`]). `0` disables them.
        rollout_pictures_prompts (`int`, *optional*, defaults to `2`):
            Prompts drawn each time (with all their `num_generations` rollouts).
    """

    # Parameters that control the reward inputs
    model_family: str = field(
        default="auto",
        metadata={
            "help": "Model family of the policy (trl_perception.families): frame, box syntax and resize settings for "
            "rewards with family='auto', and the vision tokens to suppress. 'auto' reads `config.model_type`."
        },
    )
    pass_model_image_sizes: bool = field(
        default=True,
        metadata={
            "help": "Whether to pass reward functions `model_image_sizes`: per sample, `[W_r, H_r]` per image, the "
            "smart-resized size the model sees (`image_grid_thw * patch_size`)."
        },
    )
    task_column: str | None = field(
        default="task",
        metadata={
            "help": "Dataset column routing rows to tasks; when present, reward stats are also logged per task as "
            "`rewards/{task}/{reward_name}/mean|std`. `None` disables per-task metrics."
        },
    )

    # Parameters that control which weights train
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Whether to freeze the vision encoder (the family's vision tower, without the projector): its "
            "weights stay bit-identical."
        },
    )
    freeze_vision_projector: bool = field(
        default=False,
        metadata={
            "help": "Whether to freeze the vision-to-language projector (Qwen-VL merger and DeepStack mergers, "
            "InternVL multi_modal_projector)."
        },
    )

    # Parameters that control generation
    suppress_vision_tokens: bool = field(
        default=True,
        metadata={"help": "Whether to forbid sampling image/video/vision special tokens (transformers and vLLM)."},
    )
    check_vllm_prompts: bool = field(
        default=True,
        metadata={
            "help": "With vLLM, whether to check at start-up that vLLM's image processor uses the trainer's pixel "
            "budget, and for every batch that vLLM's expanded prompt equals the trainer's prompt token-for-token."
        },
    )
    vllm_server_weight_sync: bool = field(
        default=True,
        metadata={
            "help": "In server mode, whether to join the server's weight-transfer group (needs CUDA). `False` only "
            "for generation without sync; the trainer then refuses to generate after an optimizer step."
        },
    )

    # Parameters that control the rollout pictures
    rollout_pictures_steps: int = field(
        default=50,
        metadata={
            "help": "Draw a few prompts' rollouts (image, ground truth, parsed predictions, rewards, advantages) at "
            "the first step and every N steps, into output_dir/rollouts/ and the report_to trackers; 0 disables."
        },
    )
    rollout_pictures_prompts: int = field(
        default=2, metadata={"help": "Prompts drawn each time rollout pictures are drawn (all their rollouts)."}
    )

    def __post_init__(self):
        if self.rollout_pictures_steps < 0 or self.rollout_pictures_prompts < 1:
            raise ValueError(
                f"`rollout_pictures_steps` ({self.rollout_pictures_steps}) must be >= 0 (0 disables the pictures) and "
                f"`rollout_pictures_prompts` ({self.rollout_pictures_prompts}) >= 1."
            )
        super().__post_init__()

        if self.model_family != "auto":
            from .families import get_family

            self.model_family = get_family(self.model_family).name  # raises, listing the registered families

        if self.use_vllm and self.vllm_mode == "colocate":
            if self.vllm_max_model_length is None:
                raise ValueError(
                    "`use_vllm=True` with `vllm_mode='colocate'` needs `vllm_max_model_length`: otherwise vLLM sizes "
                    "its context from the model config (128k tokens for Qwen2.5-VL) and reserves memory for it. Set "
                    "it to at least the longest prompt, image tokens included, plus `max_completion_length` "
                    f"({self.max_completion_length})."
                )
            if self.vllm_max_model_length <= self.max_completion_length:
                raise ValueError(
                    f"`vllm_max_model_length` ({self.vllm_max_model_length}) must exceed `max_completion_length` "
                    f"({self.max_completion_length}), since the prompt and its image tokens share the same context. "
                    "Raise `vllm_max_model_length` or lower `max_completion_length`."
                )

        truncating = sorted(set(_TRUNCATING_TEMPLATE_KWARGS) & set(self.chat_template_kwargs or {}))
        if truncating:
            raise ValueError(
                f"`chat_template_kwargs` sets {truncating}, which lets the processor truncate prompts and cut image "
                "tokens apart from their image features (huggingface/trl#4153). Remove them, and filter prompts that "
                "are too long in the dataset instead."
            )
