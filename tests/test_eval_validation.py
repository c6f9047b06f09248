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
"""Evaluation scorers: invalid ground truth is a clear error, and the run directory holds strict JSON only."""

import json
import math

import pytest

from trl_perception.data import load_refcoco
from trl_perception.data.fixtures import write_refcoco_fixture
from trl_perception.eval import EvalConfig, evaluate
from trl_perception.eval.backends import Generation
from trl_perception.eval.scoring import score_counting, score_detection, score_grounding, score_ocr
from trl_perception.geometry import ImageGeometry, smart_resize
from trl_perception.validation import GroundTruthError


GEOMETRY = ImageGeometry(200, 100, 196, 112)
HUGE = "[{" + '"bbox_2d": [1, 2, 1.79e308, 50], "label": "person"' + "}]"


def strict_loads(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "row,column",
    [
        ({"id": "r1", "boxes": [], "width": 200, "height": 100}, "boxes"),
        ({"id": "r1", "boxes": None, "width": 200, "height": 100}, "boxes"),
        ({"id": "r1", "boxes": [[5, 5, 1, 1]], "width": 200, "height": 100}, "boxes"),
        ({"id": "r1", "boxes": [[5, 5, 10, 10]], "width": 0, "height": 100}, "width"),
    ],
)
def test_score_grounding_invalid_gt(row, column):
    with pytest.raises(ValueError, match=rf"Scorer 'grounding', row 'r1'.*column '{column}'") as info:
        score_grounding("(1,1),(5,5)", row, GEOMETRY, frame="original")
    assert isinstance(info.value, GroundTruthError)


@pytest.mark.parametrize("count", [None, "3", -1, 2.5])
def test_score_counting_invalid_count(count):
    with pytest.raises(ValueError, match=r"Scorer 'counting', row 'c'.*column 'count'"):
        score_counting("<answer>3</answer>", {"id": "c", "count": count})


@pytest.mark.parametrize("text", [None, 5])
def test_score_ocr_invalid_text(text):
    with pytest.raises(ValueError, match=r"Scorer 'ocr', row 'o'.*column 'text'"):
        score_ocr("<answer>a</answer>", {"id": "o", "text": text})


def test_score_detection_invalid_gt():
    row = {"id": "d", "boxes": [[1, 1, 5, 5]], "category_ids": [math.nan], "width": 200, "height": 100}
    with pytest.raises(ValueError, match=r"Scorer 'detection', row 'd'.*column 'category_ids'"):
        score_detection(HUGE, row, GEOMETRY, "original", {1: "person"})
    with pytest.raises(ValueError, match=r"column 'category_ids': 2 ids for 1 boxes"):
        score_detection(HUGE, {**row, "category_ids": [1, 1]}, GEOMETRY, "original", {1: "person"})


@pytest.mark.parametrize("sizes", [(0, 0, 28, 28), (200, 100, 0, 28), (math.inf, 100, 28, 28), (1.5, 100, 28, 28)])
def test_image_geometry_rejects_invalid_sizes(sizes):
    with pytest.raises(ValueError, match="is not an integer number of pixels"):
        ImageGeometry(*sizes)


def test_huge_kept_coordinate_is_an_invalid_box_not_infinity():
    row = {"id": "g", "boxes": [[20, 10, 120, 60]], "width": 200, "height": 100}
    record = score_grounding(HUGE, row, GEOMETRY, frame="resized", out_of_image="keep")
    assert record["failure"] == "invalid_box" and record["score"] == 0.0
    strict_loads(json.dumps(record))
    det = score_detection(HUGE, {**row, "category_ids": [1]}, GEOMETRY, "resized", {1: "person"}, out_of_image="keep")
    assert det["num_invalid_boxes"] == 1 and det["prediction"] == []
    strict_loads(json.dumps(det))


class Backend:
    name = "scripted"

    def generate(self, prompts, images):
        out = []
        for image in images:
            h, w = smart_resize(image.size[1], image.size[0], 28, 3136, 12845056)
            out.append(Generation('[{"bbox_2d": [1, 2, 1.79e308, 1.79e308]}]', 10, 10, "stop", (w, h)))
        return out


def test_run_directory_is_strict_json(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "src")
    ds = load_refcoco(fx["data_dir"], fx["image_dir"], split="val", cache_dir=tmp_path / "cache")
    config = EvalConfig(task="grounding", output_dir=str(tmp_path / "run"), out_of_image="keep", progress=False)
    evaluate(ds, config, Backend())
    files = sorted((tmp_path / "run").glob("*.json*"))
    assert {f.name for f in files} >= {"predictions.jsonl", "metrics.json"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines() if path.suffix == ".jsonl" else [text]:
            strict_loads(line)
