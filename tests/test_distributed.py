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
"""Two CPU processes under `accelerate launch` with DeepSpeed ZeRO-2, through the `trl-perception train` CLI."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_deepspeed_zero2_run_completes_two_steps(tmp_path):
    # A reward with variance inside each group, so that the two steps really update the weights.
    (tmp_path / "length_reward.py").write_text(
        textwrap.dedent(
            """
            def length_reward(completions, **kwargs):
                return [float(len(c[0]["content"])) for c in completions]
            """
        )
    )
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "trl_perception.cli", "train",
        "--config", "quickstart",  # the shipped recipe and accelerate config, by name
        "--accelerate_config", "zero2_cpu",
        "--num_processes", "2",
        "--reward_funcs", "length_reward.length_reward",
        "--max_steps", "2",
        "--warmstart_steps", "0",
        "--heldout_samples", "0",
        "--per_device_train_batch_size", "8",
        "--num_generations", "4",
        "--max_completion_length", "8",
        "--learning_rate", "0.01",
        "--logging_steps", "1",
        "--output_dir", str(out),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    # Both ranks ran, under DeepSpeed.
    assert "[rank1]" in log and "deepspeed" in log.lower()

    history = json.loads((out / "metrics.json").read_text())["log_history"]
    steps = [entry for entry in history if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    assert all(entry["grad_norm"] > 0 for entry in steps)
    # The saved policy differs from the initial weights.
    before = load_file(out / "initial_model" / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
