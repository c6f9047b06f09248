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
import json
import os

import datasets
import pytest

from trl_perception.data import (
    PERCEPTION_FEATURES,
    CocoDetection,
    DataError,
    coco_categories,
    dataset_metadata,
    load_coco_detection,
)
from trl_perception.data._common import REPORT_FILENAME
from trl_perception.data.fixtures import truncate_image, write_coco_fixture


@pytest.fixture
def coco(tmp_path):
    return write_coco_fixture(tmp_path / "coco")


def assert_boxes(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a == pytest.approx(e)


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_builds_all_objects_in_original_pixels(coco, tmp_path):
    ds = load_coco_detection(coco["root"], split="val", cache_dir=tmp_path / "cache")
    assert set(PERCEPTION_FEATURES) <= set(ds.column_names)
    assert isinstance(ds.features["image"], datasets.Image)
    assert len(ds) == len(coco["images"])  # every GT image, including the one without objects
    for row in ds:
        truth = coco["images"][row["image_id"]]
        assert row["task"] == "detection"
        assert row["id"] == f"coco-2017/validation/{row['image_id']}"
        assert (row["width"], row["height"]) == (truth["width"], truth["height"])
        assert_boxes(row["boxes"], truth["boxes"])
        assert row["category_ids"] == truth["category_ids"]
        assert row["labels"] == [coco["categories"][c] for c in truth["category_ids"]]
        assert row["annotation_ids"] == truth["annotation_ids"]
        assert_boxes(row["crowd_boxes"], truth["crowd_boxes"])
        assert row["image"].size == (truth["width"], truth["height"])
        assert row["count"] is None and row["text"] is None and row["points"] == []
    assert "toothbrush" in ds[0]["labels"]  # id 90 kept


def test_images_are_path_backed_not_embedded(coco, tmp_path):
    ds = load_coco_detection(coco["root"], split="validation", cache_dir=tmp_path / "cache")
    raw = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert raw["bytes"] is None
    assert os.path.samefile(raw["path"], coco["image_dir"] / coco["images"][139]["file_name"])


def test_prompt_lists_categories_in_id_order(coco, tmp_path):
    ds = load_coco_detection(coco["root"], split="val", cache_dir=tmp_path / "cache", family="qwen2_5_vl")
    names = ", ".join(coco["categories"][i] for i in sorted(coco["categories"]))
    assert ds[0]["prompt"][-1] == {
        "role": "user",
        "content": f"Please output bbox coordinates and names of {names}.",
    }
    released = load_coco_detection(
        coco["root"], split="val", cache_dir=tmp_path / "cache", prompt_preset="released", thinking=True
    )
    assert released[0]["prompt"][-1]["content"].startswith("Locate every item from the category list")
    assert "<think>" in released[0]["prompt"][-1]["content"]


def test_categories_and_gt_path_for_evaluation(coco, tmp_path):
    ds = load_coco_detection(coco["root"], split="val", cache_dir=tmp_path / "cache")
    assert coco_categories(ds) == coco["categories"]
    assert coco_categories(coco["annotation_file"]) == coco["categories"]
    meta = dataset_metadata(ds)
    assert os.path.samefile(meta["annotation_files"]["validation"], coco["annotation_file"])
    assert meta["report"]["num_examples"] == {"validation": len(coco["images"])}


def test_crowd_policies(coco, tmp_path):
    n_crowd = sum(len(t["crowd_boxes"]) for t in coco["images"].values())
    assert n_crowd == 1
    builder = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(tmp_path / "c1"))
    builder.download_and_prepare()
    assert builder.report.notes["validation"]["crowd_box_excluded"] == n_crowd

    included = load_coco_detection(coco["root"], cache_dir=tmp_path / "c2", crowd="include")
    row = included.filter(lambda r: r["image_id"] == 139)[0]
    assert len(row["boxes"]) == len(coco["images"][139]["boxes"]) + 1
    assert row["crowd_boxes"] == []

    skipped = load_coco_detection(coco["root"], cache_dir=tmp_path / "c3", crowd="skip_image")
    assert 139 not in skipped["image_id"] and len(skipped) == len(coco["images"]) - 1


