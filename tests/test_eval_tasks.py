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
"""The open evaluation task registry (one registration: scoring, metric, pictures, table) and readable pictures."""

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from trl_perception.eval import EvalConfig, evaluate, get_eval_task, list_eval_tasks, register_eval_task
from trl_perception.eval.backends import Generation
from trl_perception.eval.metrics import register_metric
from trl_perception.eval.visualize import (
    GT_COLOR,
    PRED_COLOR,
    counting_caption,
    detection_caption,
    draw_boxes,
    draw_grounding,
    grounding_caption,
)
from trl_perception.geometry import convert_points
from trl_perception.parsing import parse_points


class Echo:
    """A backend answering each prompt with the text its user message asks for (`say: ...`)."""

    def generate(self, prompts, images):
        return [Generation(p[-1]["content"].removeprefix("say: "), 5, 3, "stop", im.size) for p, im in
                zip(prompts, images)]  # fmt: skip


def pointing_rows(answers):
    """Rows of a made-up pointing task: the GT is a box, the answer a point in the model's frame."""
    image = Image.new("RGB", (64, 48), (30, 30, 30))
    return datasets.Dataset.from_list(
        [{"id": f"p{i}", "task": "pointing", "prompt": [{"role": "user", "content": f"say: {a}"}], "image": image,
          "width": 64, "height": 48, "boxes": [[10.0, 10.0, 30.0, 30.0]], "labels": ["the square"]}
         for i, a in enumerate(answers)]
    )  # fmt: skip


def score_point(completion, row, context):
    gt = [float(v) for v in row["boxes"][0]]
    parsed = parse_points(completion)
    if not parsed.ok:
        return {"failure": parsed.error, "prediction": None, "score": 0.0, "gt": gt}
    x, y = convert_points(parsed.value.points[:1], context.frame, "original", context.geometry)[0].tolist()
    inside = float(gt[0] <= x <= gt[2] and gt[1] <= y <= gt[3])
    return {"failure": None, "prediction": [x, y], "score": inside, "gt": gt}


def draw_point(image, row, record):
    points = [record["prediction"]] if record["prediction"] else []
    return draw_boxes(image, [record["gt"]], pred_points=points, caption=f"{record['id']} pointing")


def test_the_built_in_tasks_are_registrations():
    assert list_eval_tasks()[:4] == ["grounding", "counting", "ocr", "detection"]
    assert get_eval_task("detection").max_new_tokens == 4096 and get_eval_task("ocr").skip_special_tokens
    assert not get_eval_task("grounding").skip_special_tokens


def test_an_unregistered_task_is_refused_with_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match="Unknown evaluation task 'pointing'; registered: grounding, counting"):
        EvalConfig(task="pointing", output_dir=str(tmp_path))


def test_one_registration_gives_eval_scoring_metric_pictures_and_a_table(tmp_path, isolated_registries):
    def metric(records, context):
        context.extra["pointing_detail"] = {"n": len(records)}
        return {"accuracy": float(np.mean([r["score"] for r in records]))}

    register_eval_task("pointing", score_sample=score_point, metric=metric, draw=draw_point, max_new_tokens=16)
    # "original" frame: the answers are in source pixels; (20, 20) is inside the box, (50, 40) outside, one fails.
    rows = pointing_rows(["(20, 20)", "(50, 40)", "no idea", "[25, 12]"])
    config = EvalConfig(task="pointing", output_dir=str(tmp_path), frame="original", progress=False)
    result = evaluate(rows, config, Echo())
    assert [r["score"] for r in result.records] == [1.0, 0.0, 0.0, 1.0]
    assert result.metrics["accuracy"] == 0.5 and result.metrics["parse_failure_rate"] == 0.25
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["pointing_detail"] == {"n": 4} and summary["failures"] == {"no_points": 1}
    assert "| Model | accuracy |" in (tmp_path / "results.md").read_text()
    assert len(list((tmp_path / "visualizations").glob("sample_*.png"))) == 4


