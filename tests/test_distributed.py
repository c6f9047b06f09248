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
"""Two CPU processes under `accelerate launch` with DeepSpeed ZeRO-2 and ZeRO-3, through the `trl-perception train`
CLI, and the barrier that fails fast instead of hanging when a process does not arrive."""

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


@pytest.mark.slow
@pytest.mark.parametrize("naming", ["tiny", "folder"])
def test_two_process_deepspeed_zero3_run_with_warm_start_and_heldout_scoring(tmp_path, naming):
    # ZeRO-3 partitions the weights at load time, a collective of every process: the tiny model must not be built
    # partitioned on the main process alone, and the warm start and held-out scoring must see full weights.
    from trl_perception.testing import build_tiny_model

    # The reward also records, per process, that the run really is ZeRO-3.
    (tmp_path / "length_reward.py").write_text(
        textwrap.dedent(
            """
            import os
            from transformers.integrations import is_deepspeed_zero3_enabled


            def length_reward(completions, **kwargs):
                with open(f"zero3_rank{os.environ['RANK']}.txt", "w") as f:
                    f.write(str(is_deepspeed_zero3_enabled()))
                return [float(len(c[0]["content"])) for c in completions]
            """
        )
    )
    model = "tiny:qwen2_5_vl" if naming == "tiny" else build_tiny_model(tmp_path / "saved", arch="qwen2_5_vl")
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "trl_perception.cli", "train",
        "--config", "quickstart",
        "--accelerate_config", "zero3_cpu",
        "--num_processes", "2",
        "--model_name_or_path", model,
        "--dataset_kwargs", '{"num_train": 32, "num_test": 4}',
        "--reward_funcs", "length_reward.length_reward", "count_exact",
        "--max_steps", "2",
        "--warmstart_steps", "2", "--warmstart_batch_size", "4",
        "--heldout_samples", "2",
        "--per_device_train_batch_size", "8",
        "--num_generations", "4",
        "--max_completion_length", "8",
        "--learning_rate", "0.01",
        "--logging_steps", "1",
        "--output_dir", str(out),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TRL_PERCEPTION_BARRIER_TIMEOUT": "120",  # a process that does not arrive fails the test, not the CI timeout
    }
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "[rank1]" in log
    assert [(tmp_path / f"zero3_rank{rank}.txt").read_text() for rank in (0, 1)] == ["True", "True"]

    metrics = json.loads((out / "metrics.json").read_text())
    steps = [entry for entry in metrics["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    assert all(entry["grad_norm"] > 0 for entry in steps)
    heldout = metrics["summary"]["heldout"]
    assert {"initial", "before", "after"} <= set(heldout) and all(heldout[k]["n"] == 2 for k in ("before", "after"))
    assert metrics["summary"]["warmstart"]["steps"] == 2
    # The consolidated policy (zero3_save_16bit_model) differs from the initial weights, with the same keys.
    initial = out / "initial_model" if naming == "tiny" else Path(model)
    before = load_file(initial / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


BARRIER_SCRIPT = """
import os, sys, time
import torch.distributed as dist
from trl_perception.distributed import checked_barrier

dist.init_process_group("gloo", rank=int(sys.argv[1]), world_size=2, init_method="tcp://127.0.0.1:" + sys.argv[2])
checked_barrier("start-up")  # both arrive
if dist.get_rank() == 1:
    time.sleep(30)  # stuck elsewhere, e.g. in a collective the other process skipped
else:
    checked_barrier("loading the model", timeout=2)
"""


@pytest.mark.slow
def test_a_process_that_does_not_arrive_fails_the_barrier_fast(tmp_path):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(rank), port], env=env, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    started = time.monotonic()
    try:
        _, stderr = procs[0].communicate(timeout=120)
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode != 0
    assert "waited 2 s for the others at 'loading the model'" in stderr and "TRL_PERCEPTION_BARRIER_TIMEOUT" in stderr
    assert time.monotonic() - started < 60  # seconds after the timeout, not the process group's 30 minutes


IMAGE_SPLIT_SCRIPT = """
import sys

from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer

args = PerceptionGRPOConfig(
    sys.argv[2], per_device_train_batch_size=2, num_generations=2, max_completion_length=4, max_steps=1, bf16=False,
    report_to="none", use_cpu=True, disable_tqdm=True,
)
# Two rows, one without an image: every batch holds both, one per process.
dataset = Dataset.from_dict(
    {"prompt": [[{"role": "user", "content": "Count."}]] * 2, "images": [[Image.new("RGB", (56, 56))], []]}
)
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1])  # partitioned: the config enabled ZeRO-3
trainer = PerceptionGRPOTrainer(model, lambda completions, **kw: [0.0] * len(completions), args=args,
                                train_dataset=dataset)
try:
    trainer.train()
except ValueError as e:
    print(f"process {trainer.accelerator.process_index}: {e}", flush=True)
    sys.exit(0)
sys.exit(3)
"""


@pytest.mark.slow
def test_zero3_batch_with_images_on_one_process_only_fails_instead_of_hanging(tmp_path):
    from trl_perception.shipped_recipes import ACCELERATE_DIR
    from trl_perception.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", arch="qwen2_5_vl")
    script = tmp_path / "image_split.py"
    script.write_text(IMAGE_SPLIT_SCRIPT)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_DIR / "zero3_cpu.yaml"),
        "--num_processes", "2", str(script), model, str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for rank in (0, 1):
        assert f"process {rank}: Under DeepSpeed ZeRO-3 this generation batch has images" in log
    assert "none on process(es) [1]" in log or "none on process(es) [0]" in log
