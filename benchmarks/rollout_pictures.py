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
"""Rollout-picture overhead: training time per step with the pictures on (default interval) over off (budget 1.05).

Same tiny Qwen2.5-VL, data, seed and settings; runs interleaved (off, on, off, on, ...) so load drifts hit both alike.
The time is the wall time of `trainer.train()` up to the end of training, over all `--steps` steps: a run of 50 steps at the
default interval of 50 draws twice (steps 1 and 50), twice the steady-state rate, so the ratio is an upper bound.
The time one drawing takes (all prompts of a step, PNG and JSON files included) is printed too, and a second ratio
from the "on" run alone: its time over its time minus the drawing and the trainer's capture, both timed inside it.
That one is the ratio the budget is checked on: on a shared machine, the load drift between two separate runs can be
many times the overhead (measured on the shared 2-core machine, 50 steps: one drawing 167-335 ms; same-run ratio
1.001; separate-run ratios 1.13 and 1.25, in two invocations whose steps took 10.6-13.6 s).

Usage:

```bash
python benchmarks/rollout_pictures.py                     # 50 steps, 2 repeats, default interval and prompts
python benchmarks/rollout_pictures.py --steps 20 --every 10
```
"""

import argparse
import os
import statistics
import sys
import tempfile
import time


# `python benchmarks/x.py` puts benchmarks/ first on sys.path, where sibling scripts would shadow libraries.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np
from datasets import Dataset
from PIL import Image
from transformers import TrainerCallback


def _dataset(n, seed=0):
    """Grounding rows with ground truth, so every rollout is parsed and mapped as in a real run."""
    rng = np.random.default_rng(seed)
    sizes = [(64, 48), (300, 200), (97, 131), (56, 56)]
    rows = {"prompt": [], "image": [], "width": [], "height": [], "boxes": [], "task": []}
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        rows["prompt"].append([{"role": "user", "content": f"Where is object {i}? Answer with a box."}])
        rows["image"].append(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
        rows["width"].append(w)
        rows["height"].append(h)
        rows["boxes"].append([[w * 0.1, h * 0.2, w * 0.6, h * 0.7]])
        rows["task"].append("grounding")
    return Dataset.from_dict(rows)


class _Clock(TrainerCallback):
    """The end of training (after the last step's drawing)."""

    end = None

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()


def run(model_path, steps, every, prompts, output_dir):
    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
    from trl_perception.rewards import get_reward

    args = PerceptionGRPOConfig(
        output_dir,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-4,
        logging_steps=1,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        seed=0,
        max_steps=steps,
        rollout_pictures_steps=every,
        rollout_pictures_prompts=prompts,
    )
    clock = _Clock()
    trainer = PerceptionGRPOTrainer(
        model_path, [get_reward("iou")], args=args, train_dataset=_dataset(2 * steps), callbacks=[clock]
    )
    draw_times = []
    for callback in trainer._rollout_picture_callbacks():  # time each drawing, as a diagnostic
        draw = callback.draw

        def timed(*a, _draw=draw, **k):
            start = time.perf_counter()
            paths = _draw(*a, **k)
            draw_times.append(time.perf_counter() - start)
            return paths

        callback.draw = timed
    capture_times = []
    capture = trainer._capture_rollouts  # the trainer's part: runs at every generation, keeps a batch when due

    def timed_capture(*a, **k):
        start = time.perf_counter()
        capture(*a, **k)
        capture_times.append(time.perf_counter() - start)

    trainer._capture_rollouts = timed_capture
    start = time.perf_counter()
    trainer.train()
    total = clock.end - start
    return total / steps, draw_times, (total - sum(draw_times) - sum(capture_times)) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--every", type=int, default=None, help="interval (default: PerceptionGRPOConfig's)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per drawing (default: the config's)")
    cli = parser.parse_args()

    from trl_perception import PerceptionGRPOConfig
    from trl_perception.testing import build_tiny_model

    fields = PerceptionGRPOConfig.__dataclass_fields__
    every = cli.every or fields["rollout_pictures_steps"].default
    prompts = cli.prompts or fields["rollout_pictures_prompts"].default
    with tempfile.TemporaryDirectory() as workdir:
        model_path = build_tiny_model(f"{workdir}/tiny")
        off, on, on_without, draws = [], [], [], []
        for repeat in range(cli.repeats):
            off.append(run(model_path, cli.steps, 0, prompts, f"{workdir}/off{repeat}")[0])
            per_step, draw_times, without = run(model_path, cli.steps, every, prompts, f"{workdir}/on{repeat}")
            on.append(per_step)
            on_without.append(without)
            draws += draw_times
    off_mean, on_mean, without_mean = statistics.mean(off), statistics.mean(on), statistics.mean(on_without)
    print(f"{cli.steps} steps x {cli.repeats} repeats, 2 prompts x 4 rollouts per step, pictures of {prompts} prompts")
    print(f"time per step: pictures off {off_mean * 1e3:.0f} ms, on (every {every} steps) {on_mean * 1e3:.0f} ms")
    if draws:
        print(
            f"one drawing ({prompts} prompts x 4 rollouts, PNG + JSON): median {statistics.median(draws) * 1e3:.0f} ms"
        )
    print(f"overhead ratio on / off (separate runs): {on_mean / off_mean:.3f}")
    # The same run's time without what the pictures cost (drawing, the trainer's capture): immune to load drifts
    # between runs, which on a shared machine can exceed the overhead itself.
    print(f"overhead ratio on / (on minus drawing and capture), same run: {on_mean / without_mean:.4f}")


if __name__ == "__main__":
    main()