def test_a_task_uses_the_metric_registered_under_its_name(tmp_path, isolated_registries):
    @register_metric("pointing")
    def pointing_metric(predictions, references):
        return {"hits": sum(p is not None for p in predictions) / len(references)}

    register_eval_task("pointing", score_sample=score_point)
    config = EvalConfig(task="pointing", output_dir=str(tmp_path), frame="grid_1000", progress=False,
                        num_visualizations=0)  # fmt: skip
    # grid_1000: (500, 500) is the image centre (32, 24), outside the box.
    result = evaluate(pointing_rows(["(500, 500)", "nothing"]), config, Echo())
    assert result.metrics["hits"] == 0.5 and result.records[0]["prediction"] == [32.0, 24.0]


def test_a_score_without_the_record_keys_names_the_task_and_row(tmp_path, isolated_registries):
    register_eval_task("pointing", score_sample=lambda c, r, ctx: {"score": 1.0}, metric=lambda rs, ctx: {})
    config = EvalConfig(task="pointing", output_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match=r"Task 'pointing', row 'p0': score_sample's result lacks \['failure'"):
        evaluate(pointing_rows(["(1, 1)"]), config, Echo())


def test_duplicate_registrations_are_refused(isolated_registries):
    with pytest.raises(ValueError, match="already registered"):
        register_eval_task("grounding", score_sample=score_point)


# ------------------------------------------------------------------------------------------------------- pictures


def test_captions_spell_out_parsed_and_correct():
    row = {"labels": ["the man in red"]}
    good = grounding_caption(row, {"id": "r1", "failure": None, "score": 0.75})
    assert good[0] == 'r1: "the man in red"' and "parsed, IoU 0.750: correct" in good[1]
    low = grounding_caption(row, {"id": "r1", "failure": None, "score": 0.2})
    assert "parsed, IoU 0.200: wrong" in low[1]
    failed = grounding_caption(row, {"id": "r1", "failure": "no_boxes", "score": 0.0})
    assert "not parsed (no_boxes)" in failed[1] and "wrong" in failed[1]
    counted = counting_caption({"id": "c", "failure": None, "prediction": 3, "gt": 3})
    assert counted == ["c: GT count 3, predicted 3", "parsed: correct; GT boxes/points green"]
    assert "parsed: wrong" in counting_caption({"id": "c", "failure": None, "prediction": 2, "gt": 3})[1]
    assert "not parsed (invalid_json)" in detection_caption({"id": "d", "failure": "invalid_json", "gt": {},
                                                            "prediction": [], "score": 0.0})[1]  # fmt: skip
    for caption in (good, counted):
        assert "(ok)" not in " ".join(caption)


def test_labels_are_drawn_on_a_background_of_their_box_colour():
    # A filled region of the GT colour's complement: without a background the label text would sit on it.
    image = Image.new("RGB", (100, 100), (0, 0, 255))
    bare = np.asarray(draw_boxes(image, gt_boxes=[[20, 20, 80, 80]], pred_boxes=[[30, 30, 90, 90]]))
    labelled = np.asarray(draw_boxes(image, gt_boxes=[[20, 20, 80, 80]], pred_boxes=[[30, 30, 90, 90]],
                                     gt_labels=["person"], pred_labels=["dog"]))  # fmt: skip
    scale = 320 / 100
    for (x, y), color in (((20, 20), GT_COLOR), ((30, 30), PRED_COLOR)):
        x0, y0 = round(x * scale) + 4, round(y * scale) + 4
        patch = labelled[y0 : y0 + 12, x0 : x0 + 30].reshape(-1, 3)
        assert (patch == color).all(axis=1).mean() > 0.4  # the label's box, in the box colour
        assert ((patch == 255).all(axis=1)).any()  # white text on it
        assert (bare[y0 : y0 + 12, x0 : x0 + 30] == (0, 0, 255)).all()  # the image there without a label


def test_grounding_picture_caption_is_not_cut_off_on_a_small_image():
    row = {"labels": ["the large blue square in the upper left corner of the picture"]}
    record = {"id": "synthetic-grounding/test/12", "failure": None, "score": 0.9, "gt": [1, 1, 20, 20],
              "prediction": [2, 2, 20, 20]}  # fmt: skip
    picture = draw_grounding(Image.new("RGB", (28, 28)), row, record)
    assert picture.width > 320  # wider than the upscaled image, to fit the caption
    band = np.asarray(picture)[320:, 320:]
    assert (band != 255).any()  # caption text reaches past the image's width
