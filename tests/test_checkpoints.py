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
"""Checkpoints: which are complete, which one `--resume_from_checkpoint true` picks, and loading their weights under
the model's key names (real tiny Qwen2.5-VL checkpoints); the run directory's metric files and manifest."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import safetensors.torch
import torch
from datasets import Dataset
from transformers import AutoModelForImageTextToText

from trl_perception.checkpoints import (
    is_complete_checkpoint,
    latest_checkpoint,
    load_checkpoint_weights,
    resolve_resume_argument,
)
from trl_perception.cli import main
from trl_perception.run_files import (
    RunFilesCallback,
    build_run_manifest,
    dataset_record,
    write_metrics,
    write_run_manifest,
)
from trl_perception.scripts.train import make_parser
from trl_perception.shipped_recipes import RECIPES_DIR
from trl_perception.testing import build_tiny_model


ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(RECIPES_DIR / "quickstart.yaml")


def _checkpoint(output_dir: Path, step: int, state: str | None = "{}", weights: bool = True) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if weights:
        (path / "model.safetensors").write_bytes(b"")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    _checkpoint(tmp_path, 2)
    ten = _checkpoint(tmp_path, 10)  # by step, not by name: 10 > 9
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 12, state=None)  # killed before trainer_state.json
    _checkpoint(tmp_path, 14, state='{"global_st')  # killed while writing it
    _checkpoint(tmp_path, 16, weights=False)
    (tmp_path / "checkpoint-final").mkdir()
    assert latest_checkpoint(str(tmp_path)) == str(ten)
    assert resolve_resume_argument("true", str(tmp_path)) == str(ten)
    assert resolve_resume_argument(True, str(tmp_path)) == str(ten)
    assert not is_complete_checkpoint(str(tmp_path / "checkpoint-14"))


@pytest.mark.parametrize("value", [None, False, "false", "False", ""])
def test_no_resume(tmp_path, value):
    assert resolve_resume_argument(value, str(tmp_path)) is None


def test_resume_errors_name_the_fix(tmp_path):
    _checkpoint(tmp_path, 3, state=None)
    with pytest.raises(ValueError, match=r"No complete checkpoint .* \(checkpoint-3 skipped: incomplete"):
        resolve_resume_argument("true", str(tmp_path))
    with pytest.raises(ValueError, match="is incomplete"):
        resolve_resume_argument(str(tmp_path / "checkpoint-3"), str(tmp_path))
    with pytest.raises(ValueError, match="is not a directory"):
        resolve_resume_argument(str(tmp_path / "checkpoint-9"), str(tmp_path))


def test_resume_without_a_checkpoint_fails_before_launch(capsys, tmp_path, monkeypatch):
    def launch(args, output_dir):
        raise AssertionError("launched")

    monkeypatch.setattr("trl_perception.cli._launch", launch)
    code = main(["train", "--config", QUICKSTART, "--output_dir", str(tmp_path), "--resume_from_checkpoint", "true"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().startswith("trl-perception train: error: No complete checkpoint to resume from")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "model"), seed=0)


def test_checkpoint_weights_load_under_the_model_key_names(tiny, tmp_path):
    trained = AutoModelForImageTextToText.from_pretrained(tiny)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter))
    trained.save_pretrained(tmp_path / "checkpoint-1")
    saved = safetensors.torch.load_file(tmp_path / "checkpoint-1" / "model.safetensors")
    # The checkpoint keeps the original layout: a plain load_state_dict finds almost none of its keys.
    assert "visual.patch_embed.proj.weight" in saved and "model.visual.patch_embed.proj.weight" not in saved
    plain = AutoModelForImageTextToText.from_pretrained(tiny)
    assert len(plain.load_state_dict(saved, strict=False).missing_keys) > 50

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    parameters = {name: id(p) for name, p in model.named_parameters()}
    load_checkpoint_weights(model, str(tmp_path / "checkpoint-1"))
    expected = trained.state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[name]) for name, value in model.state_dict().items())
    assert {name: id(p) for name, p in model.named_parameters()} == parameters  # in place: optimizer-safe


def test_a_checkpoint_that_does_not_match_the_model_is_an_error(tiny, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny)
    model.save_pretrained(tmp_path / "checkpoint-1")
    path = tmp_path / "checkpoint-1" / "model.safetensors"
    saved = safetensors.torch.load_file(path)
    del saved["visual.merger.ln_q.weight"]
    saved["extra.weight"] = torch.zeros(1)
    safetensors.torch.save_file(saved, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 model weights are missing .*model\.visual\.merger\.ln_q\.weight"):
        load_checkpoint_weights(model, str(tmp_path / "checkpoint-1"))


# -- run files ------------------------------------------------------------------------------------------------------


def test_metrics_are_written_whole(tmp_path):
    write_metrics(str(tmp_path), [{"step": 1, "reward": 0.5}, {"step": 2, "loss": 0.1}], {"model": "m"})
    assert json.loads((tmp_path / "metrics.json").read_text())["log_history"][1] == {"step": 2, "loss": 0.1}
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["loss,reward,step", ",0.5,1", "0.1,,2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]  # no temporary files


def test_the_callback_writes_metrics_at_each_log_and_the_curve_at_each_save(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args, control = TrainingArguments(str(tmp_path), report_to="none"), TrainerControl()
    summary = {"heldout": {"before": {"reward": 0.1}}}
    callback, state = RunFilesCallback(str(tmp_path), summary), TrainerState()
    state.log_history.append({"step": 1, "reward": 0.25})
    callback.on_log(args, state, control, logs=state.log_history[-1])
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "summary": summary,
        "log_history": [{"step": 1, "reward": 0.25}],
    }
    assert not (tmp_path / "reward_curve.png").exists()
    callback.on_save(args, state, control)
    assert (tmp_path / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state.log_history.append({"step": 2, "reward": 0.5})
    summary["heldout"]["after"] = {"reward": 0.6}  # later changes to the summary reach later writes
    callback.on_log(args, state, control, logs=state.log_history[-1])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert len(written["log_history"]) == 2 and written["summary"]["heldout"]["after"] == {"reward": 0.6}
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3


def test_run_manifest_records_what_reproduces_the_run(tmp_path):
    argv = ["--config", QUICKSTART, "--seed", "7", "--output_dir", str(tmp_path)]
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv, fail_with_unknown_args=False)[
        :3
    ]
    dataset = Dataset.from_dict({"count": [1, 2, 3]})
    manifest = build_run_manifest(
        script_args=script_args,
        training_args=training_args,
        model_args=model_args,
        argv=argv,
        datasets={"train": dataset_record(dataset, "synthetic_shapes", "counting", "train")},
    )
    path = write_run_manifest(str(tmp_path), manifest)
    written = json.loads(Path(path).read_text())
    assert written["recipe"]["sha256"] == hashlib.sha256(Path(QUICKSTART).read_bytes()).hexdigest()
    assert written["seeds"]["seed"] == 7 and written["config"]["training"]["seed"] == 7
    assert written["config"]["script"]["dataset_kwargs"]["num_train"] == 4000
    assert written["datasets"]["train"]["num_rows"] == 3 and written["datasets"]["train"]["fingerprint"]
    assert written["model"]["model_name_or_path"] == "tiny:qwen2_5_vl"
    for package in ("trl", "transformers", "torch"):
        assert written["packages"][package]
    assert written["source"]["uv_lock_sha256"] == hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert written["source"]["git_commit"] == head.stdout.strip()
    # A resumed launch keeps the earlier one.
    write_run_manifest(str(tmp_path), {**manifest, "resumed_from": "checkpoint-2"})
    written = json.loads(Path(path).read_text())
    assert written["resumed_from"] == "checkpoint-2"
    assert [launch["resumed_from"] for launch in written["previous_launches"]] == [None]


# -- stopping the command stops the training processes ---------------------------------------------------------------

SLEEPER = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    time.sleep(0.1)
"""


