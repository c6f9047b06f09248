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
import pickle

import pytest

from trl_perception.data import PERCEPTION_FEATURES, DataError, RefCoco, load_refcoco
from trl_perception.data.fixtures import truncate_image, write_refcoco_fixture
from trl_perception.data.refcoco import load_refs
from trl_perception.prompts import build_prompt


@pytest.mark.parametrize(
    ("dataset", "split_by", "splits"),
    [
        ("refcoco", "unc", ["train", "val", "testA", "testB"]),
        ("refcoco+", "unc", ["train", "val", "testA", "testB"]),
        ("refcocog", "umd", ["train", "val", "test"]),
    ],
)
def test_one_row_per_sentence_all_splits(tmp_path, dataset, split_by, splits):
    fx = write_refcoco_fixture(tmp_path / "refer", dataset, split_by)
    builder = RefCoco(
        config_name=f"{dataset}-{split_by}",
        data_dir=str(fx["data_dir"]),
        image_dir=str(fx["image_dir"]),
        cache_dir=str(tmp_path / "cache"),
    )
    builder.download_and_prepare()
    built = builder.as_dataset()
    assert list(built) == splits
    for split in splits:
        ds = built[split]
        assert set(PERCEPTION_FEATURES) <= set(ds.column_names)
        truth = {s["sent_id"]: s for s in fx["sentences"] if s["split"] == split}
        assert sorted(ds["sent_id"]) == sorted(truth)
        for row in ds:
            t = truth[row["sent_id"]]
            assert row["id"] == f"{dataset}-{split_by}/{split}/sent-{t['sent_id']}"
            assert row["task"] == "grounding"
            assert row["boxes"] == [pytest.approx(t["box_xyxy"])]  # xywh -> xyxy, original pixels
            assert row["labels"] == [t["sent"]]
            assert row["raw_expression"] == t["raw"]
            assert (row["width"], row["height"]) == (t["width"], t["height"])
            assert row["file_name"] == t["file_name"]  # from instances.json, not the ref's suffixed name
            assert row["category_ids"] == [t["category_id"]]
            assert (row["ref_id"], row["ann_id"], row["image_id"]) == (t["ref_id"], t["ann_id"], t["image_id"])
            assert row["prompt"] == build_prompt("grounding", question=t["sent"])
    assert builder.report.total_skips() == 0


