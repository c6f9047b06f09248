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
"""The quickstart with the Python API instead of the CLI: warm start, GRPO, held-out accuracy before and after.

python examples/train_counting.py      # about 2 minutes on 2 CPU cores
"""

from transformers import AutoModelForImageTextToText, AutoProcessor

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.data import load_synthetic_shapes
from trl_perception.rewards import get_reward
from trl_perception.testing import build_tiny_model
from trl_perception.warmstart import heldout_greedy_scores, supervised_warm_start


def main():
    model_path = build_tiny_model("runs/example_counting/initial_model")  # offline tiny Qwen2.5-VL
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    processor = AutoProcessor.from_pretrained(model_path, padding_side="left")
    dataset = load_synthetic_shapes(
        "counting",
        num_train=4000,
        num_test=300,
        canvas_width=84,
        canvas_height=84,
        colors=("blue",),
        shapes=("square",),
        prompt="How many shapes?",
        system_prompt="Count.",
    )
    reward = get_reward("count_exact", source="answer")
    heldout = [dataset["test"][i] for i in range(len(dataset["test"]))]

    # A short supervised warm start teaches the answer format (a number); GRPO then has a reward signal.
    supervised_warm_start(model, processor, dataset["train"], lambda row: str(row["count"]), steps=60)
    before = heldout_greedy_scores(model, processor, heldout, [reward], max_new_tokens=4)["reward"]

    trainer = PerceptionGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=PerceptionGRPOConfig(
            output_dir="runs/example_counting",
            max_steps=150,
            per_device_train_batch_size=64,
            num_generations=4,
            max_completion_length=4,
            learning_rate=5e-4,
            beta=0.0,
            loss_type="grpo",
            temperature=1.0,
            logging_steps=10,
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
        ),
        train_dataset=dataset["train"],
        processing_class=processor,
    )
    trainer.train()
    after = heldout_greedy_scores(trainer.model, processor, heldout, [reward], max_new_tokens=4)["reward"]
    print(f"held-out greedy accuracy: before GRPO {before:.3f} -> after GRPO {after:.3f}")


if __name__ == "__main__":
    main()