def test_object_count_and_area_filters(coco, tmp_path):
    truth = coco["images"]
    ds = load_coco_detection(coco["root"], cache_dir=tmp_path / "c", min_objects=1, max_objects=2)
    expected = {i for i, t in truth.items() if 1 <= len(t["boxes"]) <= 2}
    assert set(ds["image_id"]) == expected
    min_area = 300.0
    small = load_coco_detection(coco["root"], cache_dir=tmp_path / "c2", min_box_area=min_area)
    for row in small:
        kept = [b for b in truth[row["image_id"]]["boxes"] if (b[2] - b[0]) * (b[3] - b[1]) >= min_area]
        assert_boxes(row["boxes"], kept)


def test_bad_annotations_are_counted_and_named(coco, tmp_path):
    def corrupt(data):
        data["annotations"][0]["category_id"] = 12  # a COCO gap id, absent from categories
        data["annotations"][1]["bbox"] = [10, 10, 0, 5]  # zero area
        data["annotations"][3]["bbox"] = [100, 10, 50, 10]  # leaves the 120-px-wide image
        data["annotations"].append({"id": 9999, "image_id": 424242, "category_id": 1, "bbox": [1, 1, 2, 2]})

    _edit(coco["annotation_file"], corrupt)
    builder = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    skips = builder.report.skips["validation"]
    assert skips == {"unknown_category": 1, "invalid_box": 2, "unknown_image": 1}
    examples = builder.report.examples["validation"]
    assert "instances_val2017.json" in examples["unknown_category"][0]
    assert "annotation id 1001" in examples["unknown_category"][0]
    report_file = os.path.join(builder.cache_dir, REPORT_FILENAME)
    with open(report_file) as f:
        assert json.load(f)["report"]["skips"]["validation"] == skips

    # Strict mode stops at the first bad record (annotations are grouped by image before objects are checked).
    with pytest.raises(DataError, match=r"instances_val2017\.json: annotation id 9999 refers to unknown image id"):
        CocoDetection(
            data_dir=str(coco["root"]), cache_dir=str(tmp_path / "strict"), strict=True
        ).download_and_prepare()


def test_missing_and_unreadable_images_are_skipped(coco, tmp_path):
    (coco["image_dir"] / coco["images"][285]["file_name"]).unlink()
    (coco["image_dir"] / coco["images"][632]["file_name"]).write_bytes(b"not an image")
    builder = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(tmp_path / "c"), verify_images=True)
    builder.download_and_prepare()
    assert builder.report.skips["validation"] == {"missing_image": 1, "unreadable_image": 1}
    assert "000000000285.jpg" in builder.report.examples["validation"]["missing_image"][0]
    assert set(builder.as_dataset("validation")["image_id"]) == {139, 724}


def test_wrong_schema_raises_with_file_name(coco, tmp_path):
    _edit(coco["annotation_file"], lambda d: d.pop("annotations"))
    with pytest.raises(DataError, match="instances_val2017.json.*annotations"):
        load_coco_detection(coco["root"], cache_dir=tmp_path / "c")


def test_missing_split_files(tmp_path, coco):
    with pytest.raises(FileNotFoundError, match="instances"):
        load_coco_detection(tmp_path / "nowhere", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="not available"):
        load_coco_detection(coco["root"], split="train", cache_dir=tmp_path / "c")


def test_cache_reused_and_invalidated_by_source_change(coco, tmp_path):
    cache = tmp_path / "cache"
    first = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(cache))
    first.download_and_prepare()
    again = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(cache))
    assert again.cache_dir == first.cache_dir
    again.download_and_prepare()  # reused: the report comes back from the cache
    assert again.report.num_examples == first.report.num_examples

    _edit(coco["annotation_file"], lambda d: d["images"].pop())
    changed = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(cache))
    assert changed.cache_dir != first.cache_dir
    changed.download_and_prepare()
    assert len(changed.as_dataset("validation")) == len(coco["images"]) - 1