def test_load_refcoco_one_call_and_prompt_options(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer")
    ds = load_refcoco(
        fx["data_dir"], fx["image_dir"], split="testB", family="qwen2_vl", thinking=True, cache_dir=tmp_path / "c"
    )
    assert ds.split == "testB"
    sent = ds[0]["labels"][0]
    assert ds[0]["prompt"] == build_prompt("grounding", family="qwen2_vl", thinking=True, question=sent)
    custom = load_refcoco(
        fx["data_dir"], fx["image_dir"], split="val", prompt_template="Where is {question}?", cache_dir=tmp_path / "c"
    )
    assert custom[0]["prompt"][-1]["content"] == f"Where is {custom[0]['labels'][0]}?"
    assert custom[0]["image"].size == (custom[0]["width"], custom[0]["height"])


def test_refcocog_defaults_to_umd(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer", "refcocog", "umd")
    ds = load_refcoco(fx["data_dir"], fx["image_dir"], dataset="refcocog", split="test", cache_dir=tmp_path / "c")
    assert ds[0]["id"].startswith("refcocog-umd/test/")


@pytest.mark.parametrize("python2_strings", [True, False])
def test_python2_and_python3_pickles(tmp_path, python2_strings):
    fx = write_refcoco_fixture(tmp_path / "refer", python2_strings=python2_strings)
    if python2_strings:
        with open(fx["refs_file"], "rb") as f:
            assert b"U\x05split" in f.read()  # SHORT_BINSTRING: a Python-2 byte string, as in the official files
    ds = load_refcoco(fx["data_dir"], fx["image_dir"], split="val", cache_dir=tmp_path / "c")
    truth = [s["sent"] for s in fx["sentences"] if s["split"] == "val"]
    assert any("café" in t for t in truth)
    assert sorted(label for row in ds["labels"] for label in row) == sorted(truth)


def test_pickle_with_code_is_refused(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(fx["refs_file"], "wb") as f:
        pickle.dump([Evil()], f, protocol=2)
    with pytest.raises(DataError, match=r"refs\(unc\)\.p.*refusing to load global"):
        load_refs(fx["refs_file"])


def test_bad_records_are_counted_and_named(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer")
    refs = load_refs(fx["refs_file"])
    val = [r for r in refs if r["split"] == "val"]
    val[0]["ann_id"] = 999999  # unknown annotation
    val[1]["sentences"].append({"sent_id": 777, "sent": "  ", "raw": "", "tokens": []})  # empty expression
    with open(fx["refs_file"], "wb") as f:
        pickle.dump(refs, f, protocol=2)
    inst = json.loads(fx["instances_file"].read_text())
    test_a_ann = next(r["ann_id"] for r in refs if r["split"] == "testA")
    for ann in inst["annotations"]:
        if ann["id"] == test_a_ann:
            ann["bbox"] = [90.0, 5.0, 50.0, 10.0]  # leaves the image
    fx["instances_file"].write_text(json.dumps(inst))
    test_b_image = next(s["file_name"] for s in fx["sentences"] if s["split"] == "testB")
    (fx["image_dir"] / test_b_image).unlink()

    builder = RefCoco(data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    skips = builder.report.skips
    assert skips["val"] == {"unknown_annotation": 1, "empty_expression": 1}
    assert skips["testA"] == {"invalid_box": 1}
    assert skips["testB"] == {"missing_image": 2}  # both refs of the missing image
    assert skips["train"] == {}
    assert "refs(unc).p: ref_id" in builder.report.examples["val"]["unknown_annotation"][0]
    assert test_b_image in builder.report.examples["testB"]["missing_image"][0]
    n_val = sum(1 for s in fx["sentences"] if s["split"] == "val")
    assert builder.report.num_examples["val"] == n_val - 2  # two sentences of the unknown-annotation ref lost

    with pytest.raises(DataError, match=r"refs\(unc\)\.p: ref_id \d+: ann_id 999999"):
        load_refcoco(fx["data_dir"], fx["image_dir"], split="val", strict=True, cache_dir=tmp_path / "strict")


def test_wrong_schema_and_missing_files(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer")
    with pytest.raises(FileNotFoundError, match="refs"):
        load_refcoco(tmp_path / "nope", fx["image_dir"], cache_dir=tmp_path / "c")
    with open(fx["refs_file"], "wb") as f:
        pickle.dump({"not": "a list"}, f, protocol=2)
    with pytest.raises(DataError, match=r"refs\(unc\)\.p: expected a list"):
        load_refcoco(fx["data_dir"], fx["image_dir"], cache_dir=tmp_path / "c")


def test_damaged_files_rows_in_equal_rows_out_plus_skips(tmp_path):
    fx = write_refcoco_fixture(tmp_path / "refer")
    refs = load_refs(fx["refs_file"])
    by_split = {s: [r for r in refs if r["split"] == s] for s in fx["splits"]}
    image_of = {s["split"]: s["file_name"] for s in fx["sentences"]}
    truncate_image(fx["image_dir"] / image_of["train"])  # an interrupted download: both train refs
    (fx["image_dir"] / image_of["val"]).unlink()  # both val refs
    by_split["testA"][1]["category_id"] = 12  # a COCO gap id
    by_split["testB"][0]["sentences"].append({"sent": "no id", "raw": "no id", "tokens": []})
    del by_split["testB"][1]["sentences"]
    refs.append("not a ref")  # belongs to no split: counted once
    with open(fx["refs_file"], "wb") as f:
        pickle.dump(refs, f, protocol=2)
    inst = json.loads(fx["instances_file"].read_text())
    bad_ann = by_split["testA"][0]["ann_id"]
    next(a for a in inst["annotations"] if a["id"] == bad_ann)["bbox"] = [10.0, 5.0, 0.0, 10.0]  # zero width
    fx["instances_file"].write_text(json.dumps(inst))

    builder = RefCoco(data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    skips, rows_out = builder.report.skips, builder.report.num_examples
    assert skips == {
        "train": {"unreadable_image": 2, "malformed_record": 1},
        "val": {"missing_image": 2},
        "testA": {"invalid_box": 1, "unknown_category": 1},
        "testB": {"malformed_record": 2},  # a sentence without sent_id, a ref without sentences
    }
    assert "truncated" in builder.report.examples["train"]["unreadable_image"][0]
    # Refs are the unit of image, box and category skips, sentences of sentence skips: in = out + skips.
    for split in ("train", "val", "testA"):
        assert rows_out[split] == 0
        assert len(by_split[split]) == sum(skips[split].values()) - (split == "train")  # the unsplit record
    test_b = builder.as_dataset("testB")
    assert rows_out["testB"] == len(test_b) == 2  # the first ref's two good sentences
    assert len(by_split["testB"][0]["sentences"]) == len(test_b) + 1
    for row in test_b:
        row["image"].load()
        assert row["image"].size == (row["width"], row["height"])

    with pytest.raises(
        DataError, match=r"(?s)No 'val' rows left after the skips.*val: 0 examples; skipped: .*missing_image=2"
    ):
        load_refcoco(fx["data_dir"], fx["image_dir"], split="val", cache_dir=tmp_path / "c")
    header_only = load_refcoco(
        fx["data_dir"], fx["image_dir"], split="train", decode_images=False, cache_dir=tmp_path / "h"
    )
    assert len(header_only) == 3  # the truncated image passes a header read
