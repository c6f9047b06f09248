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
"""The runner on fixture datasets from the builders, with hand-made completions (no model needed).

`ScriptedBackend` is a real backend (the same `generate` contract as `hf` / `vllm`) that answers with completions
the test writes from the ground truth, so every metric has an independently computed expected value.
"""

import contextlib
import dataclasses
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trl_perception.data import load_coco_detection, load_page_ocr, load_pixmo_count, load_refcoco
from trl_perception.data.fixtures import (
    write_coco_fixture,
    write_fox_fixture,
    write_pixmo_fixture,
    write_refcoco_fixture,
)
from trl_perception.eval import EvalConfig, evaluate
from trl_perception.eval.backends import Generation
from trl_perception.eval.metrics import COCO_STAT_NAMES, IOU_SWEEP, ocr_metrics
from trl_perception.eval.runner import results_markdown
from trl_perception.eval.scoring import score_detection, score_grounding
from trl_perception.geometry import ImageGeometry, smart_resize


MIN_PIXELS, MAX_PIXELS = 3136, 12845056


def resized(width, height):
    h, w = smart_resize(height, width, 28, MIN_PIXELS, MAX_PIXELS)
    return w, h


class ScriptedBackend:
    """Answers each prompt with `script(call_index, prompt, image)`; reports the smart-resized input size."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls = 0
        self.batch_sizes = []

    def generate(self, prompts, images):
        self.batch_sizes.append(len(prompts))
        out = []
        for prompt, image in zip(prompts, images):
            assert isinstance(image, Image.Image) and image.mode == "RGB"
            text = self.script(self.calls, prompt, image)
            self.calls += 1
            out.append(Generation(text, 10, len(text), "stop", resized(*image.size)))
        return out


def oracle_iou(a, b):
    """IoU written out independently of `trl_perception.geometry` (continuous coordinates)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def to_qwen25(box, width, height):
    rw, rh = resized(width, height)
    return [box[0] * rw / width, box[1] * rh / height, box[2] * rw / width, box[3] * rh / height]


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory):
    root = tmp_path_factory.mktemp("refcoco")
    fx = write_refcoco_fixture(root)
    rows = []
    for split in ("val", "testA", "testB", "train"):
        ds = load_refcoco(fx["data_dir"], fx["image_dir"], split=split, cache_dir=root / "cache")
        rows.append(ds)
    import datasets

    return datasets.concatenate_datasets(rows)


# ------------------------------------------------------------------------------------------------------------ grounding


