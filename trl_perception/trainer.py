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

import functools
import math
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import trl.trainer.grpo_trainer as _grpo_trainer_module
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, gather_object
from accelerate.utils import is_peft_model as _is_peft_model
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from .checkpoints import load_checkpoint_weights, resolve_resume_argument
from .config import PerceptionGRPOConfig
from .families import (
    AUTO,
    VISION_PARTS,
    ModelFamily,
    family_for_model_type,
    get_family,
    model_type_of,
    vision_parameters,
    vision_token_ids,
)
from .rollout_pictures import RolloutBatch, RolloutPicturesCallback
from .vllm_utils import PerceptionVLLMGeneration


logger = get_logger(__name__)


@contextmanager
def _vllm_generation_backend(factory):
    # TRL 1.16 builds `VLLMGeneration` by name inside `GRPOTrainer.__init__`, with no hook to choose the class, and the
    # server-mode constructor already joins the weight-transfer group, so the class must be chosen before it runs.
    # Remove once: TRL exposes the generation backend class (or a factory) to subclasses.
    original = _grpo_trainer_module.VLLMGeneration
    _grpo_trainer_module.VLLMGeneration = factory
    try:
        yield
    finally:
        _grpo_trainer_module.VLLMGeneration = original


class PerceptionGRPOTrainer(GRPOTrainer):
    """
    [`~trl.GRPOTrainer`] for perception tasks on vision-language models (Perception-R1,
    [paper](https://huggingface.co/papers/2504.07954)).

    Datasets use TRL's native multimodal format: a conversational `prompt` plus an `image` (or `images`) column;
    every other column (ground-truth boxes, counts, text, image size) reaches the reward functions as keyword
    arguments. On top of [`~trl.GRPOTrainer`], this trainer:

    - passes rewards `model_image_sizes` (per sample, `[W_r, H_r]` per image, from `image_grid_thw`), so rewards
      convert coordinates with exactly the resize the model saw;
    - logs reward statistics per task (`rewards/{task}/{reward_name}/mean|std`) when rows carry a `task` column;
    - makes `use_vllm=True` correct for image prompts (no double image-token expansion, vLLM's prompt checked
      token-for-token against the processor's, pixel budgets probed at start-up) and makes colocate weight sync work
      on the vLLM CPU build (see [`~trl_perception.vllm_utils.PerceptionVLLMGeneration`]);
    - never samples vision special tokens, with transformers or vLLM;
    - validates the setup up front (left padding, no prompt truncation, vLLM context length) with actionable errors.
    - draws a few prompts' rollouts (ground truth, parsed predictions, rewards, advantages) every
      `rollout_pictures_steps` steps into `output_dir/rollouts/` and the `report_to` trackers
      ([`~trl_perception.rollout_pictures.RolloutPicturesCallback`], added unless `callbacks` holds one; docs/tracking.md).

    Args:
        model, reward_funcs, args, train_dataset, eval_dataset, processing_class, **kwargs:
            As for [`~trl.GRPOTrainer`]; `args` is a [`PerceptionGRPOConfig`] (a plain [`~trl.GRPOConfig`] gets the
            perception defaults).

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from PIL import Image
    >>> from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
    >>> from trl_perception.testing import build_tiny_model

    >>> def width_reward(completions, model_image_sizes, **kwargs):
    ...     return [sizes[0][0] / 1000 for sizes in model_image_sizes]

    >>> dataset = Dataset.from_dict(
    ...     {"prompt": [[{"role": "user", "content": "Where is the cat?"}]] * 4, "image": [Image.new("RGB", (64, 48))] * 4}
    ... )
    >>> args = PerceptionGRPOConfig("out", per_device_train_batch_size=2, num_generations=2, max_completion_length=8,
    ...                             max_steps=1, bf16=False, report_to="none")
    >>> trainer = PerceptionGRPOTrainer(build_tiny_model("tiny"), width_reward, args=args, train_dataset=dataset)
    >>> trainer.train()
    ```
    """

    _tag_names: ClassVar[list[str]] = ["trl", "grpo", "trl-perception"]
    _name = "PerceptionGRPO"
    _paper: ClassVar[dict[str, str]] = {
        "title": "Perception-R1: Pioneering Perception Policy with Reinforcement Learning",
        "id": "2504.07954",
    }

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: PerceptionGRPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs: Any,
    ):
        # Args
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = PerceptionGRPOConfig(f"{str(model_name).rstrip('/').split('/')[-1]}-PerceptionGRPO")
        defaults = PerceptionGRPOConfig.__dataclass_fields__
        self.perception_args = {
            name: getattr(args, name, defaults[name].default)
            for name in (
                "model_family",
                "pass_model_image_sizes",
                "task_column",
                "suppress_vision_tokens",
                "check_vllm_prompts",
                "vllm_server_weight_sync",
                "rollout_pictures_steps",
                "rollout_pictures_prompts",
                "freeze_vision_tower",
                "freeze_vision_projector",
            )
        }

        # Processing class: a right-padded processor silently corrupts multimodal prompts (huggingface/trl#5785)
        if processing_class is not None:
            tokenizer = getattr(processing_class, "tokenizer", processing_class)
            if getattr(tokenizer, "padding_side", "left") != "left":
                raise ValueError(
                    f"The processor's tokenizer pads on the {tokenizer.padding_side!r}; GRPO needs left padding, "
                    "otherwise Qwen2-VL position ids and image features misalign (huggingface/trl#5785). Load it with "
                    "`AutoProcessor.from_pretrained(path, padding_side='left')` or set "
                    "`processor.tokenizer.padding_side = 'left'`."
                )

        # LoRA: TRL's `--use_peft` leaves `target_modules` unset, which PEFT cannot resolve for VLMs; a bare list of
        # names would also adapt the vision tower's layers of the same name.
        if kwargs.get("peft_config") is not None:
            kwargs["peft_config"] = self._with_default_lora_targets(kwargs["peft_config"], model)

        # Model, processing class, rewards, vLLM: GRPOTrainer, with the perception vLLM backend
        generation_factory = functools.partial(
            PerceptionVLLMGeneration,
            check_prompts=self.perception_args["check_vllm_prompts"],
            server_weight_sync=self.perception_args["vllm_server_weight_sync"],
        )
        with _vllm_generation_backend(generation_factory):
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                **kwargs,
            )

        # Model family: rewards with family="auto" score in its frame; its vision tokens are suppressed
        self.model_family = self._resolve_model_family(self.perception_args["model_family"])

        # Frozen vision parts: before `train()` builds the optimizer (which only takes parameters that need a gradient)
        self._freeze_vision()

        if self.use_vllm and self.model_family is not None and self.model_family.image_wrapper_tokens:
            start, end = (self._tokenizer.convert_tokens_to_ids(t) for t in self.model_family.image_wrapper_tokens)
            self.vllm_generation.image_wrapper_ids = (start, end)

        # Vision geometry
        image_processor = getattr(self.processing_class, "image_processor", None)
        self._patch_size = getattr(image_processor, "patch_size", None)
        self._merge_size = getattr(image_processor, "merge_size", None)
        self._image_token_id = getattr(self.processing_class, "image_token_id", None)
        self._model_image_sizes = None
        self._seen_tasks: set[str] = set()

        # Rollout pictures: the config's callback unless the caller passed one (whose settings then apply)
        if self.perception_args["rollout_pictures_steps"] > 0 and not self._rollout_picture_callbacks():
            self.add_callback(
                RolloutPicturesCallback(
                    every_steps=self.perception_args["rollout_pictures_steps"],
                    num_prompts=self.perception_args["rollout_pictures_prompts"],
                )
            )
        self._picture_image_sizes = None
        self._rollout_capture = None

        # Vision special tokens: TRL suppresses only the image token, and only with transformers generation
        self._vision_token_ids = vision_token_ids(self._tokenizer, self.model_family) if self._is_vlm else {}
        if self.perception_args["suppress_vision_tokens"] and self._vision_token_ids:
            if self.use_vllm:
                # `bad_words` is masked to -inf by vLLM (colocate and server), after tokenization to single ids.
                bad_words = list(self.vllm_generation.generation_kwargs.get("bad_words") or [])
                self.vllm_generation.generation_kwargs["bad_words"] = bad_words + [
                    token for token in self._vision_token_ids if token not in bad_words
                ]
            else:
                suppress = list(self.generation_config.suppress_tokens or [])
                suppress += [i for i in self._vision_token_ids.values() if i not in suppress]
                self.generation_config.suppress_tokens = suppress
                self.generation_kwargs["suppress_tokens"] = suppress

        # vLLM: context length and pixel-budget parity
        self._vllm_max_model_len = None
        if self.use_vllm:
            if self.vllm_mode == "colocate":
                self._vllm_max_model_len = self.vllm_generation.llm.llm_engine.model_config.max_model_len
            else:
                info = [None]
                if self.accelerator.is_main_process:
                    info = [self.vllm_generation.vllm_client.get_server_info()["model_config"]["max_model_len"]]
                broadcast_object_list(info, from_process=0)
                self._vllm_max_model_len = info[0]
            if self._vllm_max_model_len <= self.max_completion_length:
                raise ValueError(
                    f"vLLM's context ({self._vllm_max_model_len} tokens) cannot hold any prompt plus "
                    f"`max_completion_length` ({self.max_completion_length}). Raise `vllm_max_model_length` "
                    "(colocate) or the server's `--max-model-len`."
                )
            # The pixel-budget probe needs a smart-resizing processor; fixed-tile processors (InternVL) have no budget.
            resizes = self._patch_size is not None and self._merge_size is not None
            if (
                self.perception_args["check_vllm_prompts"]
                and self._is_vlm
                and self._image_token_id is not None
                and resizes
            ):
                probe_ids, probe_images = self._pixel_budget_probe()
                self.vllm_generation.check_image_processor(probe_ids, probe_images)
            if self.vllm_mode == "server" and not self.perception_args["vllm_server_weight_sync"]:
                logger.warning(
                    "`vllm_server_weight_sync=False`: rollouts come from the server's checkpoint, and the trainer "
                    "stops at the first generation after an optimizer step."
                )

    # ---------------------------------------------------------------- start-up helpers

    def _resolve_model_family(self, family: str) -> ModelFamily | None:
        """The policy's family: the configured one, else recognised from `config.model_type` (`None` if unknown)."""
        if family != AUTO:
            return get_family(family)
        model_type = getattr(getattr(self.accelerator.unwrap_model(self.model), "config", None), "model_type", None)
        try:
            return family_for_model_type(str(model_type))
        except ValueError:
            logger.warning(
                f"No model family recognises model_type {model_type!r}: rewards with family='auto' fall back to "
                "their default frame, and every registered family's vision tokens are suppressed. Set "
                "`model_family` (PerceptionGRPOConfig) or register the family (docs/families.md)."
            )
            return None

    def _with_default_lora_targets(self, peft_config, model):
        """`peft_config` with the family's language-model-only LoRA targets when it names none."""
        import copy

        if getattr(peft_config, "target_modules", "unset") is not None or getattr(
            peft_config, "target_parameters", None
        ):
            return peft_config
        family = self.perception_args["model_family"]
        try:
            family = get_family(family) if family != AUTO else family_for_model_type(model_type_of(model))
        except (ValueError, OSError):
            raise ValueError(
                "LoRA without `target_modules` (`--lora_target_modules`) takes the model family's language-model "
                "layers, but the family of this model is unknown: set `model_family` or `lora_target_modules`."
            ) from None
        peft_config = copy.deepcopy(peft_config)
        peft_config.target_modules = family.lora_targets()
        logger.info(f"LoRA targets (family {family.name}): {peft_config.target_modules}")
        return peft_config

    def _freeze_vision(self) -> None:
        """Apply `freeze_vision_tower` / `freeze_vision_projector`, and report LoRA adapters on the vision side."""
        parts = [part for part in VISION_PARTS if self.perception_args[f"freeze_vision_{part}"]]
        model = self.accelerator.unwrap_model(self.model)
        adapted = _is_peft_model(model)
        if not parts and not adapted:
            return
        if self.model_family is None:
            if not parts:
                return  # LoRA on a model no family describes: nothing to check the targets against
            raise ValueError(
                f"`freeze_vision_{parts[0]}` needs the model family to locate the vision modules, and none recognises "
                "this model: set `model_family` (PerceptionGRPOConfig) or register its family (docs/families.md)."
            )
        for part in VISION_PARTS:
            try:
                params = vision_parameters(model, self.model_family, part)
            except ValueError:
                if part in parts:
                    raise
                continue  # only the LoRA report needs it
            lora = sorted({name.rsplit(".lora_", 1)[0] for name in params if ".lora_" in name})
            if part in parts:
                if lora:
                    raise ValueError(
                        f"`freeze_vision_{part}=True`, but LoRA adapts {len(lora)} modules of the vision {part} (e.g. "
                        f"{lora[0]}): restrict `lora_target_modules` to the language model (leave it unset for the "
                        "family's default), or do not freeze that part."
                    )
                for param in params.values():
                    param.requires_grad_(False)
                logger.info(
                    f"Froze the vision {part}: {len(params)} tensors, {sum(p.numel() for p in params.values())} weights."
                )
            elif lora:
                logger.warning(
                    f"LoRA adapts {len(lora)} modules of the vision {part} (e.g. {lora[0]}); leave "
                    "`lora_target_modules` unset for the family's language-model-only default."
                )

    def _pixel_budget_probe(self):
        """Trainer-side ids for two probe images at both ends of the pixel budget (fitting vLLM's context)."""
        from PIL import Image

        image_processor = self.processing_class.image_processor
        factor = self._patch_size * self._merge_size
        size = getattr(image_processor, "size", None) or {}
        min_pixels = getattr(image_processor, "min_pixels", None) or size.get("shortest_edge") or factor * factor * 4
        max_pixels = getattr(image_processor, "max_pixels", None) or size.get("longest_edge") or factor * factor * 256
        # Above max_pixels when the context allows it, so a different `max_pixels` changes the token count.
        token_budget = max(4, min(1024, (self._vllm_max_model_len - self.max_completion_length) // 2))
        big_pixels = min(2 * max_pixels, token_budget * factor * factor)
        big_height = max(factor, int(math.sqrt(big_pixels / 2)))
        big = Image.new("RGB", (2 * big_height + 5, big_height), (128, 64, 32))
        # Below min_pixels, so a different `min_pixels` changes the token count.
        small_side = max(1, int(math.sqrt(min_pixels)) // 2)
        small = Image.new("RGB", (small_side, small_side + 3), (32, 64, 128))
        conversation = [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": big},
                    {"type": "image", "image": small},
                    {"type": "text", "text": "?"},
                ],
            }
        ]
        tokenized = self.processing_class.apply_chat_template(
            conversation=[conversation],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **self.chat_template_kwargs,
        )
        return list(tokenized["input_ids"][0]), [big, small]

    # ---------------------------------------------------------------- checkpoints

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """
        As [`~transformers.Trainer.train`]; `resume_from_checkpoint=True` (or `"true"`) resumes from the latest
        *complete* checkpoint of `output_dir` (one whose `trainer_state.json` was written), skipping a checkpoint whose
        write was interrupted, and a checkpoint directory is checked before anything is loaded.
        """
        resume_from_checkpoint = resolve_resume_argument(resume_from_checkpoint, self.args.output_dir)
        if resume_from_checkpoint is not None:
            logger.info(f"Resuming from {resume_from_checkpoint}")
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _plain_weights(self, model) -> bool:
        """Whether the weights load with a state dict here: not PEFT, DeepSpeed, FSDP or SageMaker MP (their own
        loaders keep their own key names)."""
        from transformers.trainer import _is_peft_model, is_sagemaker_mp_enabled

        return not (
            _is_peft_model(model) or self.is_deepspeed_enabled or self.is_fsdp_enabled or is_sagemaker_mp_enabled()
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Transformers loads the checkpoint with a plain `load_state_dict`, so the keys `save_pretrained` reverted to
        # the original layout (`visual.blocks...`) miss the model's (`model.visual.blocks...`) and the weights stay
        # as they were (huggingface/transformers#43701). Remove once: Trainer applies the model's key mapping.
        model = self.model if model is None else model
        if not self._plain_weights(model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        logger.info(f"Loading model weights from {resume_from_checkpoint}.")
        load_checkpoint_weights(model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        # Same key mapping as `_load_from_checkpoint`, for `load_best_model_at_end`.
        model = self.model
        checkpoint = self.state.best_model_checkpoint
        if not self._plain_weights(model) or checkpoint is None:
            return super()._load_best_model()
        logger.info(f"Loading best model from {checkpoint} (score: {self.state.best_metric}).")
        load_checkpoint_weights(model, checkpoint)

    # ---------------------------------------------------------------- generation

    def _tokenize_prompts(self, prompts: list):
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        self._model_image_sizes = None
        self._picture_image_sizes = None
        self._check_images_on_every_process(images)
        grid = multimodal_fields.get("image_grid_thw")
        if images is None or grid is None or self._patch_size is None:
            return prompt_ids, images, multimodal_fields

        # One `tolist` per batch; rows of `image_grid_thw` follow the prompts' images in order.
        rows = iter(grid.tolist())
        sizes = []
        merge = self._merge_size * self._merge_size
        for index, (ids, img_list) in enumerate(zip(prompt_ids, images, strict=True)):
            grids = [next(rows) for _ in img_list or []]
            sizes.append([[w * self._patch_size, h * self._patch_size] for _, h, w in grids])
            # Image tokens must survive tokenization intact (huggingface/trl#4153): one per merged patch.
            expected = sum(t * h * w for t, h, w in grids) // merge
            if self._image_token_id is not None and ids.count(self._image_token_id) != expected:
                raise ValueError(
                    f"Prompt {index} holds {ids.count(self._image_token_id)} image tokens but its images need "
                    f"{expected}: the prompt was truncated or its template drops image placeholders. Never truncate "
                    "multimodal prompts; filter long rows from the dataset instead."
                )
            if (
                self._vllm_max_model_len is not None
                and len(ids) + self.max_completion_length > self._vllm_max_model_len
            ):
                raise ValueError(
                    f"Prompt {index} is {len(ids)} tokens (image tokens included); with `max_completion_length` "
                    f"({self.max_completion_length}) it exceeds vLLM's context ({self._vllm_max_model_len}). Raise "
                    "`vllm_max_model_length` (or the server's `--max-model-len`), lower `max_pixels`, or filter long "
                    "rows from the dataset."
                )
        if self.perception_args["pass_model_image_sizes"]:
            self._model_image_sizes = sizes
        self._picture_image_sizes = sizes  # rollout pictures map boxes with the sizes the model saw, in any case
        return prompt_ids, images, multimodal_fields

    def _check_images_on_every_process(self, images) -> None:
        """Under ZeRO-3, fail on a batch that has images on some processes only, instead of hanging: the vision tower
        runs only where there are images, and each of its layers gathers its weights from every process."""
        from .distributed import zero3_enabled

        if self.accelerator.num_processes == 1 or not self._is_vlm or not zero3_enabled():
            return
        has_images = [bool(images) and any(bool(img_list) for img_list in images)]
        flags = gather_object(has_images)  # every process tokenizes each generation batch: a safe collective
        if any(flags) and not all(flags):
            without = [rank for rank, flag in enumerate(flags) if not flag]
            raise ValueError(
                f"Under DeepSpeed ZeRO-3 this generation batch has images on some processes but none on process(es) "
                f"{without}: the vision tower would run on some processes only and its weight gathers would hang. Give "
                "every row an image (or keep text-only rows in a separate run), or use ZeRO-2 (`--accelerate_config "
                "zero2_cpu` / `zero2`), which does not gather weights in the forward pass."
            )

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        unsynced_server = (
            self.use_vllm and self.vllm_mode == "server" and not self.perception_args["vllm_server_weight_sync"]
        )
        if unsynced_server and self.state.global_step != self._last_loaded_step:
            if self.state.global_step > 0:
                self.vllm_generation.sync_weights()  # raises: the server cannot receive the new weights
            # Before the first optimizer step the server's checkpoint is the policy: nothing to push.
            self._last_loaded_step = self.state.global_step
        return super()._generate_single_turn(
            prompt_ids, images, multimodal_fields, num_generations, has_tool_images=has_tool_images
        )

    # ---------------------------------------------------------------- rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        sizes, self._model_image_sizes = self._model_image_sizes, None
        if self.model_family is not None:
            # Rewards with family="auto" read the frame of their answers from this column.
            inputs = [{**example, "model_family": self.model_family.name} for example in inputs]
        if sizes is not None and len(sizes) == len(inputs):
            inputs = [{**example, "model_image_sizes": size} for example, size in zip(inputs, sizes, strict=True)]
        elif sizes is not None:
            # Rewards then re-derive the resized size with `smart_resize` and their own min/max pixels, which may
            # differ from the processor's budget.
            logger.warning(
                f"Not passing `model_image_sizes` to the rewards: {len(sizes)} sizes for {len(inputs)} samples."
            )
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._capture_rollouts(inputs, completions, rewards_per_func)

        task_column = self.perception_args["task_column"]
        if task_column and task_column in inputs[0]:
            self._log_task_metrics([example.get(task_column) for example in inputs], rewards_per_func)
        return rewards_per_func

    # ---------------------------------------------------------------- rollout pictures

    def _rollout_picture_callbacks(self) -> list[RolloutPicturesCallback]:
        return [cb for cb in self.callback_handler.callbacks if isinstance(cb, RolloutPicturesCallback)]

    def _capture_rollouts(self, inputs, completions, rewards_per_func: torch.Tensor) -> None:
        """On the main process, when a rollout-pictures callback draws the coming step: keep this process's rows,
        completions and rewards (`rewards_per_func` is gathered in rank order); the advantages join them in
        `_generate_and_score_completions`."""
        sizes, self._picture_image_sizes = self._picture_image_sizes, None
        self._rollout_capture = None
        step = self.state.global_step + 1  # the step these rollouts are trained on
        if not self.model.training or not self.accelerator.is_main_process:
            return
        callbacks = [cb for cb in self._rollout_picture_callbacks() if cb.due(step)]
        if not callbacks:
            return
        from .rewards._base import completion_text

        rows = inputs
        if sizes is not None and len(sizes) == len(inputs):
            rows = [
                {**row, "model_image_sizes": row.get("model_image_sizes") or size} for row, size in zip(rows, sizes)
            ]
        start = self.accelerator.process_index * len(inputs)
        local = rewards_per_func[start : start + len(inputs)].tolist()
        self._rollout_capture = (callbacks, step, rows, [completion_text(c) for c in completions], local)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        capture, self._rollout_capture = self._rollout_capture, None
        if capture is not None:
            callbacks, step, rows, completions, rewards = capture
            batch = RolloutBatch(
                rows=rows,
                completions=completions,
                rewards=rewards,
                reward_names=list(self.reward_func_names),
                reward_weights=self.reward_weights.tolist(),
                advantages=output["advantages"].tolist(),
                num_generations=self.num_generations,
                reward_funcs=list(self.reward_funcs),
            )
            for callback in callbacks:
                callback.capture(batch, step, self.callback_handler.callbacks)
        return output

    def _log_task_metrics(self, local_tasks: list, rewards_per_func: torch.Tensor) -> None:
        """Reward mean/std per task and reward function; NaN for tasks absent from this batch."""
        mode = "train" if self.model.training else "eval"
        # `rewards_per_func` is gathered across ranks, in rank order, so the tasks are gathered the same way.
        tasks = [str(task) for task in gather_object(local_tasks)]
        self._seen_tasks.update(tasks)
        weights = self.reward_weights.to(rewards_per_func.device)
        for task in sorted(self._seen_tasks):
            mask = torch.tensor([t == task for t in tasks], device=rewards_per_func.device)
            rows = rewards_per_func[mask]
            for i, name in enumerate(self.reward_func_names):
                values = rows[:, i]
                mean = torch.nanmean(values).item() if values.numel() else math.nan
                std = nanstd(values).item() if values.numel() > 1 else math.nan
                self._metrics[mode][f"rewards/{task}/{name}/mean"].append(mean)
                self._metrics[mode][f"rewards/{task}/{name}/std"].append(std)
            total = (rows * weights).nansum(dim=1)
            total[torch.isnan(rows).all(dim=1)] = math.nan
            self._metrics[mode][f"reward/{task}/mean"].append(
                torch.nanmean(total).item() if total.numel() else math.nan
            )
