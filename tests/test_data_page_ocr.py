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

import pytest

from trl_perception.data import PERCEPTION_FEATURES, DataError, PageOcr, load_page_ocr
from trl_perception.data.fixtures import draw_image, truncate_image, write_fox_fixture
from trl_perception.prompts import build_prompt


@pytest.mark.parametrize(("language", "prefix"), [("en", "en"), ("zh", "cn"), ("cn", "cn")])
def test_fox_pages(tmp_path, language, prefix):
    fx = write_fox_fixture(tmp_path / "fox")
    ds = load_page_ocr(fx["data_dir"], language=language, cache_dir=tmp_path / "c")
    pages = fx[prefix]["pages"]
    assert set(PERCEPTION_FEATURES) <= set(ds.column_names)
    assert ds.split == "test" and len(ds) == len(pages)
    name = "zh" if language == "cn" else language
    for row, page in zip(ds, pages):
        assert row["text"] == page["text"]  # verbatim, newlines included
        assert row["id"] == f"page-ocr-{name}/test/{page['image']}"
        assert (row["width"], row["height"]) == (page["width"], page["height"])
        assert row["task"] == "ocr" and row["language"] == name
        assert row["prompt"] == build_prompt("ocr")
        assert row["source_prompt"] == "<image>\nOCR this image: "
        assert row["boxes"] == [] and row["count"] is None
    if prefix == "cn":
        assert any("\u4e00" <= ch <= "\u9fa5" for ch in ds[0]["text"])


def test_released_eval_prompt_and_thinking(tmp_path):
    fx = write_fox_fixture(tmp_path / "fox")
    ds = load_page_ocr(fx["data_dir"], prompt_preset="released", cache_dir=tmp_path / "c")
    assert ds[0]["prompt"][-1]["content"] == "<image>\nOCR this image: "
    thinking = load_page_ocr(fx["data_dir"], thinking=True, family="qwen2_vl", cache_dir=tmp_path / "c")
    assert thinking[0]["prompt"] == build_prompt("ocr", family="qwen2_vl", thinking=True)


def test_generic_jsonl_training_pages(tmp_path):
    image_dir = tmp_path / "pages"
    records = []
    for i, text in enumerate(["first page text", "second page", "first page again"]):
        name = "p0.png" if i == 2 else f"p{i}.png"  # a repeated image name gets a "#2" id suffix
        draw_image(image_dir / name, 60 + i, 40)
        records.append({"image": name, "text": text})
    ann = tmp_path / "train.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    ds = load_page_ocr(split="train", annotation_file=ann, image_dir=image_dir, cache_dir=tmp_path / "c")
    assert ds["text"] == [r["text"] for r in records]
    assert ds["id"] == ["page-ocr-en/train/p0.png", "page-ocr-en/train/p1.png", "page-ocr-en/train/p0.png#2"]
    assert ds[0]["width"] == ds[2]["width"] == 62  # both rows read the same file, last drawn 62 px wide
    assert ds["source_prompt"] == [None, None, None]


def test_bad_pages_are_counted(tmp_path):
    fx = write_fox_fixture(tmp_path / "fox")
    ann = fx["en"]["annotation_file"]
    records = json.loads(ann.read_text())
    records.append({"image": "missing.png", "conversations": [{"from": "gpt", "value": "x"}]})
    records.append({"image": fx["en"]["pages"][0]["image"], "conversations": [{"from": "gpt", "value": "   "}]})
    records.append({"image": "no_gt.png", "conversations": [{"from": "human", "value": "q"}]})
    (fx["en"]["image_dir"] / "broken.png").write_bytes(b"\x89PNG broken")
    records.append({"image": "broken.png", "conversations": [{"from": "gpt", "value": "text"}]})
    ann.write_text(json.dumps(records))
    builder = PageOcr(config_name="en", data_dir=str(fx["data_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    assert builder.report.skips["test"] == {
        "missing_image": 1,
        "empty_text": 1,
        "malformed_record": 1,
        "unreadable_image": 1,
    }
    assert "en_page_ocr.json: record 4" in builder.report.examples["test"]["malformed_record"][0]
    assert len(builder.as_dataset("test")) == len(fx["en"]["pages"])
    with pytest.raises(DataError, match=r"en_page_ocr\.json: record 2: image file .*missing\.png"):
        load_page_ocr(fx["data_dir"], strict=True, cache_dir=tmp_path / "strict")


def test_wrong_schema_and_missing_file(tmp_path):
    fx = write_fox_fixture(tmp_path / "fox")
    fx["cn"]["annotation_file"].write_text(json.dumps({"image": "x"}))
    with pytest.raises(DataError, match=r"cn_page_ocr\.json: expected a JSON list"):
        load_page_ocr(fx["data_dir"], language="zh", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="en_page_ocr.json"):
        load_page_ocr(tmp_path / "nowhere", cache_dir=tmp_path / "c")


def test_damaged_files_rows_in_equal_rows_out_plus_skips(tmp_path):
    fx = write_fox_fixture(tmp_path / "fox")
    en = fx["en"]
    truncate_image(en["image_dir"] / en["pages"][0]["image"])  # an interrupted download
    draw_image(en["image_dir"] / "extra.png", 50, 30)
    records = json.loads(en["annotation_file"].read_text())
    records += [
        {"image": "missing.png", "conversations": [{"from": "gpt", "value": "x"}]},
        {"image": "extra.png", "conversations": [{"from": "human", "value": "q"}]},  # no GT turn
        {"image": 7, "conversations": [{"from": "gpt", "value": "x"}]},  # no image name
        {"image": "extra.png", "conversations": [{"from": "gpt", "value": "\n "}]},
        {"image": "extra.png", "conversations": [{"from": "gpt", "value": "extra page"}]},
    ]
    en["annotation_file"].write_text(json.dumps(records))
    builder = PageOcr(config_name="en", data_dir=str(fx["data_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    skips = builder.report.skips["test"]
    assert skips == {"unreadable_image": 1, "missing_image": 1, "malformed_record": 2, "empty_text": 1}
    assert "truncated" in builder.report.examples["test"]["unreadable_image"][0]
    ds = builder.as_dataset("test")
    assert len(records) == len(ds) + sum(skips.values())  # rows in = rows out + counted skips
    assert ds["text"] == [en["pages"][1]["text"], "extra page"]
    for row in ds:
        row["image"].load()
        assert row["image"].size == (row["width"], row["height"])

    header_only = load_page_ocr(fx["data_dir"], decode_images=False, cache_dir=tmp_path / "h")
    assert len(header_only) == len(ds) + 1  # the truncated page passes a header read