def test_explicit_files_and_train_split(tmp_path):
    fx = write_coco_fixture(tmp_path / "coco", split="train")
    ds = load_coco_detection(
        split="train", annotation_file=fx["annotation_file"], image_dir=fx["image_dir"], cache_dir=tmp_path / "c"
    )
    assert ds.split == "train" and len(ds) == len(fx["images"])


def assert_images_decode(ds):
    for row in ds:
        row["image"].load()  # the whole file, not only its header
        assert row["image"].size == (row["width"], row["height"])


def test_damaged_files_rows_in_equal_rows_out_plus_skips(coco, tmp_path):
    truncate_image(coco["image_dir"] / coco["images"][632]["file_name"])  # an interrupted download
    (coco["image_dir"] / coco["images"][285]["file_name"]).unlink()

    def damage(data):
        data["images"].append({"id": 999, "width": 10, "height": 10})  # no file_name
        anns = {a["id"]: a for a in data["annotations"]}
        anns[1001]["category_id"] = 12  # image 139: a COCO gap id
        anns[1002]["bbox"] = [50.5, 10.25, -3.0, 12.0]  # image 139: negative width
        data["annotations"] += [
            {"id": 5001, "image_id": 724, "category_id": 1, "bbox": [1, 2, 3]},  # three numbers
            {"id": 5002, "image_id": 724, "category_id": 1},  # no bbox
            {"id": 5003, "image_id": 424242, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 5004, "image_id": 724, "category_id": 3, "bbox": [2, 2, 10, 10], "area": 100.0, "iscrowd": 0},
        ]

    _edit(coco["annotation_file"], damage)
    data = json.loads(coco["annotation_file"].read_text())
    builder = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    ds = builder.as_dataset("validation")
    skips, notes = builder.report.skips["validation"], builder.report.notes["validation"]
    assert skips == {
        "unreadable_image": 1,
        "missing_image": 1,
        "malformed_record": 2,  # one image record, one annotation record
        "unknown_category": 1,
        "invalid_box": 2,
        "unknown_image": 1,
    }
    assert "000000000632.jpg" in builder.report.examples["validation"]["unreadable_image"][0]
    assert "truncated" in builder.report.examples["validation"]["unreadable_image"][0]
    # Images (the rows): in = out + image-level skips.
    assert len(data["images"]) == len(ds) + skips["unreadable_image"] + skips["missing_image"] + 1
    assert sorted(ds["image_id"]) == [139, 724]
    # Objects of the kept images: in = boxes out + crowd notes + object-level skips.
    kept_anns = [a for a in data["annotations"] if a["image_id"] in (139, 724)]
    n_boxes = sum(len(b) for b in ds["boxes"])
    assert len(kept_anns) == n_boxes + notes["crowd_box_excluded"] + 1 + 2 + 1  # malformed, invalid, unknown cat
    assert_images_decode(ds)

    # A header read alone (decode_images=False) lets the truncated file through as a row that cannot be decoded.
    header_only = load_coco_detection(coco["root"], cache_dir=tmp_path / "h", decode_images=False)
    assert 632 in header_only["image_id"]
    with pytest.raises(OSError, match="truncated"):
        header_only[header_only["image_id"].index(632)]["image"].load()


def test_rebuild_after_an_image_is_replaced_in_place(coco, tmp_path):
    """The COCO cache key covers the annotation files, not the image files: `rebuild=True` rebuilds."""
    ds = load_coco_detection(coco["root"], cache_dir=tmp_path / "c")
    assert 632 in ds["image_id"]
    truncate_image(coco["image_dir"] / coco["images"][632]["file_name"])
    assert 632 in load_coco_detection(coco["root"], cache_dir=tmp_path / "c")["image_id"]  # the cached build
    rebuilt = load_coco_detection(coco["root"], cache_dir=tmp_path / "c", rebuild=True)
    assert 632 not in rebuilt["image_id"] and len(rebuilt) == len(ds) - 1
    assert_images_decode(rebuilt)
    builder = CocoDetection(data_dir=str(coco["root"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()  # the rebuilt cache, with its report
    assert builder.report.skips["validation"] == {"unreadable_image": 1}
