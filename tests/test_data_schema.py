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
import datasets

from trl_perception.data import (
    PERCEPTION_FEATURES,
    TASKS,
    load_coco_detection,
    load_page_ocr,
    load_pixmo_count,
    load_refcoco,
    select_perception_columns,
)
from trl_perception.data.fixtures import (
    write_coco_fixture,
    write_fox_fixture,
    write_pixmo_fixture,
    write_refcoco_fixture,
)


def test_all_builders_share_one_schema_and_concatenate(tmp_path):
    cache = tmp_path / "cache"
    ref = write_refcoco_fixture(tmp_path / "refer")
    pix = write_pixmo_fixture(tmp_path / "pixmo")
    fox = write_fox_fixture(tmp_path / "fox")
    coco = write_coco_fixture(tmp_path / "coco")
    parts = [
        load_refcoco(ref["data_dir"], ref["image_dir"], split="train", cache_dir=cache),
        load_pixmo_count(pix["data_dir"], pix["image_dir"], split="train", cache_dir=cache),
        load_page_ocr(fox["data_dir"], cache_dir=cache),
        load_coco_detection(coco["root"], cache_dir=cache),
    ]
    for ds in parts:
        assert list(ds.features)[: len(PERCEPTION_FEATURES)] == list(PERCEPTION_FEATURES)
        assert select_perception_columns(ds).features == PERCEPTION_FEATURES
        assert len(set(ds["id"])) == len(ds)  # ids are unique
    mixed = datasets.concatenate_datasets([select_perception_columns(ds) for ds in parts])
    assert sorted(set(mixed["task"])) == sorted(TASKS)
    assert len(mixed) == sum(len(ds) for ds in parts)
    for row in mixed:
        assert row["prompt"][-1]["role"] == "user" and isinstance(row["prompt"][-1]["content"], str)
        assert row["image"].size == (row["width"], row["height"])
