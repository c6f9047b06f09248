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
"""Rollout pictures: parsed predictions in original pixels per task (fast, hand-built batches), the tracker dispatch,
and a short real training run that leaves the pictures and the streamed metrics in the run directory."""

import json
import logging
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from trl_perception import PerceptionGRPOConfig
from trl_perception.rewards import get_reward
from trl_perception.rollout_pictures import (
    ROLLOUTS_DIR,
    RolloutBatch,
    RolloutPicturesCallback,
    infer_task,
    prompt_records,
)


def _image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _batch(rows, completions, rewards, reward_funcs=(), names=("r",), advantages=None, num_generations=None):
    return RolloutBatch(
        rows=rows,
        completions=completions,
        rewards=rewards,
        reward_names=list(names),
        reward_weights=[1.0] * len(names),
        advantages=advantages if advantages is not None else [0.5 - i for i in range(len(rows))],
        num_generations=num_generations or len(rows),
        reward_funcs=list(reward_funcs),
    )


def test_grounding_boxes_in_original_pixels():
    # Qwen2.5-VL answers in the resized frame: a 200x100 image seen at 400x200 halves every coordinate.
    row = {
        "id": "g0",
        "task": "grounding",
        "prompt": [{"role": "user", "content": "Where is the cat?"}],
        "image": _image(200, 100),
        "width": 200,
        "height": 100,
        "boxes": [[20.0, 10.0, 120.0, 60.0]],
        "labels": ["cat"],
        "model_family": "qwen2_5_vl",
        "model_image_sizes": [[400, 200]],
    }
    completions = ['[{"bbox_2d": [40, 20, 240, 120]}]', "no box here"]
    iou = get_reward("iou")
    batch = _batch([row, row], completions, [[1.0], [0.0]], [iou], names=["iou"], advantages=[0.7, -0.7])
    [(record, image)] = prompt_records(batch, num_prompts=4)
    assert image.size == (200, 100)
    assert record["task"] == "grounding" and record["frame"] == "resized"
    assert record["model_image_size"] == [400, 200]
    first, second = record["rollouts"]
    assert first["prediction"] == [20.0, 10.0, 120.0, 60.0] and first["score"] == pytest.approx(1.0)
    assert first["parsed"] == [40.0, 20.0, 240.0, 120.0]
    assert first["rewards"] == {"iou": 1.0} and first["advantage"] == pytest.approx(0.7)
    assert second["failure"] == "no_boxes" and second["prediction"] is None and second["reward"] == 0.0


def test_grid_1000_family_and_two_prompts():
    # Qwen2-VL answers on the 0-1000 grid; two prompts of two rollouts each, one prompt drawn.
    rows = [
        {"task": "grounding", "image": _image(300, 150), "width": 300, "height": 150, "boxes": [[0, 0, 150, 75]]}
        | {"model_family": "qwen2_vl", "prompt": "p"}
    ] * 2 + [{"task": "grounding", "image": _image(50, 50), "width": 50, "height": 50, "boxes": [[0, 0, 5, 5]]}] * 2
    completions = ["<|box_start|>(0,0),(500,500)<|box_end|>"] * 4
    records = prompt_records(_batch(rows, completions, [[0.3]] * 4, num_generations=2), num_prompts=1)
    assert len(records) == 1 and len(records[0][0]["rollouts"]) == 2
    assert records[0][0]["frame"] == "grid_1000"
    assert records[0][0]["rollouts"][0]["prediction"] == pytest.approx([0.0, 0.0, 150.0, 75.0])


