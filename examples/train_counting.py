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
"""GRPO on synthetic counting with the Python API (the quickstart without the CLI), on CPU in about a minute.

python examples/train_counting.py
"""

from transformers import AutoProcessor

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.data import load_synthetic_shapes
from trl_perception.rewards import get_reward
from trl_perception.testing import build_tiny_model


def main():
    model_path = build_tiny_model("runs/example_counting/initial_model")  # offline tiny Qwen2.5-VL
    dataset = load_synthetic_shapes(
        "counting", num_train=512, num_test=64, canvas_width=84, canvas_height=84, colors=("blue",), shapes=("square",)
    )
    trainer = PerceptionGRPOTrainer(
        model=model_path,
        reward_funcs=[get_reward("count_exact", source="answer")],
        args=PerceptionGRPOConfig(
            output_dir="runs/example_counting",
            max_steps=20,
            per_device_train_batch_size=16,
            num_generations=4,
            max_completion_length=4,
            learning_rate=1e-3,
            beta=0.0,
            loss_type="grpo",
            temperature=1.0,
            logging_steps=5,
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
        ),
        train_dataset=dataset["train"],
        processing_class=AutoProcessor.from_pretrained(model_path, padding_side="left"),
    )
    trainer.train()
    # Per-step reward components logged by the reward (accuracy, parse-failure rate, ...) and per-task groups.
    print({k: v for k, v in trainer.state.log_history[-2].items() if "count_exact" in k or k == "reward"})


if __name__ == "__main__":
    main()
