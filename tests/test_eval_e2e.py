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
"""End to end: ``trl-perception eval`` (via `trl_perception.eval.cli.main`) with the tiny random model on builder
fixtures, for every task and both backends.

Random weights produce garbage text, so these tests check the plumbing: every sample is generated, parsed (failures
counted with a reason), scored, and the run directory is complete with defined metrics.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_perception.data.fixtures import (
    write_coco_fixture,
    write_fox_fixture,
    write_pixmo_fixture,
    write_refcoco_fixture,
)
from trl_perception.eval.cli import main
from trl_perception.parsing import PARSE_ERRORS
from trl_perception.testing import build_tiny_model


ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.slow

PRIMARY = {"grounding": "acc@0.5", "counting": "accuracy", "ocr": "edit_distance", "detection": "AP"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


@pytest.fixture(scope="module")
def task_args(tmp_path_factory):
    """CLI dataset arguments per task, pointing at official-format fixtures."""
    root = tmp_path_factory.mktemp("fixtures")
    cache = str(root / "cache")
    ref = write_refcoco_fixture(root / "refcoco")
    pix = write_pixmo_fixture(root / "pixmo")
    fox = write_fox_fixture(root / "fox")
    coco = write_coco_fixture(root / "coco")
    common = ["--cache-dir", cache]
    return {
        "grounding": ["--dataset", "refcoco", "--data-dir", str(ref["data_dir"]), "--image-dir",
                      str(ref["image_dir"]), "--split", "testA", *common],
        "counting": ["--dataset", "pixmo_count", "--data-dir", str(pix["data_dir"]), "--image-dir",
                     str(pix["image_dir"]), "--split", "validation", *common],
        "ocr": ["--dataset", "page_ocr_zh", "--data-dir", str(fox["data_dir"]), *common],
        "detection": ["--dataset", "coco_detection", "--data-dir", str(coco["root"]), "--split", "validation",
                      *common],
    }  # fmt: skip


def run_cli(task, model, dataset_args, out, backend, extra=(), vllm_dtype="float32"):
    argv = ["--task", task, "--model", model, *dataset_args, "--backend", backend, "--output-dir", str(out),
            "--max-new-tokens", "12", "--batch-size", "2", "--no-progress", *extra]  # fmt: skip
    if backend == "vllm":
        argv += ["--max-model-len", "1024", "--dtype", vllm_dtype]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def check_run_dir(task, out, summary, min_samples):
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == summary["num_samples"] >= min_samples
    for record in records:
        assert isinstance(record["completion"], str)
        assert record["failure"] is None or record["failure"] in (*PARSE_ERRORS, "invalid_box")
        assert 0.0 <= record["score"] <= 1.0
        assert record["num_completion_tokens"] <= 12
        assert record["finish_reason"] in ("stop", "length")
    failures = sum(r["failure"] is not None for r in records)
    assert sum(summary["failures"].values()) == failures
    value = summary["metrics"][PRIMARY[task]]
    assert value is not None and math.isfinite(value)
    assert "| Model |" in (out / "results.md").read_text()
    if task in ("grounding", "detection", "counting"):
        assert list((out / "visualizations").glob("sample_*.png"))
    if task == "counting":
        assert (out / "visualizations" / "counting_confusion.png").is_file()
    if task == "detection":
        assert summary["metrics"]["num_images"] == summary["num_samples"]
        assert (out / "coco_results.json").is_file()
    return records


@pytest.mark.parametrize("task", ["grounding", "counting", "ocr", "detection"])
def test_cli_hf_backend(task, tiny_model, task_args, tmp_path):
    out = tmp_path / "run"
    summary = run_cli(task, tiny_model, task_args[task], out, "hf")
    check_run_dir(task, out, summary, min_samples=2)
    assert summary["run"]["backend"] == "hf"
    # Resolved from the checkpoint's model type: Qwen2.5-VL boxes are in resized model-input pixels.
    assert summary["config"]["frame"] == "resized"
    assert summary["run"]["family"] == "qwen2_5_vl"


def test_cli_hf_limit_and_qwen2_vl_frame(task_args, tmp_path):
    model = build_tiny_model(tmp_path / "qwen2_vl", arch="qwen2_vl")
    out = tmp_path / "run"
    summary = run_cli("grounding", model, task_args["grounding"], out, "hf", extra=["--limit", "1"])
    assert summary["num_samples"] == 1
    assert summary["config"]["frame"] == "grid_1000"  # Qwen2-VL's <|box_start|> pairs are on a 0-1000 grid
    assert summary["run"]["family"] == "qwen2_vl"
    assert summary["run"]["backend_kwargs"]["skip_special_tokens"] is False  # Qwen2-VL box tokens are kept


@pytest.mark.parametrize("task", ["grounding", "counting", "ocr", "detection"])
def test_cli_vllm_backend(task, tiny_model, task_args, tmp_path):
    out = tmp_path / "run"
    summary = run_cli(task, tiny_model, task_args[task], out, "vllm")
    records = check_run_dir(task, out, summary, min_samples=2)
    assert summary["run"]["backend"] == "vllm"
    if task == "grounding":
        # Same pixel budget as the HF processor: same prompt length and model-input size per sample.
        hf_out = tmp_path / "hf"
        run_cli(task, tiny_model, task_args[task], hf_out, "hf")
        hf_records = [json.loads(line) for line in (hf_out / "predictions.jsonl").read_text().splitlines()]
        assert [r["num_prompt_tokens"] for r in records] == [r["num_prompt_tokens"] for r in hf_records]
        assert [r["model_image_size"] for r in records] == [r["model_image_size"] for r in hf_records]


def test_cli_vllm_pixel_budget_override(tiny_model, task_args, tmp_path):
    """--max-pixels reaches both the HF processor and vLLM (checked by the backend on its first batch)."""
    small = tmp_path / "small"
    summary = run_cli("grounding", tiny_model, task_args["grounding"], small, "vllm", extra=["--max-pixels", "3136"])
    records = [json.loads(line) for line in (small / "predictions.jsonl").read_text().splitlines()]
    for record in records:
        width, height = record["model_image_size"]
        assert width * height <= 3136
    assert summary["run"]["backend_kwargs"]["max_pixels"] == 3136


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5", "internvl"])
def test_cli_newer_families_with_frame_auto_on_both_backends(family, task_args, tmp_path):
    """`--frame auto` resolves each family from its checkpoint; both backends see the same prompts and resize."""
    model = build_tiny_model(tmp_path / family, arch=family)
    runs = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        # vLLM's CPU Gated DeltaNet kernel (Qwen3.5's linear-attention layers) runs in bfloat16 only.
        dtype = "bfloat16" if family == "qwen3_5" else "float32"
        summary = run_cli("grounding", model, task_args["grounding"], out, backend, ["--limit", "2"], dtype)
        check_run_dir("grounding", out, summary, min_samples=2)
        assert summary["config"]["frame"] == "grid_1000"  # Qwen3-VL / Qwen3.5 / InternVL: 0-1000 relative boxes
        assert summary["config"]["family"] == summary["run"]["family"] == family
        runs[backend] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for key in ("num_prompt_tokens", "model_image_size"):
        assert [r[key] for r in runs["hf"]] == [r[key] for r in runs["vllm"]]


def test_cli_chat_template_kwargs_switch_qwen3_5_thinking_off(task_args, tmp_path):
    """`--chat-template-kwargs` reaches the prompt as `GRPOConfig.chat_template_kwargs` does in training: Qwen3.5's
    template opens `<think>` by default, and closes an empty one with `enable_thinking: false`."""
    model = build_tiny_model(tmp_path / "qwen3_5", arch="qwen3_5")
    lengths = {}
    for name, extra in (("default", []), ("no-thinking", ["--chat-template-kwargs", '{"enable_thinking": false}'])):
        out = tmp_path / name
        # A process of its own: once vLLM is imported (earlier tests here), transformers 5.17 no longer builds the
        # Qwen3.5 vision tower ("Qwen3_5VisionConfig has no attribute num_attention_heads").
        argv = ["--task", "grounding", "--model", model, *task_args["grounding"], "--backend", "hf",
                "--output-dir", str(out), "--max-new-tokens", "12", "--batch-size", "2", "--no-progress",
                "--limit", "2", *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "trl_perception.cli", "eval", *argv]
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((out / "metrics.json").read_text())
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        lengths[name] = [r["num_prompt_tokens"] for r in records]
    assert summary["run"]["backend_kwargs"]["chat_template_kwargs"] == {"enable_thinking": False}
    # "<think>\n" becomes "<think>\n\n</think>\n\n" at the end of every prompt.
    assert all(b > a for a, b in zip(lengths["default"], lengths["no-thinking"], strict=True))


def test_cli_chat_template_kwargs_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit):
        main(["--task", "grounding", "--model", "m", "--dataset", "refcoco", "--chat-template-kwargs", "[1]"])
    assert "expected a JSON object" in capsys.readouterr().err


def test_cli_config_quickstart_evaluates_the_recipes_held_out_split(tmp_path, monkeypatch):
    """`--config quickstart` with the untrained start (`tiny:qwen2_5_vl`): the quickstart's test split (its prompts,
    its 84 px images), the counting task and the recipe's dtype, without naming any of them."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    # Fewer rows than the recipe's (a dict merges: the other keys stay); test rows do not depend on `num_train`.
    kwargs = json.dumps({"num_train": 1, "num_test": 6, "cache_dir": str(tmp_path / "cache")})
    argv = ["--config", "quickstart", "--model_name_or_path", "tiny:qwen2_5_vl", "--dataset_kwargs", kwargs,
            "--limit", "4", "--max_new_tokens", "4", "--output_dir", str(out), "--no_progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["task"] == "counting" and summary["num_samples"] == 4
    assert summary["run"]["split"] == "test" and summary["run"]["recipe"].endswith("quickstart.yaml")
    assert summary["run"]["dataset_kwargs"]["colors"] == ["blue"] and summary["run"]["dataset_kwargs"]["num_test"] == 6
    assert summary["run"]["backend_kwargs"]["dtype"] == "float32"
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"synthetic-counting/test/{i}" for i in range(4)]
    assert all(r["model_image_size"] == [84, 84] for r in records)
    assert (out / "visualizations" / "counting_confusion.png").is_file()
