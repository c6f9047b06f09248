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
"""Trainer checkpoints: which ones are complete, the latest complete one, and loading their weights into a model
whose parameter names differ from the checkpoint's.

`save_pretrained` writes a checkpoint in the model's original key layout (Qwen2.5-VL: `visual.blocks.0...`,
`model.layers.0...`), reverting the renaming `from_pretrained` applies (`model.visual...`,
`model.language_model...`). Transformers' resume path loads that file with a plain `load_state_dict`, so only the keys
that were never renamed load (huggingface/transformers#43701). [`load_checkpoint_weights`] applies the model's key
mapping (its weight conversions) first, as `from_pretrained` does, and copies the weights in place.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch


TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)


def is_complete_checkpoint(path: str) -> bool:
    """
    Whether the trainer finished writing the checkpoint `path`: its `trainer_state.json` (the last file the trainer
    writes, after the weights, optimizer, scheduler and RNG states) exists and parses, and it holds model weights.
    """
    try:
        with open(os.path.join(path, TRAINER_STATE)) as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    names = os.listdir(path)
    deepspeed_states = any(name.startswith("global_step") for name in names)
    return deepspeed_states or any(name in names for name in _WEIGHT_FILES)


def list_checkpoints(output_dir: str) -> list[tuple[int, str, bool]]:
    """`(step, path, complete)` for each `checkpoint-N` directory of `output_dir`, by step."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_DIR.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path, is_complete_checkpoint(path)))
    return sorted(found)


def latest_checkpoint(output_dir: str) -> str:
    """
    The complete checkpoint of `output_dir` with the highest step. Checkpoints whose write was cut short (no readable
    `trainer_state.json`, or no weights) are skipped. Raises a `ValueError` naming the directory when there is none.
    """
    checkpoints = list_checkpoints(output_dir)
    complete = [path for _, path, ok in checkpoints if ok]
    if complete:
        return complete[-1]
    incomplete = [os.path.basename(path) for _, path, ok in checkpoints if not ok]
    skipped = f" ({', '.join(incomplete)} skipped: incomplete, no readable {TRAINER_STATE})" if incomplete else ""
    raise ValueError(
        f"No complete checkpoint to resume from in {output_dir!r}{skipped}. Checkpoints are written every "
        "`save_steps`; resume with `--resume_from_checkpoint PATH`, or drop it to start a new run."
    )


def resolve_resume_argument(value: str | bool | None, output_dir: str) -> str | None:
    """
    The checkpoint `resume_from_checkpoint` names: `None` for none (`None`, `False`, `"false"`, `""`), the latest
    complete checkpoint of `output_dir` for `True` / `"true"`, otherwise the given directory, which must be a complete
    checkpoint. Raises a `ValueError` naming the fix.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "no")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "latest")):
        return latest_checkpoint(output_dir)
    path = str(value)
    if not os.path.isdir(path):
        raise ValueError(
            f"`resume_from_checkpoint` {path!r} is not a directory; give a `checkpoint-N` directory, or `true` for the "
            f"latest complete checkpoint of `output_dir` ({output_dir!r})."
        )
    if not is_complete_checkpoint(path):
        raise ValueError(
            f"Checkpoint {path!r} is incomplete (no readable {TRAINER_STATE} or no weights): its write was probably "
            "interrupted. Resume from an earlier checkpoint, or use `true` for the latest complete one."
        )
    return path


def read_checkpoint_state_dict(checkpoint: str) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint directory (single or sharded, safetensors or `.bin`), on the CPU."""
    import safetensors.torch

    def load(name: str) -> dict[str, torch.Tensor]:
        path = os.path.join(checkpoint, name)
        if name.endswith(".safetensors"):
            return safetensors.torch.load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)

    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if os.path.isfile(os.path.join(checkpoint, single)):
            return load(single)
        if os.path.isfile(os.path.join(checkpoint, index)):
            with open(os.path.join(checkpoint, index)) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state_dict: dict[str, torch.Tensor] = {}
            for shard in shards:
                state_dict.update(load(shard))
            return state_dict
    raise ValueError(f"No model weights (model.safetensors, pytorch_model.bin or their index) in {checkpoint!r}.")


def convert_checkpoint_keys(model: torch.nn.Module, state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """
    `state_dict`, as saved by `save_pretrained`, with the model's parameter names: the weight conversions the model was
    loaded with (`model._weight_conversions`, or the default ones of its class and model type), applied as
    `from_pretrained` applies them (renamings, then at most one converter per key, and the base-model prefix).
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, dot_natural_key, rename_source_key

    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None and hasattr(model, "config"):
        conversions = get_model_conversion_mapping(model)
    conversions = conversions or []
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    by_pattern = {pattern: c for c in converters for pattern in c.source_patterns}
    prefix = getattr(model, "base_model_prefix", None) or None
    expected = model.state_dict()

    from copy import deepcopy

    renamed: dict[str, torch.Tensor] = {}
    pending: dict[str, Any] = {}
    for key, tensor in sorted(state_dict.items(), key=lambda kv: dot_natural_key(kv[0])):
        target, pattern = rename_source_key(key, renamings, converters, prefix, expected)
        if target not in expected and key in expected:  # already in the model's layout
            target, pattern = key, None
        if pattern is None:
            renamed[target] = tensor
            continue
        converter = pending.setdefault(target, deepcopy(by_pattern[pattern]))
        converter.add_tensor(target, key, pattern, tensor)
    for target, converter in pending.items():
        for name, value in converter.convert(target, model=model, config=model.config).items():
            renamed[name] = value[0] if isinstance(value, list) else value
    return renamed


def load_checkpoint_weights(model: torch.nn.Module, checkpoint: str, strict: bool = True):
    """
    Copy the weights of `checkpoint` into `model` in place (parameters keep their identity, tied weights stay tied),
    with the model's key mapping applied ([`convert_checkpoint_keys`]). With `strict`, a weight of the model that the
    checkpoint lacks (other than one tied to a loaded weight), or a checkpoint weight the model has no place for, is a
    `ValueError`. Returns torch's `_IncompatibleKeys`.
    """
    state_dict = convert_checkpoint_keys(model, read_checkpoint_state_dict(checkpoint))
    result = model.load_state_dict(state_dict, strict=False)
    loaded = {t.data_ptr() for name, t in model.state_dict().items() if name in state_dict}
    # A tied weight (lm_head.weight = embed_tokens.weight) is saved once; its other name loads with it.
    model_state = model.state_dict()
    missing = [k for k in result.missing_keys if model_state[k].data_ptr() not in loaded]
    if strict and (missing or result.unexpected_keys):
        details = []
        if missing:
            details.append(f"{len(missing)} model weights are missing from it (e.g. {missing[:3]})")
        if result.unexpected_keys:
            details.append(
                f"{len(result.unexpected_keys)} of its weights fit no model weight (e.g. {result.unexpected_keys[:3]})"
            )
        raise ValueError(
            f"The checkpoint {checkpoint!r} does not match the model: {'; '.join(details)}. Resume with the model "
            "that wrote the checkpoint (same `model_name_or_path`, PEFT and model options)."
        )
    return result
