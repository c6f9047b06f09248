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
"""The quickstart's learning claim, by running the README's two commands (`trl-perception train --config quickstart`,
then `trl-perception eval --config quickstart` on what it trained)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", [None, "tiny:qwen3_vl"], ids=["recipe-qwen2_5_vl", "qwen3_vl"])
def test_quickstart_learns_to_count(tmp_path, model):
    """The README's command as written, and with `--model_name_or_path tiny:qwen3_vl` (0-1000 JSON family)."""
    out = tmp_path / "runs" / "quickstart"  # the recipe's output_dir, in the working directory
    command = [
        sys.executable,
        "-m",
        "trl_perception.cli",
        "train",
        "--config",
        "quickstart",
    ]
    command += ["--disable_tqdm", "true"]
    if model is not None:
        command += ["--model_name_or_path", model]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # The before/after numbers are printed for the user.
    assert "[held-out before]" in proc.stdout and "[held-out after]" in proc.stdout

    summary = json.loads((out / "metrics.json").read_text())["summary"]
    heldout = summary["heldout"]
    before, after = heldout["before"]["rewards"]["count_exact"], heldout["after"]["rewards"]["count_exact"]
    blind = heldout["image_blind_baseline"]["accuracy"]
    # Real learning, not format: after GRPO the held-out greedy accuracy beats both the pre-GRPO model and the best
    # image-blind policy (always the most frequent count) by margins that chance would give with p < 1e-3.
    assert after > before and after > blind
    assert heldout["accuracy_test"]["p_value"] < 1e-3
    assert heldout["image_blind_baseline"]["p_value"] < 1e-3
    for name in ("metrics.json", "metrics.csv", "reward_curve.png"):
        assert (out / name).stat().st_size > 0
    # Rollout pictures are on by default: the first step, then every 50 of the 150 steps.
    assert sorted(os.listdir(out / "rollouts")) == [f"step_{s:06d}" for s in (1, 50, 100, 150)]
    # `--disable_tqdm true` silences the progress bars of the phases around GRPO too.
    assert "held-out scoring" not in proc.stderr and "warm start:" not in proc.stderr

    # `trl-perception eval --config quickstart` evaluates runs/quickstart on the same 300 held-out rows; read as the
    # reward reads them (the integer answer, the held-out budget of 4 tokens), its accuracy is the held-out score.
    evaluation = [sys.executable, "-m", "trl_perception.cli", "eval", "--config", "quickstart", "--count_mode",
                  "answer", "--max_new_tokens", "4", "--skip_special_tokens", "true", "--batch_size", "32", "--output_dir",
                  "eval", "--no_progress"]  # fmt: skip
    proc = subprocess.run(evaluation, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["num_samples"] == 300 and result["run"]["model"] == "runs/quickstart"
    assert abs(result["metrics"]["accuracy"] - after) <= 0.02, (result["metrics"]["accuracy"], after)
