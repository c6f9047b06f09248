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
"""GRPO training script behind `trl-perception train` (launched through `accelerate launch`, like `trl grpo`).

```bash
trl-perception train --config recipes/quickstart.yaml
trl-perception train --config recipes/grounding_refcoco.yaml --num_processes 8 --accelerate_config zero2
```
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from trl import ScriptArguments


@dataclass
class PerceptionScriptArguments(ScriptArguments):
    """
    Script arguments of `trl-perception train`.

    Args:
        dataset_name (`str`):
            A trl-perception builder (`synthetic_shapes`, `refcoco`, `pixmo_count`, `page_ocr`, `coco_detection`),
            a directory saved with `Dataset.save_to_disk`, or anything `datasets.load_dataset` accepts.
        dataset_kwargs (`dict[str, Any]`, *optional*):
            Keyword arguments of the builder's loader (e.g. `data_dir`, `image_dir`, `split_by`).
        reward_funcs (`list[str]`):
            Reward names from `trl_perception.rewards.list_rewards()` or dotted import paths.
        reward_kwargs (`dict[str, dict[str, Any]]`, *optional*):
            Options per reward name, passed to `trl_perception.rewards.get_reward(name, **options)`.
        warmstart_steps (`int`, *optional*, defaults to `0`):
            Supervised warm-start steps before GRPO (0 disables it). Needs a task with a text target (`count`).
        warmstart_shuffle_targets (`bool`, *optional*, defaults to `True`):
            Pair rows with other rows' targets, so the warm start teaches only the format, not the task.
        heldout_samples (`int`, *optional*, defaults to `0`):
            Held-out rows (from `dataset_test_split`) scored greedily with the training rewards before and after
            training; 0 disables it.
        min_pixels, max_pixels (`int`, *optional*):
            Pixel budget of the image processor (default: the checkpoint's). It also reaches the colocated vLLM engine
            and, through `model_image_sizes`, the rewards.
    """

    dataset_name: str | None = field(default=None, metadata={"help": "Builder name, saved dataset path or hub id."})
    dataset_kwargs: dict | str | None = field(default=None, metadata={"help": "Loader keyword arguments (dict/JSON)."})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "Reward names or dotted import paths."})
    reward_kwargs: dict | str | None = field(default=None, metadata={"help": "Options per reward name (dict/JSON)."})
    dataset_train_limit: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    warmstart_steps: int = field(default=0, metadata={"help": "Supervised warm-start steps before GRPO."})
    warmstart_learning_rate: float = field(default=1e-3, metadata={"help": "Warm-start learning rate."})
    warmstart_batch_size: int = field(default=16, metadata={"help": "Warm-start batch size."})
    warmstart_shuffle_targets: bool = field(default=True, metadata={"help": "Warm start on shuffled targets."})
    heldout_samples: int = field(default=0, metadata={"help": "Held-out rows scored before and after training."})
    heldout_max_new_tokens: int = field(default=16, metadata={"help": "Greedy tokens for held-out scoring."})
    min_pixels: int | None = field(default=None, metadata={"help": "Processor pixel budget (default: checkpoint)."})
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Processor pixel budget (default: checkpoint); Perception-R1 trained with 1000000."},
    )

    def __post_init__(self):
        for name in ("dataset_kwargs", "reward_kwargs"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, json.loads(value))
        if not self.reward_funcs:
            raise ValueError("Set at least one reward with `reward_funcs` (see `trl-perception rewards`).")


BUILDERS = {
    # name: (loader, the keyword that `dataset_config` fills)
    "synthetic_shapes": ("trl_perception.data:load_synthetic_shapes", "task"),
    "refcoco": ("trl_perception.data:load_refcoco", "dataset"),
    "pixmo_count": ("trl_perception.data:load_pixmo_count", None),
    "page_ocr": ("trl_perception.data:load_page_ocr", "language"),
    "coco_detection": ("trl_perception.data:load_coco_detection", None),
}


def load_perception_dataset(
    name: str, split: str, config: str | None = None, default_family: str | None = None, **kwargs
):
    """
    One split of a dataset given by builder name, saved directory or hub id (see `dataset_name`). A built-in builder
    that writes family-specific prompts gets `family=default_family` unless `kwargs` names one.
    """
    import datasets

    if name in BUILDERS:
        target, config_key = BUILDERS[name]
        module, attr = target.split(":")
        loader = getattr(importlib.import_module(module), attr)
        if kwargs.get("family") in (None, "auto") and "family" in inspect.signature(loader).parameters:
            kwargs["family"] = default_family or kwargs.get("family") or "auto"
        if config is not None:
            if config_key is None:
                raise ValueError(f"The {name!r} builder has no `dataset_config`; use `dataset_kwargs` instead.")
            kwargs.setdefault(config_key, config)
        if name == "synthetic_shapes":  # builds both splits in one go
            return loader(**kwargs)[split]
        return loader(split=split, **kwargs)
    if os.path.isdir(name):
        loaded = datasets.load_from_disk(name)
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(name, name=config, split=split, **kwargs)


def _model_image_sizes(processor, row: dict[str, Any]) -> dict[str, Any]:
    """`{"model_image_sizes": [[W_r, H_r], ...]}` of a row's images, or `{}` for a processor without a pixel budget."""
    from trl_perception.families import model_input_size

    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    try:
        return {"model_image_sizes": [list(model_input_size(processor, *image.size)) for image in images]}
    except (AttributeError, ValueError):  # fixed-size tiles (InternVL): the family's frame needs no resized size
        return {}


def resolve_reward(name: str, options: dict[str, Any] | None):
    """A reward from the registry by name, or a callable by dotted import path (as `trl grpo` accepts)."""
    from trl_perception.rewards import get_reward, list_rewards

    if name in list_rewards():
        return get_reward(name, **(options or {}))
    if "." in name:
        module_path, attr = name.rsplit(".", 1)
        sys.path.insert(0, os.getcwd())
        func = getattr(importlib.import_module(module_path), attr)
        if options:
            raise ValueError(f"reward_kwargs for {name!r}: options apply only to registered rewards.")
        return func
    raise ValueError(f"Unknown reward {name!r}. Registered rewards: {sorted(list_rewards())}; or a dotted path.")


def warmstart_target(row: dict[str, Any]) -> str:
    """Supervised target for a row. Only tasks with a single-token-sequence answer are supported for now."""
    if row.get("task") == "counting" and row.get("count") is not None:
        return str(row["count"])
    raise ValueError(
        f"Warm start needs a counting row with a `count`; got task={row.get('task')!r}. Set warmstart_steps: 0."
    )


def _write_run_files(output_dir: str, log_history: list[dict], summary: dict[str, Any]) -> None:
    import csv

    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump({"summary": summary, "log_history": log_history}, f, indent=2, default=float)
    keys = sorted({k for entry in log_history for k in entry})
    with open(os.path.join(output_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(log_history)
    steps = [e["step"] for e in log_history if "reward" in e]
    rewards = [e["reward"] for e in log_history if "reward" in e]
    if steps:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, rewards, marker="o", label="train reward (sampled)")
        for key, style in (("before", "--"), ("after", "-.")):
            if key in summary.get("heldout", {}):
                ax.axhline(summary["heldout"][key]["reward"], linestyle=style, color="gray", label=f"held-out {key}")
        ax.set_xlabel("step")
        ax.set_ylabel("reward")
        ax.set_title("trl-perception: reward")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(output_dir, "reward_curve.png"), dpi=120)
        plt.close(fig)


def two_proportion_test(k_before: int, k_after: int, n: int) -> dict[str, float]:
    """One-sided two-proportion z-test that the after-accuracy exceeds the before-accuracy (pooled variance)."""
    p1, p2 = k_before / n, k_after / n
    pooled = (k_before + k_after) / (2 * n)
    se = math.sqrt(max(pooled * (1 - pooled) * 2 / n, 1e-12))
    z = (p2 - p1) / se
    return {"z": z, "p_value": 0.5 * math.erfc(z / math.sqrt(2))}


def main(script_args: PerceptionScriptArguments, training_args, model_args) -> dict[str, Any]:
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForImageTextToText
    from trl import get_peft_config

    from trl_perception import PerceptionGRPOTrainer
    from trl_perception.families import load_processor, resolve_family, tiny_factory
    from trl_perception.warmstart import heldout_greedy_scores, reward_name, supervised_warm_start

    state = PartialState()
    started = time.time()

    # Model: `tiny:<family>` (e.g. `tiny:qwen3_vl`) builds that family's offline tiny model (tests, quickstart).
    model_path = model_args.model_name_or_path
    if model_path and model_path.startswith("tiny:"):
        from trl_perception.testing import build_tiny_model

        arch = model_path.split(":", 1)[1]
        tiny_factory(arch)  # an unknown family fails here, listing the families with a tiny model
        model_path = os.path.join(training_args.output_dir, "initial_model")
        if state.is_main_process:
            build_tiny_model(model_path, arch=arch, seed=training_args.seed)
        state.wait_for_everyone()

    # Model family (`model_family: auto` reads config.model_type): rewards score in its frame, prompts use its syntax.
    family = resolve_family(training_args.model_family, model=model_path)
    training_args.model_family = family.name
    state.print(f"[family] {family.name}: boxes as {family.box_syntax} in the {family.box_frame!r} frame")

    # Dataset: the built-in builders write prompts for the family unless `dataset_kwargs.family` names one.
    dataset_kwargs = {"default_family": family.name, **(script_args.dataset_kwargs or {})}
    train_dataset = load_perception_dataset(
        script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_config, **dataset_kwargs
    )
    if script_args.dataset_train_limit is not None:
        train_dataset = train_dataset.select(range(min(script_args.dataset_train_limit, len(train_dataset))))

    # Rewards
    reward_funcs = [
        resolve_reward(name, (script_args.reward_kwargs or {}).get(name)) for name in script_args.reward_funcs
    ]

    # Model and processor are loaded here (not by the trainer) so that warm start and held-out scoring use them.
    # As `trl grpo` does: ModelConfig's dtype / attention / revision, then `model_init_kwargs` on top.
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    init_kwargs = {
        "dtype": dtype,
        "attn_implementation": model_args.attn_implementation,
        "revision": model_args.model_revision,
        **(training_args.model_init_kwargs or {}),
    }
    training_args.model_init_kwargs = None  # consumed here; the trainer receives an instantiated model
    model = AutoModelForImageTextToText.from_pretrained(model_path, **init_kwargs)
    # The trainer passes this processor's pixel budget to the colocated vLLM engine and to the rewards.
    processor = load_processor(model_path, family, script_args.min_pixels, script_args.max_pixels)

    summary: dict[str, Any] = {"model": model_args.model_name_or_path, "dataset": script_args.dataset_name}
    heldout_rows = []
    if script_args.heldout_samples:
        test = load_perception_dataset(
            script_args.dataset_name, script_args.dataset_test_split, script_args.dataset_config, **dataset_kwargs
        )
        # Held-out rewards get what the trainer passes its rewards: the family and the model-input image sizes.
        heldout_rows = [
            {**test[i], "model_family": family.name, **_model_image_sizes(processor, test[i])}
            for i in range(min(script_args.heldout_samples, len(test)))
        ]

    def score(tag: str):
        result = heldout_greedy_scores(
            model,
            processor,
            heldout_rows,
            reward_funcs,
            max_new_tokens=script_args.heldout_max_new_tokens,
            chat_template_kwargs=training_args.chat_template_kwargs,
        )
        summary.setdefault("heldout", {})[tag] = {k: v for k, v in result.items() if k != "completions"}
        rewards = ", ".join(f"{name} {value:.3f}" for name, value in result["rewards"].items())
        state.print(f"[held-out {tag}] n={result['n']} greedy reward {result['reward']:.3f} ({rewards})")
        state.print(f"[held-out {tag}] sample completions: {result['completions'][:6]}")

    if heldout_rows and state.is_main_process:
        score("initial")
    if script_args.warmstart_steps:
        mode = "shuffled targets (format only)" if script_args.warmstart_shuffle_targets else "true targets"
        state.print(f"[warm start] {script_args.warmstart_steps} supervised steps on {mode}")
        losses = supervised_warm_start(
            model,
            processor,
            train_dataset,
            warmstart_target,
            steps=script_args.warmstart_steps,
            learning_rate=script_args.warmstart_learning_rate,
            batch_size=script_args.warmstart_batch_size,
            shuffle_targets=script_args.warmstart_shuffle_targets,
            seed=training_args.seed,
            log_every=max(1, script_args.warmstart_steps // 4),
            chat_template_kwargs=training_args.chat_template_kwargs,
        )
        summary["warmstart"] = {
            "steps": len(losses),
            "final_loss": losses[-1],
            "shuffle_targets": script_args.warmstart_shuffle_targets,
        }
    if heldout_rows and state.is_main_process:
        score("before")

    # GRPO
    trainer = PerceptionGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)

    if heldout_rows and state.is_main_process:
        model = trainer.model
        score("after")
        before, after = summary["heldout"]["before"], summary["heldout"]["after"]
        summary["heldout"]["improvement"] = after["reward"] - before["reward"]
        # Significance of the change in the first reward's success rate (rewards in {0, 1} count as accuracy).
        first = reward_name(reward_funcs[0])
        b, a = before["per_sample"][first], after["per_sample"][first]
        if all(v in (0.0, 1.0, None) for v in b + a):
            n = sum(v is not None for v in a)
            k_after = sum(v == 1.0 for v in a)
            test = two_proportion_test(sum(v == 1.0 for v in b), k_after, n)
            summary["heldout"]["accuracy_test"] = {"reward": first, "n": n, **test}
            counts = [row.get("count") for row in heldout_rows]
            if all(c is not None for c in counts):
                # The best any image-blind policy can do: always answer the most frequent count.
                k_blind = max(counts.count(c) for c in set(counts))
                summary["heldout"]["image_blind_baseline"] = {
                    "accuracy": k_blind / len(counts),
                    **two_proportion_test(k_blind, k_after, n),
                }
        state.print(
            f"[held-out] greedy reward before {before['reward']:.3f} -> after {after['reward']:.3f} "
            f"(+{summary['heldout']['improvement']:.3f})"
        )
        for key, label in (("accuracy_test", "after vs before"), ("image_blind_baseline", "after vs image-blind")):
            if key in summary["heldout"]:
                result = summary["heldout"][key]
                state.print(f"[held-out] {label}: z = {result['z']:.2f}, one-sided p = {result['p_value']:.2g}")
    summary["wall_time_s"] = time.time() - started
    if state.is_main_process:
        _write_run_files(training_args.output_dir, trainer.state.log_history, summary)
        state.print(f"Run directory: {training_args.output_dir} (metrics.json, metrics.csv, reward_curve.png)")
    return summary


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from trl_perception import PerceptionGRPOConfig

    return TrlParser((PerceptionScriptArguments, PerceptionGRPOConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(fail_with_unknown_args=False)[:3]
    main(script_args, training_args, model_args)