def _start_launcher(tmp_path, preexec_fn):
    """The launcher of `trl-perception train` running a real `accelerate launch` of a script that sleeps until stopped;
    returns it and the training process once that has started."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    pid_file = tmp_path / "pid"
    code = (
        "import sys; from trl_perception.cli import _launch; "
        f"sys.exit(_launch(['--num_processes', '1', 'sleeper.py', {str(pid_file)!r}], output_dir='run'))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn
    )
    deadline = time.monotonic() + 300
    while not (pid_file.exists() and pid_file.read_text()):
        assert launcher.poll() is None, launcher.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return launcher, psutil.Process(int(pid_file.read_text()))


def _assert_stopped(launcher, training, signum):
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name}" in err
    deadline = time.monotonic() + 30
    while _alive(training):
        assert time.monotonic() < deadline, "the training process outlived the launcher"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_launcher_reaches_the_training_process(tmp_path, signum):
    # As from a terminal, whatever this test runs under (a background job ignores SIGINT, nohup SIGHUP).
    launcher, training = _start_launcher(tmp_path, lambda: signal.signal(signum, signal.SIG_DFL))
    launcher.send_signal(signum)
    _assert_stopped(launcher, training, signum)


def test_an_ignored_sighup_is_not_forwarded_and_sigterm_still_stops_the_run(tmp_path):
    """Under `nohup` (SIGHUP ignored) closing the terminal must not stop the run; SIGTERM still stops all of it."""

    def as_nohup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    launcher, training = _start_launcher(tmp_path, as_nohup)
    launcher.send_signal(signal.SIGHUP)
    time.sleep(2)
    assert launcher.poll() is None and _alive(training)
    launcher.send_signal(signal.SIGTERM)
    _assert_stopped(launcher, training, signal.SIGTERM)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