def test_counting_ocr_detection_and_text_only_rows():
    counting = {
        "task": "counting",
        "image": _image(64, 64),
        "width": 64,
        "height": 64,
        "count": 2,
        "points": [[10.0, 10.0], [40.0, 40.0]],
        "boxes": [],
        "model_family": "qwen2_5_vl",
        "model_image_sizes": [[64, 64]],
    }
    ocr = {"task": "ocr", "image": _image(80, 40), "width": 80, "height": 40, "text": "hello world"}
    detection = {
        "task": "detection",
        "image": _image(100, 100),
        "width": 100,
        "height": 100,
        "boxes": [[10, 10, 50, 50]],
        "labels": ["cat"],
        "category_ids": [17],
        "model_family": "qwen2_5_vl",
        "model_image_sizes": [[200, 200]],
    }
    plain = {"prompt": [{"role": "user", "content": "hi"}], "image": _image(30, 30)}
    rows = [counting, counting, ocr, detection, plain]
    completions = [
        '[{"bbox_2d": [0, 0, 8, 8]}, {"bbox_2d": [30, 30, 50, 50]}]',
        "<answer>5</answer>",
        "<answer>hello wrld</answer>",
        '[{"bbox_2d": [20, 20, 100, 100], "label": "cat"}, {"bbox_2d": [0, 0, 9, 9], "label": "unicorn"}]',
        "just text",
    ]
    batch = _batch(rows, completions, [[1.0], [0.0], [0.9], [1.0], [None]], num_generations=1)
    records = [record for record, _ in prompt_records(batch, num_prompts=10)]
    assert [r["task"] for r in records] == ["counting", "counting", "ocr", "detection", None]
    boxes_count, answer_count = records[0]["rollouts"][0], records[1]["rollouts"][0]
    assert boxes_count["prediction"] == 2 and boxes_count["score"] == 1.0
    assert boxes_count["boxes"] == [[0.0, 0.0, 8.0, 8.0], [30.0, 30.0, 50.0, 50.0]]
    assert records[0]["ground_truth"]["points"] == [[10.0, 10.0], [40.0, 40.0]]
    assert answer_count["prediction"] == 5 and answer_count["score"] == 0.0
    assert records[2]["rollouts"][0]["prediction"] == "hello wrld"
    assert records[2]["ground_truth"] == {"text": "hello world"}
    detections = records[3]["rollouts"][0]
    # COCO's category table (the detection reward's default): "cat" is id 17, "unicorn" is unknown and dropped.
    assert detections["prediction"] == [
        {"bbox": [10.0, 10.0, 50.0, 50.0], "label": "cat", "category_id": 17, "score": 1.0}
    ]
    assert detections["num_unknown_labels"] == 1 and detections["score"] == 1.0
    # No perception ground truth: the completion and its numbers only, nothing parsed.
    assert set(records[4]["rollouts"][0]) == {"completion", "rewards", "reward", "advantage"}
    assert records[4]["rollouts"][0]["reward"] is None


def test_missing_ground_truth_is_an_error_in_the_record_not_a_crash(tmp_path):
    row = {"task": "ocr", "image": _image(20, 20)}  # an OCR row without `text`
    callback = RolloutPicturesCallback(every_steps=1, num_prompts=1)
    paths = callback.draw(_batch([row], ["x"], [[0.0]]), step=3, output_dir=str(tmp_path))
    record = json.loads((tmp_path / ROLLOUTS_DIR / "step_000003" / "prompt_00.json").read_text())
    assert record["rollouts"][0]["failure"].startswith("error:") and "text" in record["rollouts"][0]["failure"]
    assert [os.path.basename(p) for p in paths] == ["prompt_00.png"]


def test_infer_task():
    assert infer_task({"task": "ocr"}) == "ocr"
    assert infer_task({"boxes": [[0, 0, 1, 1], [1, 1, 2, 2]], "category_ids": [1, 2]}) == "detection"
    assert infer_task({"text": "a"}) == "ocr" and infer_task({"boxes": []}) is None


def test_due_draws_first_step_then_once_per_interval():
    callback = RolloutPicturesCallback(every_steps=10)
    drawn = []
    for step in range(1, 40, 3):  # a generation every 3 steps (steps_per_generation=3)
        if callback.due(step):
            callback.capture(None, step)
            drawn.append(step)
    assert drawn == [1, 10, 22, 31]
    with pytest.raises(ValueError, match="rollout_pictures_steps=0"):
        RolloutPicturesCallback(every_steps=0)
    with pytest.raises(ValueError, match="rollout_pictures_steps"):
        PerceptionGRPOConfig("out", rollout_pictures_steps=-1, report_to="none")


