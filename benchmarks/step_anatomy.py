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
"""Anatomy of one GRPO step of `PerceptionGRPOTrainer` on detection: where the time goes.

The paper's detection recipe (`recipes/detection_coco.yaml`: 8 rollouts per prompt, per-device batch 8, beta 0.04
with a reference model, temperature 1.0, top-p 0.9, top-k 50, the `detection` reward with the `paper` preset) scaled
to CPU: the 76 M-parameter offline Qwen2.5-VL (`trl_perception.testing`, size "small"), COCO-format rows from the
COCO builder (8 boxes per image, 320x240 images), `--max-tokens` generated tokens per rollout (EOS disabled, so every
step generates the same amount).

Timing: wall-clock time accumulated by wrapping the trainer's methods on the instance (and, to split our overrides
from TRL's, the `GRPOTrainer` methods they call with `super()`), over every step after the first (warm-up):

| phase | what is timed |
|---|---|
| generation | TRL's `_generate_single_turn` (transformers `generate` or vLLM), minus the weight sync |
| vLLM weight sync | `vllm_generation.sync_weights` (vLLM path only) |
| prompt processing | TRL's `_tokenize_prompts` (the processor pass: chat template, image resize, pixel values) |
| rewards | the reward functions themselves |
| old/ref log-probs | `_get_per_token_logps_and_entropies` without grad (reference model; old policy when needed) |
| policy forward | `_get_per_token_logps_and_entropies` with grad (the loss) |
| backward | `accelerator.backward` |
| optimizer | between `on_pre_optimizer_step` and `on_optimizer_step` |
| our bookkeeping | self time of the `PerceptionGRPOTrainer` overrides (`_tokenize_prompts`: image sizes and image-token checks; `_calculate_rewards`: reward inputs and per-task metrics; `_generate_single_turn`) |
| TRL bookkeeping | the rest of the step (`on_step_begin` to `on_step_end`): padding, advantages, masks, metrics, reward gathering |

With a random-init model the completions are not valid answers, so the detection reward stops at the parse; the
benchmark therefore also times the same reward on well-formed answers for the same rows (every GT box, jittered, in
the family's box syntax and frame) and reports its share of the measured step.

Usage:

```bash
python benchmarks/step_anatomy.py               # transformers and vLLM paths, 76 M model (slow on CPU)
python benchmarks/step_anatomy.py --size tiny --max-tokens 64   # both paths, tiny model (about 4 min)
python benchmarks/step_anatomy.py --quick       # tiny model, transformers only, 32 tokens
```
"""

import argparse
import collections
import functools
import io
import json
import os
import sys
import tempfile
import time


sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np


PHASES = (
    "generation",
    "vLLM weight sync",
    "prompt processing",
    "rewards",
    "old/ref log-probs",
    "policy forward",
    "backward",
    "optimizer",
    "our bookkeeping",
    "TRL bookkeeping",
)


def detection_rows(workdir, family, num_images=8):
    from PIL import Image

    from trl_perception.data import load_coco_detection
    from trl_perception.data.fixtures import write_coco_scale_fixture

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    write_coco_scale_fixture(
        f"{workdir}/coco", num_images, boxes_per_image=8, split="train", image_bytes=buffer.getvalue()
    )
    return load_coco_detection(f"{workdir}/coco", split="train", family=family, cache_dir=f"{workdir}/cache")


class Timers:
    def __init__(self):
        self.totals = collections.defaultdict(float)
        self.reward_calls = []

    def wrap(self, owner, name, label, grad_split=False):
        import torch

        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = label
                if grad_split:
                    key = f"{label}/{'grad' if torch.is_grad_enabled() else 'no_grad'}"
                self.totals[key] += time.perf_counter() - start

        setattr(owner, name, timed)
        return original


