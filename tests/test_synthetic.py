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
"""Synthetic shapes builder: seeded, exact ground truth in the shared schema."""

import numpy as np
import pytest

from trl_perception.data import PERCEPTION_FEATURES, SyntheticShapesConfig, load_synthetic_shapes
from trl_perception.data.synthetic import COLORS, make_example


def _pixels_of(image, color):
    return np.all(np.asarray(image.convert("RGB")) == np.array(color, dtype=np.uint8), axis=-1)


def test_counting_rows_follow_the_schema_and_are_reproducible(tmp_path):
    kwargs = {"num_train": 12, "num_test": 4, "seed": 7}
    a = load_synthetic_shapes("counting", cache_dir=tmp_path / "a", **kwargs)
    b = load_synthetic_shapes("counting", cache_dir=tmp_path / "b", **kwargs)
    assert set(a) == {"train", "test"} and len(a["train"]) == 12 and len(a["test"]) == 4
    assert dict(a["train"].features) == dict(PERCEPTION_FEATURES)
    for split in ("train", "test"):
        for ra, rb in zip(a[split], b[split], strict=True):
            assert ra["id"] == rb["id"] and ra["boxes"] == rb["boxes"] and ra["count"] == rb["count"]
            assert np.array_equal(np.asarray(ra["image"]), np.asarray(rb["image"]))
    # A different seed gives different images; train and test differ.
    c = load_synthetic_shapes("counting", cache_dir=tmp_path / "c", num_train=12, num_test=4, seed=8)
    assert [r["boxes"] for r in a["train"]] != [r["boxes"] for r in c["train"]]
    assert [r["boxes"] for r in a["train"]][:4] != [r["boxes"] for r in a["test"]]


def test_counting_ground_truth_matches_the_drawn_pixels():
    config = SyntheticShapesConfig(
        name="t",
        task="counting",
        canvas_width=140,
        canvas_height=84,
        cell_size=28,
        shapes=("square",),
        colors=("blue",),
    )
    for index in range(20):
        row = make_example(config, "train", index)
        assert row["task"] == "counting" and row["width"] == 140 and row["height"] == 84
        assert row["count"] == len(row["boxes"]) == len(row["points"]) == len(row["labels"])
        assert 1 <= row["count"] <= 4
        from io import BytesIO

        from PIL import Image

        mask = _pixels_of(Image.open(BytesIO(row["image"]["bytes"])), COLORS["blue"])
        # Continuous boxes: [x1, y1, x2, y2] covers pixels x1..x2-1; the squares fill their boxes exactly.
        expected = np.zeros_like(mask)
        for x1, y1, x2, y2 in row["boxes"]:
            expected[int(y1) : int(y2), int(x1) : int(x2)] = True
        assert np.array_equal(mask, expected)
        for (x1, y1, x2, y2), (cx, cy) in zip(row["boxes"], row["points"], strict=True):
            assert (cx, cy) == ((x1 + x2) / 2, (y1 + y2) / 2)


def test_grounding_target_is_unique_and_its_box_is_exact():
    config = SyntheticShapesConfig(
        name="g", task="grounding", cell_size=None, canvas_width=160, canvas_height=120, min_objects=2, max_objects=3
    )
    for index in range(20):
        row = make_example(config, "test", index)
        (box,) = row["boxes"]
        color, shape = row["labels"][0].split()
        assert f"the {color} {shape}" in row["prompt"][-1]["content"]
        from io import BytesIO

        from PIL import Image

        mask = _pixels_of(Image.open(BytesIO(row["image"]["bytes"])), COLORS[color])
        ys, xs = np.nonzero(mask)
        # Other shapes may share the colour but not the colour+shape; the target's pixels lie in its box.
        inside = (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])
        assert inside.any()
        if shape == "square":
            assert (xs[inside].min(), ys[inside].min(), xs[inside].max() + 1, ys[inside].max() + 1) == tuple(box)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "segmentation"}, "task must be"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"canvas_width": 56, "canvas_height": 56, "max_objects": 5}, "cells"),
        ({"colors": ("teal",)}, "Unknown colours"),
        ({"canvas_width": 20, "cell_size": None, "max_size": 10, "min_size": 5}, "28 px"),
    ],
)
def test_bad_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticShapesConfig(name="bad", **kwargs)