def test_trackers_get_the_pictures_and_a_missing_one_warns_once(tmp_path, monkeypatch, caplog):
    # wandb and trackio cannot be installed here (no offline wheels): stand-ins that record the calls.
    logged = {}

    def fake(name):
        module = types.ModuleType(name)
        module.Image = lambda picture, caption=None: (picture.size, caption)
        module.log = lambda data: logged.setdefault(name, []).append(data)
        module.run = object()
        return module

    monkeypatch.setitem(sys.modules, "wandb", fake("wandb"))
    monkeypatch.setitem(sys.modules, "trackio", fake("trackio"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    row = {"task": "grounding", "image": _image(40, 40), "width": 40, "height": 40, "boxes": [[0, 0, 10, 10]]}
    callback = RolloutPicturesCallback(every_steps=1, num_prompts=1)
    with caplog.at_level(logging.WARNING):
        for step in (1, 2):
            callback.draw(
                _batch([row], ["[0, 0, 10, 10]"], [[1.0]]), step, str(tmp_path), ["wandb", "trackio", "tensorboard"]
            )
    for name in ("wandb", "trackio"):
        assert [entry["train/global_step"] for entry in logged[name]] == [1, 2]
        size, caption = logged[name][0]["rollouts/prompt_00"]
        assert size[0] >= 320 and caption.startswith("step 1")
    warnings = [r.message for r in caplog.records if "tensorboard" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every drawing step


def test_tensorboard_writer_of_the_trainer_gets_the_images(tmp_path):
    class Writer:
        def __init__(self):
            self.images = []

        def add_image(self, tag, array, step, dataformats):
            self.images.append((tag, array.shape, step, dataformats))

        def flush(self):
            pass

    class TensorBoardCallback:  # what transformers' callback exposes once training began
        tb_writer = Writer()

    row = {"task": "counting", "image": _image(40, 30), "width": 40, "height": 30, "count": 1}
    callback = RolloutPicturesCallback(every_steps=1, num_prompts=1)
    tensorboard = TensorBoardCallback()
    callback.capture(_batch([row], ["1"], [[1.0]]), step=7, callbacks=[tensorboard])
    callback.on_step_end(types.SimpleNamespace(output_dir=str(tmp_path), report_to=[]), _State(7), None)
    assert callback.written  # drawn from the pending batch at the end of the step
    callback.log_to_trackers({"rollouts/prompt_00": (Image.new("RGB", (8, 4)), "c")}, 7, ["tensorboard"])
    assert tensorboard.tb_writer.images == [("rollouts/prompt_00", (4, 8, 3), 7, "HWC")]


class _State:
    def __init__(self, step):
        self.global_step = step
        self.is_world_process_zero = True


@pytest.mark.slow
def test_short_run_leaves_pictures_and_streamed_metrics(tmp_path):
    """A tiny counting run through the trainer: pictures of steps 1 and 2 (every 2 steps), each with its sidecar
    record matching the rewards the trainer logged, next to the metrics streamed at every logging step."""
    from trl_perception import PerceptionGRPOTrainer
    from trl_perception.data import load_synthetic_shapes
    from trl_perception.run_files import RunFilesCallback
    from trl_perception.testing import build_tiny_model

    dataset = load_synthetic_shapes("counting", num_train=16, num_test=4, cache_dir=str(tmp_path / "cache"))["train"]
    out = tmp_path / "run"
    args = PerceptionGRPOConfig(
        str(out),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        bf16=False,
        report_to="none",
        save_strategy="no",
        seed=0,
        rollout_pictures_steps=2,
        rollout_pictures_prompts=2,
    )
    trainer = PerceptionGRPOTrainer(
        build_tiny_model(tmp_path / "tiny"),
        [get_reward("count_exact"), get_reward("answer_format")],
        args=args,
        train_dataset=dataset,
        callbacks=[RunFilesCallback(str(out))],
    )
    [callback] = trainer._rollout_picture_callbacks()
    trainer.train()
    steps = sorted(os.listdir(out / ROLLOUTS_DIR))
    assert steps == ["step_000001", "step_000002"]  # the first step, then the first of steps 2-3
    history = {entry["step"]: entry for entry in trainer.state.log_history if "reward" in entry}
    for folder in steps:
        files = sorted(os.listdir(out / ROLLOUTS_DIR / folder))
        assert files == ["prompt_00.json", "prompt_00.png", "prompt_01.json", "prompt_01.png"]
        step = int(folder.split("_")[1])
        rollouts = []
        for name in ("prompt_00", "prompt_01"):
            record = json.loads((out / ROLLOUTS_DIR / folder / f"{name}.json").read_text())
            assert record["step"] == step and record["task"] == "counting"
            assert record["ground_truth"]["count"] == dataset["count"][dataset["id"].index(record["id"])]
            assert Image.open(out / ROLLOUTS_DIR / folder / f"{name}.png").size[0] >= 2 * 320
            rollouts += record["rollouts"]
        assert len(rollouts) == 4  # the whole batch: 2 prompts x 2 generations
        # The records hold the trainer's own numbers: the logged mean reward of the step is theirs.
        logged = history[step]["reward"]
        assert np.mean([r["reward"] for r in rollouts]) == pytest.approx(logged, abs=1e-5)
        for r in rollouts:
            assert set(r["rewards"]) == {"count_exact", "answer_format"} and "advantage" in r
            assert r["failure"] is not None or r["prediction"] is not None
    assert callback.failures == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["step"] for e in metrics["log_history"] if "reward" in e] == [1, 2]
