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
"""One output schema shared by every perception dataset builder.

Every builder emits the same columns so that datasets of different tasks can be concatenated for multi-task
training (rewards are routed per row by the ``task`` column). Ground truth is always in **original image pixels**;
rewards and evaluation convert it to the model's coordinate frame themselves, so one dataset serves every model
family.

| column | type | meaning |
|---|---|---|
| ``id`` | ``str`` | stable example id (e.g. ``"refcoco-unc/val/sent-123"``) |
| ``task`` | ``str`` | ``"grounding"``, ``"counting"``, ``"ocr"`` or ``"detection"`` |
| ``prompt`` | ``list[{"role", "content"}]`` | conversational prompt with string contents; TRL inserts the image part |
| ``image`` | ``datasets.Image`` | the source image |
| ``width`` / ``height`` | ``int`` | source image size in pixels |
| ``boxes`` | ``list[list[float]]`` | GT boxes, ``[x1, y1, x2, y2]`` in original pixels (grounding: exactly one) |
| ``labels`` | ``list[str]`` | one label per box (category name; grounding: the referring expression) |
| ``category_ids`` | ``list[int]`` | one dataset category id per box (COCO ids for detection; may be empty) |
| ``count`` | ``int`` or ``None`` | GT object count (counting) |
| ``points`` | ``list[list[float]]`` | GT points ``[x, y]`` in original pixels (counting; may be empty) |
| ``text`` | ``str`` or ``None`` | GT text (OCR) |
"""

from __future__ import annotations

import datasets


TASKS = ("grounding", "counting", "ocr", "detection")

# Columns the rewards and the evaluation read. Builders may add task-specific columns after these.
PERCEPTION_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "image": datasets.Image(),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
        "labels": datasets.Sequence(datasets.Value("string")),
        "category_ids": datasets.Sequence(datasets.Value("int32")),
        "count": datasets.Value("int32"),
        "points": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2)),
        "text": datasets.Value("string"),
    }
)


def perception_features(extra: dict[str, datasets.features.FeatureType] | None = None) -> datasets.Features:
    """Return the shared features, optionally extended with task-specific columns (which come after)."""
    features = datasets.Features(dict(PERCEPTION_FEATURES))
    for name, feature in (extra or {}).items():
        if name in features:
            raise ValueError(f"Column {name!r} is part of the shared perception schema and cannot be redefined.")
        features[name] = feature
    return features


def select_perception_columns(dataset: datasets.Dataset) -> datasets.Dataset:
    """Keep only the shared columns, so datasets of different tasks can be concatenated for multi-task training.

    Example:
    ```python
    >>> mixed = datasets.concatenate_datasets([select_perception_columns(d) for d in (refcoco, pixmo)])
    ```
    """
    return dataset.select_columns(list(PERCEPTION_FEATURES))


def empty_row(**values) -> dict:
    """A row with every shared column set to its "not applicable" value, updated with ``values``."""
    row = {
        "id": None,
        "task": None,
        "prompt": None,
        "image": None,
        "width": None,
        "height": None,
        "boxes": [],
        "labels": [],
        "category_ids": [],
        "count": None,
        "points": [],
        "text": None,
    }
    row.update(values)  # task-specific columns may be added here too
    return row
