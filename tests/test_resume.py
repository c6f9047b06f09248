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
"""Stopping and resuming `trl-perception train`, end to end through `accelerate launch`: SIGTERM stops every training
process, the run directory keeps the metrics logged so far, `--resume_from_checkpoint true` skips an incomplete
checkpoint, and the resumed run ends bit-identical to an uninterrupted one (steps, logged history, weights)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import safetensors.torch
import torch

from trl_perception.checkpoints import latest_checkpoint, load_checkpoint_weights
from trl_perception.shipped_recipes import RECIPES_DIR


ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(RECIPES_DIR / "quickstart.yaml")
# Four GRPO steps with a checkpoint every two; a two-step warm start and two held-out rows, which a resumed run must
# not repeat. `stall` is a zero-weight reward that, in GRPO step STALL_AT (held-out scoring passes no `trainer_state`),
# marks a file and hangs, so the run can be stopped at a known point.
ARGS = [
    "--config", QUICKSTART,
    "--dataset_kwargs", '{"num_train": 32, "num_test": 4}',
    "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
    "--per_device_train_batch_size", "4", "--num_generations", "2",
    "--warmstart_steps", "2", "--warmstart_batch_size", "4", "--heldout_samples", "2",
    "--reward_funcs", "count_exact", "stall_rewards.stall", "--reward_weights", "1", "0",
    "--disable_tqdm", "true",
]  # fmt: skip
STALL_REWARDS = """
import os
import time


def stall(completions, trainer_state=None, **kwargs):
    if trainer_state is not None and os.environ.get("STALL_AT") == str(trainer_state.global_step + 1):
        open(os.environ["STALL_MARKER"], "w").close()
        while True:
            time.sleep(1)
    return [0.0] * len(completions)
"""
# Wall-clock entries differ between runs; everything else a step logs must be identical.
TIMING_KEYS = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def _start(cwd: Path, output_dir: Path, *extra: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "trl_perception.cli", "train", *ARGS, "--output_dir", str(output_dir), *extra],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 1200) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:] + err[-5000:]
    return out, err


def _steps(history: list[dict]) -> dict[int, dict]:
    return {e["step"]: {k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history if "reward" in e}


@pytest.mark.slow
def test_sigterm_stops_the_run_and_resume_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "stall_rewards.py").write_text(textwrap.dedent(STALL_REWARDS))
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    marker = tmp_path / "stalled"
    uninterrupted = _start(tmp_path, full)
    interrupted = _start(tmp_path, stopped, STALL_AT="3", STALL_MARKER=str(marker))

    # Stop the second run while it hangs in step 3, after its step-2 checkpoint.
    deadline = time.monotonic() + 1200
    while not marker.exists():
        assert interrupted.poll() is None, interrupted.communicate()[1][-5000:]
        assert time.monotonic() < deadline, "the run never reached step 3"
        time.sleep(0.5)
    tree = [interrupted.pid, *(p.pid for p in psutil.Process(interrupted.pid).children(recursive=True))]
    assert len(tree) >= 3  # the command, accelerate launch and the training process
    started = time.monotonic()
    interrupted.send_signal(signal.SIGTERM)
    _, err = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err and "--resume_from_checkpoint true" in err
    # Every process of the run is gone (none trains on as an orphan).
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in tree):
        assert time.monotonic() - started < 30, f"processes left running: {tree}"
        time.sleep(0.2)

    # The stopped run kept what it logged and its picture of the reward (refreshed at the step-2 save).
    history = json.loads((stopped / "metrics.json").read_text())["log_history"]
    assert sorted(_steps(history)) == [1, 2]
    assert "step" in (stopped / "metrics.csv").read_text().splitlines()[0]
    assert (stopped / "reward_curve.png").stat().st_size > 0
    assert json.loads((stopped / "run_manifest.json").read_text())["resumed_from"] is None
    # Its checkpoint loads, every weight under the model's names.
    assert latest_checkpoint(str(stopped)) == str(stopped / "checkpoint-2")
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(stopped / "initial_model")
    load_checkpoint_weights(model, str(stopped / "checkpoint-2"))

    # A checkpoint whose write was cut short (weights, no trainer_state.json) is not the one `true` resumes.
    (stopped / "checkpoint-3").mkdir()
    shutil.copy(stopped / "checkpoint-2" / "model.safetensors", stopped / "checkpoint-3")
    resumed_out, _ = _finish(_start(tmp_path, stopped, "--resume_from_checkpoint", "true"))
    full_out, _ = _finish(uninterrupted)

    assert f"[resume] from {stopped / 'checkpoint-2'}" in resumed_out
    for phase in ("[warm start]", "[held-out initial]", "[held-out before]"):
        assert phase in full_out and phase not in resumed_out
    assert "[held-out after]" in resumed_out

    full_metrics = json.loads((full / "metrics.json").read_text())
    resumed_metrics = json.loads((stopped / "metrics.json").read_text())
    full_steps, resumed_steps = _steps(full_metrics["log_history"]), _steps(resumed_metrics["log_history"])
    assert sorted(resumed_steps) == [1, 2, 3, 4]
    assert resumed_steps[3]["grad_norm"] > 0  # the resumed steps learn: the comparison below is not trivial
    for step in (3, 4):
        assert resumed_steps[step] == full_steps[step], step
    # The held-out scores before training come from the first launch; after training they match.
    for tag in ("before", "after"):
        assert resumed_metrics["summary"]["heldout"][tag] == full_metrics["summary"]["heldout"][tag], tag
    state = json.loads((stopped / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    # Final weights: bit-identical, and not those of the checkpoint it resumed from.
    final = safetensors.torch.load_file(stopped / "model.safetensors")
    reference = safetensors.torch.load_file(full / "model.safetensors")
    at_step_2 = safetensors.torch.load_file(stopped / "checkpoint-2" / "model.safetensors")
    assert final.keys() == reference.keys() and len(final) == 57
    assert all(torch.equal(final[k], reference[k]) for k in final)
    assert not all(torch.equal(final[k], at_step_2[k]) for k in final)

    manifest = json.loads((stopped / "run_manifest.json").read_text())
    assert manifest["resumed_from"] == str(stopped / "checkpoint-2")
    assert [launch["resumed_from"] for launch in manifest["previous_launches"]] == [None]