def run(model_path, family, cli, workdir, use_vllm):
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
    from trl_perception.rewards import get_reward

    rows = detection_rows(workdir, family)
    extra = (
        {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_max_model_length": 2048,
            "generation_kwargs": {"ignore_eos": True},
        }
        if use_vllm
        else {"generation_kwargs": {"min_new_tokens": cli.max_tokens}}
    )
    args = PerceptionGRPOConfig(
        output_dir=f"{workdir}/{'vllm' if use_vllm else 'hf'}",
        per_device_train_batch_size=8,
        num_generations=8,
        max_completion_length=cli.max_tokens,
        learning_rate=1e-6,
        beta=0.04,
        loss_type="grpo",
        scale_rewards="group",
        temperature=1.0,
        top_p=0.9,
        top_k=50,
        max_steps=cli.steps + 1,
        logging_steps=1,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        seed=0,
        **extra,
    )
    reward = get_reward("detection", preset="paper")
    timers = Timers()
    step_times = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:  # after the warm-up step: start counting
                timers.totals.clear()
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.optimizer_start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            timers.totals["optimizer"] += time.perf_counter() - self.optimizer_start

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > 1:
                step_times.append(time.perf_counter() - self.start)

    trainer = PerceptionGRPOTrainer(model_path, reward, args=args, train_dataset=rows, callbacks=[StepClock()])
    # Ours (instance attributes) and TRL's (class attributes that `super()` resolves to).
    for name in ("_tokenize_prompts", "_generate_single_turn", "_calculate_rewards"):
        timers.wrap(trainer, name, f"ours.{name}")
    originals = {
        name: timers.wrap(GRPOTrainer, name, f"trl.{name}")
        for name in ("_tokenize_prompts", "_generate_single_turn", "_calculate_rewards")
    }
    timers.wrap(trainer, "_get_per_token_logps_and_entropies", "logps", grad_split=True)
    timers.wrap(trainer.accelerator, "backward", "backward")
    if use_vllm:
        timers.wrap(trainer.vllm_generation, "sync_weights", "sync")
    # The reward functions TRL calls (it keeps them in a list).
    for i, func in enumerate(trainer.reward_funcs):

        @functools.wraps(func)
        def timed_reward(*a, _func=func, **kw):
            start = time.perf_counter()
            try:
                return _func(*a, **kw)
            finally:
                timers.totals["rewards"] += time.perf_counter() - start
                timers.reward_calls.append(kw)

        trainer.reward_funcs[i] = timed_reward
    try:
        trainer.train()
    finally:
        for name, original in originals.items():
            setattr(GRPOTrainer, name, original)
    t = timers.totals
    steps = len(step_times)
    phases = {
        "generation": t["trl._generate_single_turn"] - t["sync"],
        "vLLM weight sync": t["sync"],
        "prompt processing": t["trl._tokenize_prompts"],
        "rewards": t["rewards"],
        "old/ref log-probs": t["logps/no_grad"],
        "policy forward": t["logps/grad"],
        "backward": t["backward"],
        "optimizer": t["optimizer"],
        "our bookkeeping": (t["ours._tokenize_prompts"] - t["trl._tokenize_prompts"])
        + (t["ours._generate_single_turn"] - t["trl._generate_single_turn"])
        + (t["ours._calculate_rewards"] - t["trl._calculate_rewards"]),
    }
    total = sum(step_times)
    phases["TRL bookkeeping"] = total - sum(phases.values())
    phases = {k: v / steps for k, v in phases.items()}

    # The reward on well-formed answers for the rows of the last step (same kwargs TRL passed).
    kwargs = dict(timers.reward_calls[-1])
    prompts = kwargs.pop("prompts")
    kwargs.pop("completions")
    kwargs.pop("completion_ids", None)
    answers = well_formed_answers(kwargs, family)
    completions = [[{"role": "assistant", "content": a}] for a in answers]
    start = time.perf_counter()
    for _ in range(cli.reward_repeats):
        values = reward(prompts=prompts, completions=completions, **kwargs)
    reward_seconds = (time.perf_counter() - start) / cli.reward_repeats
    if not all(v is not None and v > 0 for v in values):
        raise RuntimeError(f"Well-formed answers should all score above 0, got {values}.")
    torch.set_grad_enabled(True)
    return total / steps, phases, reward_seconds, sum(len(b) for b in kwargs["boxes"])


def well_formed_answers(kwargs, family):
    """Every GT box of each row, jittered, as the family writes boxes (Qwen2.5-VL: JSON `bbox_2d` in model pixels)."""
    from trl_perception.families import get_family
    from trl_perception.rewards import COCO_CATEGORIES

    if get_family(family).box_frame != "resized":
        raise ValueError("well_formed_answers writes Qwen2.5-VL answers; run with --arch qwen2_5_vl.")
    rng = np.random.default_rng(1)
    answers = []
    for i, boxes in enumerate(kwargs["boxes"]):
        (model_w, model_h), width, height = kwargs["model_image_sizes"][i][0], kwargs["width"][i], kwargs["height"][i]
        sx, sy = model_w / width, model_h / height
        objects = []
        # The reward's category table is COCO's (the fixture's label strings are placeholders): name by id.
        labels = [COCO_CATEGORIES[int(c)] for c in kwargs["category_ids"][i]]
        for box, label in zip(boxes, labels, strict=True):
            x1, y1, x2, y2 = (np.asarray(box) + rng.normal(0, 1.5, 4)) * [sx, sy, sx, sy]
            objects.append({"bbox_2d": [round(float(v)) for v in (x1, y1, x2, y2)], "label": label})
        answers.append("```json\n" + json.dumps(objects) + "\n```")
    return answers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, transformers only, 32 tokens, 1 step")
    parser.add_argument("--size", default=None, help="model size of trl_perception.testing (default small)")
    parser.add_argument("--arch", default="qwen2_5_vl")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per rollout (default 64, quick 32)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps after the warm-up (default 1)")
    parser.add_argument("--reward-repeats", type=int, default=20)
    parser.add_argument("--skip-vllm", action="store_true")
    cli = parser.parse_args()
    cli.size = cli.size or ("tiny" if cli.quick else "small")
    cli.max_tokens = cli.max_tokens or (32 if cli.quick else 64)
    cli.steps = cli.steps or 1
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from trl_perception.testing import build_tiny_model

    paths = [False] if (cli.quick or cli.skip_vllm) else [False, True]
    with tempfile.TemporaryDirectory() as workdir:
        extra = {"max_pixels": 28 * 28 * 64} if cli.size == "small" else {}
        model_path = build_tiny_model(f"{workdir}/model", arch=cli.arch, size=cli.size, **extra)
        for use_vllm in paths:
            name = "vLLM colocate" if use_vllm else "transformers"
            step, phases, reward_seconds, num_boxes = run(model_path, cli.arch, cli, f"{workdir}/{name[:4]}", use_vllm)
            print(
                f"\n== {name}: one GRPO step, 8 rollouts x {cli.max_tokens} tokens, {cli.size} model, detection; "
                f"{step:.2f} s/step (mean of {cli.steps})"
            )
            for phase in PHASES:
                if phase == "vLLM weight sync" and not use_vllm:
                    continue
                print(f"  {phase:<20} {phases[phase] * 1e3:9.1f} ms  {100 * phases[phase] / step:5.1f} %")
            print(
                f"  rewards on well-formed answers ({num_boxes} GT boxes in 8 answers): {reward_seconds * 1e3:.1f} ms, "
                f"{100 * reward_seconds / step:.2f} % of the step"
            )


if __name__ == "__main__":
    main()