def test_grounding_accuracy_equals_direct_iou_count(refcoco, tmp_path):
    rng = np.random.default_rng(0)
    expected_boxes = {}

    def script(i, prompt, image):
        row = refcoco[i]
        gt = row["boxes"][0]
        w, h = row["width"], row["height"]
        if i % 5 == 4:
            expected_boxes[i] = None
            return "I cannot find it."
        jitter = rng.uniform(-0.3, 0.3, 4) * np.tile([gt[2] - gt[0], gt[3] - gt[1]], 2)
        box = (np.asarray(gt) + jitter).clip([0, 0, 0, 0], [w, h, w, h]).tolist()
        expected_boxes[i] = box
        model_box = to_qwen25(box, w, h)
        return "```json\n" + json.dumps([{"bbox_2d": model_box, "label": row["labels"][0]}]) + "\n```"

    config = EvalConfig(task="grounding", output_dir=str(tmp_path / "run"), batch_size=3, progress=False)
    result = evaluate(refcoco, config, ScriptedBackend(script))
    ious = [0.0 if expected_boxes[i] is None else oracle_iou(expected_boxes[i], refcoco[i]["boxes"][0])
            for i in range(len(refcoco))]  # fmt: skip
    for tau in IOU_SWEEP:
        assert result.metrics[f"acc@{tau:g}"] == sum(iou >= tau for iou in ious) / len(ious), tau
    assert result.metrics["avg"] == pytest.approx(
        np.mean([sum(iou >= t for iou in ious) / len(ious) for t in (0.5, 0.75, 0.95)])
    )
    assert result.metrics["mean_iou"] == pytest.approx(np.mean(ious))
    assert result.metrics["parse_failure_rate"] == pytest.approx(
        sum(b is None for b in expected_boxes.values()) / len(ious)
    )

    lines = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(refcoco)
    for i, line in enumerate(lines):
        assert line["id"] == refcoco[i]["id"]
        assert line["score"] == pytest.approx(ious[i])
        if expected_boxes[i] is None:
            assert line["failure"] == "no_boxes" and line["prediction"] is None
        else:
            assert line["failure"] is None
            assert line["prediction"] == pytest.approx(expected_boxes[i])
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["num_samples"] == len(refcoco) and summary["failures"] == {"no_boxes": len(refcoco) // 5}
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| Acc@0.5 | Acc@0.75 | Acc@0.95 | Avg |" in md
    assert f"{100 * result.metrics['acc@0.5']:.1f}" in md
    pictures = sorted((tmp_path / "run" / "visualizations").glob("sample_*.png"))
    assert len(pictures) == min(8, len(refcoco))
    assert Image.open(pictures[0]).size[0] >= 320


def test_grounding_limit_and_batching(refcoco, tmp_path):
    backend = ScriptedBackend(lambda i, p, im: "[0, 0, 10, 10]")
    config = EvalConfig(task="grounding", output_dir=str(tmp_path), batch_size=2, limit=5, progress=False,
                        num_visualizations=0)  # fmt: skip
    result = evaluate(refcoco, config, backend)
    assert result.metrics["num_samples"] == 5
    assert backend.batch_sizes == [2, 2, 1]
    assert not (tmp_path / "visualizations").exists()


def test_truncated_completions_are_warned_in_the_results(refcoco, tmp_path):
    class Truncating(ScriptedBackend):
        def generate(self, prompts, images):  # every other completion hits the budget
            out = super().generate(prompts, images)
            return [dataclasses.replace(g, finish_reason="length") if i % 2 else g for i, g in enumerate(out)]

    config = EvalConfig(task="grounding", output_dir=str(tmp_path), batch_size=4, limit=4, progress=False,
                        num_visualizations=0)  # fmt: skip
    evaluate(refcoco, config, Truncating(lambda i, p, im: '[{"bbox_2d": [0, 0, 10'))
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["generation"]["truncated_rate"] == 0.5
    assert (
        "Warning: 50.0% of the completions stopped at the generation budget" in (tmp_path / "results.md").read_text()
    )
    evaluate(refcoco, config, ScriptedBackend(lambda i, p, im: "[0, 0, 10, 10]"))
    assert "generation budget" not in (tmp_path / "results.md").read_text()


def test_grounding_iou_threshold_is_inclusive_and_degenerate_boxes_score_zero():
    geometry = ImageGeometry(100, 100, 112, 112)
    row = {"boxes": [[0, 0, 10, 20]]}
    half = score_grounding("[0, 0, 10, 10]", row, geometry, frame="original")
    assert half["score"] == 0.5
    from trl_perception.eval.metrics import grounding_metrics

    assert grounding_metrics([half["prediction"]], [row["boxes"][0]])["acc@0.5"] == 1.0
    assert score_grounding("[0, 0, 10, 20]", row, geometry, frame="original")["score"] == 1.0
    assert score_grounding("[10, 0, 20, 20]", row, geometry, frame="original")["score"] == 0.0  # touching
    assert score_grounding("[5, 5, 5, 9]", row, geometry, frame="original")["score"] == 0.0  # zero area
    inverted = score_grounding("[10, 20, 0, 0]", row, geometry, frame="original")
    assert inverted["failure"] == "invalid_box" and inverted["score"] == 0.0


def test_grounding_frames_map_back_to_original_pixels():
    row = {"boxes": [[20, 10, 120, 60]]}
    geometry = ImageGeometry(200, 100, 196, 112)
    # Qwen2-VL 0–1000 grid, with and without box tokens.
    for text in ("(100,100),(600,600)", "<|box_start|>(100,100),(600,600)<|box_end|><|im_end|>"):
        assert score_grounding(text, row, geometry, frame="qwen2_vl")["score"] == pytest.approx(1.0)
    # Qwen2.5-VL pixels of the 196 x 112 input.
    text = json.dumps([{"bbox_2d": [19.6, 11.2, 117.6, 67.2]}])
    scored = score_grounding(text, row, geometry, frame="qwen2_5_vl")
    assert scored["prediction"] == pytest.approx([20, 10, 120, 60])
    assert scored["parsed"] == pytest.approx([19.6, 11.2, 117.6, 67.2])
    # Numbers inside an unterminated <think> are never taken as the answer.
    assert score_grounding("<think>[20, 10, 120, 60]", row, geometry, "original")["failure"] == "unterminated_think"


def test_grounding_out_of_image_policy():
    row = {"boxes": [[0, 0, 50, 50]]}
    geometry = ImageGeometry(100, 100, 112, 112)
    keep = score_grounding("[-50, 0, 50, 50]", row, geometry, "original", out_of_image="keep")
    clip = score_grounding("[-50, 0, 50, 50]", row, geometry, "original", out_of_image="clip")
    reject = score_grounding("[-50, 0, 50, 50]", row, geometry, "original", out_of_image="reject")
    assert keep["score"] == pytest.approx(0.5) and clip["score"] == 1.0
    assert reject["failure"] == "invalid_box"


# ------------------------------------------------------------------------------------------------------------- counting


def test_counting_exact_match_on_pixmo_fixture(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    ds = load_pixmo_count(fx["data_dir"], fx["image_dir"], split="validation", cache_dir=tmp_path / "cache")
    import datasets

    ds = datasets.concatenate_datasets([ds, load_pixmo_count(fx["data_dir"], fx["image_dir"], split="test",
                                                             cache_dir=tmp_path / "cache")])  # fmt: skip
    predicted = {}

    def script(i, prompt, image):
        gt = ds[i]["count"]
        if i % 3 == 0:  # Perception-R1 protocol: one box per object
            predicted[i] = gt
            return json.dumps([{"bbox_2d": [k, k, k + 5, k + 5], "label": "x"} for k in range(gt)])
        if i % 3 == 1:  # integer answer, off by one
            predicted[i] = gt + 1
            return f"<answer>{gt + 1}</answer>"
        predicted[i] = None
        return "many"

    result = evaluate(ds, EvalConfig(task="counting", output_dir=str(tmp_path / "run"), progress=False),
                      ScriptedBackend(script))  # fmt: skip
    gts = ds["count"]
    assert result.metrics["accuracy"] == sum(predicted[i] == g for i, g in enumerate(gts)) / len(gts)
    parsed = [(p, g) for p, g in zip(predicted.values(), gts) if p is not None]
    assert result.metrics["mae"] == pytest.approx(np.mean([abs(p - g) for p, g in parsed]))
    assert result.records[2]["failure"] == "no_count"
    assert (tmp_path / "run" / "visualizations" / "counting_confusion.png").is_file()
    assert Image.open(tmp_path / "run" / "visualizations" / "counting_confusion.png").size[0] > 100


# ------------------------------------------------------------------------------------------------------------------ OCR


@pytest.mark.parametrize("language", ["en", "zh"])
def test_ocr_runner_matches_metric_functions(tmp_path, language):
    fx = write_fox_fixture(tmp_path / "fox")
    ds = load_page_ocr(fx["data_dir"], language=language, cache_dir=tmp_path / "cache")
    variants = [lambda t: t, lambda t: t[: len(t) // 2], lambda t: "", lambda t: "<think>" + t]

    def script(i, prompt, image):
        return variants[i % len(variants)](ds[i]["text"])

    for fox_order in (False, True):
        out = tmp_path / f"run-{fox_order}"
        config = EvalConfig(task="ocr", output_dir=str(out), fox_order=fox_order, progress=False)
        result = evaluate(ds, config, ScriptedBackend(script))
        preds = [variants[i % len(variants)](t) for i, t in enumerate(ds["text"])]
        preds = ["" if p.startswith("<think>") else p for p in preds]  # unterminated think: a failure, scored as ""
        direct = ocr_metrics(preds, ds["text"], fox_order=fox_order)
        for key in ("edit_distance", "f1", "precision", "recall", "bleu", "meteor"):
            assert result.metrics[key] == pytest.approx(direct[key]), key
        summary = json.loads((out / "metrics.json").read_text())
        assert summary["metrics"]["meteor_wordnet"] in ("wordnet", "no_synonym_stage")
        assert summary["metrics"]["argument_order"] == ("fox" if fox_order else "conventional")
        md = (out / "results.md").read_text()
        assert "| Model | Edit dist ↓ | F1 ↑ | Precision ↑ | Recall ↑ | BLEU ↑ | METEOR ↑ |" in md
        if summary["metrics"]["meteor_wordnet"] == "no_synonym_stage":
            assert "METEOR without synonym stage" in md


# ------------------------------------------------------------------------------------------------------------ detection


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    fx = write_coco_fixture(root)
    ds = load_coco_detection(fx["root"], split="validation", cache_dir=root / "cache")
    return fx, ds


def direct_coco_stats(annotation_file, results, image_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STAT_NAMES, ev.stats.tolist()))


def test_detection_parity_with_direct_pycocotools_and_frame_inverse(coco, tmp_path):
    fx, ds = coco
    names = fx["categories"]
    rng = np.random.default_rng(1)

    def script(i, prompt, image):
        row = ds[i]
        items = []
        for box, cid in zip(row["boxes"], row["category_ids"]):
            noisy = (np.asarray(box) + rng.normal(0, 1.5, 4)).tolist()
            items.append({"bbox_2d": to_qwen25(noisy, row["width"], row["height"]), "label": names[cid]})
        items.append({"bbox_2d": [1, 1, 9, 9], "label": "unicorn"})  # unknown label: dropped and counted
        if i == 1:
            return "no objects here"
        return "```json\n" + json.dumps(items) + "\n```"

    out = tmp_path / "run"
    result = evaluate(ds, EvalConfig(task="detection", output_dir=str(out), progress=False), ScriptedBackend(script))
    results = json.loads((out / "coco_results.json").read_text())
    assert all(r["score"] == 1.0 for r in results)
    image_ids = ds["image_id"]
    direct = direct_coco_stats(fx["annotation_file"], results, image_ids)
    for name in COCO_STAT_NAMES:
        assert result.metrics[name] == pytest.approx(direct[name]), name
    assert result.metrics["num_images"] == len(ds) == 4  # the image without annotations still counts
    assert result.metrics["unknown_label_rate"] > 0
    assert result.metrics["parse_failure_rate"] == 0.25
    # The exported boxes are xywh in original pixels (the inverse of the Qwen2.5-VL resize).
    first = [r for r in results if r["image_id"] == image_ids[0]]
    gt_first = ds[0]["boxes"][0]
    x, y, w, h = first[0]["bbox"]
    assert oracle_iou([x, y, x + w, y + h], gt_first) > 0.8
    md = (out / "results.md").read_text()
    assert "| Model | AP | AP50 | AP75 | APs | APm | APl |" in md and "score 1.0" in md
    assert len(list((out / "visualizations").glob("sample_*.png"))) == 4


def test_detection_limit_evaluates_exactly_the_chosen_images(coco, tmp_path):
    fx, ds = coco
    names = fx["categories"]

    def script(i, prompt, image):
        row = ds[i]
        items = [{"bbox_2d": to_qwen25(b, row["width"], row["height"]), "label": names[c]}
                 for b, c in zip(row["boxes"], row["category_ids"])]  # fmt: skip
        return json.dumps(items)

    result = evaluate(ds, EvalConfig(task="detection", output_dir=str(tmp_path), limit=2, progress=False,
                                     num_visualizations=0), ScriptedBackend(script))  # fmt: skip
    assert result.metrics["num_images"] == 2
    assert result.metrics["AP"] == pytest.approx(1.0)  # perfect boxes; GT of other images is not counted


def test_detection_without_rescale_is_off_by_the_resize(tmp_path):
    """D13: Qwen2.5-VL boxes on a 640x480 image are in 644x476 pixels; reading them as original pixels is wrong."""
    geometry = ImageGeometry.from_size(640, 480)
    assert (geometry.resized_width, geometry.resized_height) == (644, 476)
    gt = [[400.0, 300.0, 630.0, 470.0]]
    row = {"boxes": gt, "category_ids": [1]}
    text = json.dumps([{"bbox_2d": to_qwen25(gt[0], 640, 480), "label": "person"}])
    right = score_detection(text, row, geometry, "qwen2_5_vl", {1: "person"})
    wrong = score_detection(text, row, geometry, "original", {1: "person"})
    assert right["prediction"][0]["bbox"] == pytest.approx(gt[0])
    assert oracle_iou(wrong["prediction"][0]["bbox"], gt[0]) < 0.98


def test_detection_labels_map_strictly_and_invalid_boxes_are_dropped():
    geometry = ImageGeometry(100, 100, 112, 112)
    row = {"boxes": [[0, 0, 10, 10]], "category_ids": [90]}
    text = json.dumps([
        {"bbox_2d": [0, 0, 10, 10], "label": " toothbrush "},
        {"bbox_2d": [0, 0, 10, 10], "label": "Toothbrush"},
        {"bbox_2d": [0, 0, 10, 10]},
        {"bbox_2d": [10, 10, 0, 0], "label": "toothbrush"},
    ])  # fmt: skip
    scored = score_detection(text, row, geometry, "original", {90: "toothbrush", 1: "person"})
    assert [d["category_id"] for d in scored["prediction"]] == [90]
    assert scored["num_unknown_labels"] == 2 and scored["num_invalid_boxes"] == 1
    assert scored["score"] == 1.0


def test_results_markdown_handles_missing_values():
    summary = {
        "task": "detection",
        "num_samples": 1,
        "failures": {},
        "metrics": dict.fromkeys(COCO_STAT_NAMES, -1.0) | {"parse_failure_rate": math.nan},
        "run": {"model": "/x/ckpt/", "dataset": "coco", "backend": "hf"},
        "notes": [],
    }
    md = results_markdown(summary)
    assert "| ckpt | – | – | – | – | – | – |" in md


@pytest.mark.parametrize(
    ("argv", "expected"), [([], {"hf": 8, "vllm": 256}), (["--batch-size", "3"], {"hf": 3, "vllm": 3})]
)
def test_cli_batch_size_defaults_per_backend(tmp_path, monkeypatch, argv, expected):
    # vLLM schedules its own batches, so the CLI gives it large calls by default; an explicit --batch-size wins.
    import trl_perception.eval.backends as backends
    import trl_perception.eval.cli as cli

    seen = {}

    def fake_evaluate(dataset, config, backend):
        seen[backend] = config.batch_size
        (tmp_path / "results.md").write_text("ok")
        return SimpleNamespace(output_dir=tmp_path)

    monkeypatch.setattr(cli, "load_eval_dataset", lambda *a, **k: SimpleNamespace(split=None))
    monkeypatch.setattr(cli, "evaluate", fake_evaluate)
    monkeypatch.setattr(backends, "make_backend", lambda name, model, **kwargs: name)
    for backend in ("hf", "vllm"):
        common = ["--task", "counting", "--model", "m", "--dataset", "d", "--family", "qwen2_5_vl"]
        assert cli.main([*common, "--backend", backend, "--output-dir", str(tmp_path), *argv]) == 0
    assert seen == expected
