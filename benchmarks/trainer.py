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
"""Trainer benchmarks on the offline tiny Qwen2.5-VL (CPU or GPU).

1. Overhead: median step time of `PerceptionGRPOTrainer` over stock `GRPOTrainer`, both with transformers
   generation, same model, data, seed and settings (the budget is 1.05).
2. Rollout throughput: generated tokens/s of the trainer's vLLM colocate path versus its transformers `generate`
   path (`_generate_single_turn`), on the same image prompts with the same sampling settings.

Usage:

```bash
python benchmarks/trainer.py                    # both
python benchmarks/trainer.py --skip-vllm        # overhead only
```
"""

import argparse
import os
import statistics
import sys
import tempfile
import time


# Running `python benchmarks/trainer.py` puts benchmarks/ first on sys.path, where sibling scripts (e.g.
# benchmarks/datasets.py) would shadow the libraries of the same name.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np
from datasets import Dataset
from PIL import Image


def _dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(64, 48), (300, 200), (97, 131), (56, 56)]
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"Where is object {i}? Answer with a box."}] for i in range(n)],
            "image": [
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
                for w, h in (sizes[i % len(sizes)] for i in range(n))
            ],
            "task": ["grounding" if i % 2 else "counting" for i in range(n)],
        }
    )


def _reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 7) for c in completions]


def _config(config_class, output_dir, **kwargs):
    defaults = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 16,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "seed": 0,
    }
    defaults.update(kwargs)
    return config_class(**defaults)


def step_times(trainer_class, config_class, model_path, steps, output_dir):
    dataset = _dataset(4 * steps)
    trainer = trainer_class(
        model_path, _reward, args=_config(config_class, output_dir, max_steps=steps), train_dataset=dataset
    )
    trainer.train()
    return [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]


def overhead(model_path, steps, repeats, workdir):
    from trl import GRPOConfig, GRPOTrainer

    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer

    stock, perception = [], []
    for repeat in range(repeats):  # interleaved, so machine load drifts affect both alike
        stock += step_times(GRPOTrainer, GRPOConfig, model_path, steps, f"{workdir}/stock{repeat}")[1:]
        perception += step_times(
            PerceptionGRPOTrainer, PerceptionGRPOConfig, model_path, steps, f"{workdir}/perception{repeat}"
        )[1:]
    stock_median, perception_median = statistics.median(stock), statistics.median(perception)
    print(
        f"step time (median of {len(stock)} steps): GRPOTrainer {stock_median * 1e3:.1f} ms, "
        f"PerceptionGRPOTrainer {perception_median * 1e3:.1f} ms"
    )
    print(f"overhead ratio PerceptionGRPOTrainer / GRPOTrainer: {perception_median / stock_median:.3f}")


def rollout_throughput(model_path, repeats, workdir):
    from trl.data_utils import prepare_multimodal_messages

    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer

    dataset = _dataset(16, seed=1)
    prompts = [prepare_multimodal_messages(row["prompt"], images=[row["image"]]) for row in dataset]
    num_generations = 4
    results = {}
    for name, extra in [
        ("transformers generate", {}),
        ("vLLM colocate", {"use_vllm": True, "vllm_max_model_length": 512, "vllm_gpu_memory_utilization": 0.3}),
    ]:
        args = _config(PerceptionGRPOConfig, f"{workdir}/{name.split()[0]}", max_steps=1, **extra)
        trainer = PerceptionGRPOTrainer(model_path, _reward, args=args, train_dataset=dataset)
        # Each prompt repeated num_generations times, as GRPO's sampler does.
        batch = [p for p in prompts for _ in range(num_generations)]
        prompt_ids, images, fields = trainer._tokenize_prompts(batch)
        trainer._generate_single_turn(prompt_ids, images, fields, num_generations)  # warm-up (and weight sync)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            completion_ids, _ = trainer._generate_single_turn(prompt_ids, images, fields, num_generations)
            rates.append(sum(len(c) for c in completion_ids) / (time.perf_counter() - start))
        results[name] = statistics.median(rates)
        print(f"{name}: {results[name]:.0f} generated tokens/s ({len(batch)} rollouts x <= 16 tokens, T=1.0)")
    print(f"rollout speed-up vLLM / transformers: {results['vLLM colocate'] / results['transformers generate']:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="training steps per run (the first is discarded)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-vllm", action="store_true")
    cli = parser.parse_args()

    # On the vLLM CPU build, a fixed KV cache avoids the free-memory check of `gpu_memory_utilization`.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from trl_perception.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as workdir:
        model_path = build_tiny_model(f"{workdir}/tiny")
        overhead(model_path, cli.steps, cli.repeats, workdir)
        if not cli.skip_vllm:
            rollout_throughput(model_path, cli.repeats, workdir)


if __name__ == "__main__":
    main()
