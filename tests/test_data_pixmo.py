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
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trl_perception.data import PERCEPTION_FEATURES, DataError, PixmoCount, load_pixmo_count
from trl_perception.data.fixtures import draw_image, sha256_file, truncate_image, write_pixmo_fixture
from trl_perception.data.pixmo_count import parse_points
from trl_perception.prompts import build_prompt


@pytest.mark.parametrize("table_format", ["parquet", "csv", "jsonl"])
def test_all_splits_match_every_naming(tmp_path, table_format):
    fx = write_pixmo_fixture(tmp_path / "pixmo", table_format=table_format)
    builder = PixmoCount(data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    built = builder.as_dataset()
    assert list(built) == ["train", "validation", "test"]
    namings = set()
    for split, rows in fx["rows"].items():
        ds = built[split]
        assert set(PERCEPTION_FEATURES) <= set(ds.column_names)
        assert len(ds) == len(rows)
        for i, (row, truth) in enumerate(zip(ds, rows)):
            assert row["id"] == f"pixmo-count/{split}/row-{i}"
            assert row["task"] == "counting"
            assert row["count"] == truth["count"]
            assert len(row["points"]) == len(truth["points_xy"])
            for p, q in zip(row["points"], truth["points_xy"]):
                assert p == pytest.approx(q)
            assert (row["width"], row["height"]) == (truth["width"], truth["height"])
            assert row["label"] == truth["label"] and row["image_sha256"] == truth["image_sha256"]
            assert row["prompt"] == build_prompt("counting", question=truth["label"])
            assert row["boxes"] == [] and row["text"] is None
            assert row["image"].size == (truth["width"], truth["height"])
            namings.add(truth["naming"])
    assert namings == {"url", "sha", "other"}  # URL file name, <sha256>.jpg and content-hash-only lookups
    assert builder.report.total_skips() == 0


def test_missing_and_mismatched_images_are_reported(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    train = fx["rows"]["train"]
    os.unlink(train[0]["image_path"])  # missing
    by_url = next(r for r in train if r["naming"] == "url")
    if by_url is train[0]:
        pytest.fail("fixture order changed: need a URL-named image other than the deleted one")
    draw_image(by_url["image_path"], 50, 50, seed=123)  # same file name, different content
    ds = load_pixmo_count(fx["data_dir"], fx["image_dir"], split="train", cache_dir=tmp_path / "c")
    builder = PixmoCount(data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()  # reused from cache: the report comes back with it
    assert builder.report.skips["train"] == {"missing_image": 1, "sha256_mismatch": 1}
    assert len(ds) == len(train) - 2
    message = builder.report.examples["train"]["sha256_mismatch"][0]
    assert "train-00000-of-00001.parquet: row" in message and by_url["image_url"] in message

    unchecked = load_pixmo_count(
        fx["data_dir"], fx["image_dir"], split="train", verify_sha256=False, cache_dir=tmp_path / "c2"
    )
    assert len(unchecked) == len(train) - 1  # the mismatched file is accepted by name

    with pytest.raises(DataError, match=r"row \d+ .*no local file"):
        load_pixmo_count(fx["data_dir"], fx["image_dir"], split="train", strict=True, cache_dir=tmp_path / "c3")


def test_match_by_modes(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    rows = [r for rs in fx["rows"].values() for r in rs]
    builder = PixmoCount(
        data_dir=str(fx["data_dir"]),
        image_dir=str(fx["image_dir"]),
        match_by="filename",
        cache_dir=str(tmp_path / "c"),
    )
    builder.download_and_prepare()
    assert builder.report.total_skips() == sum(r["naming"] == "other" for r in rows)
    assert set(builder.report.skips["train"]) <= {"missing_image"}
    by_sha = PixmoCount(
        data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), match_by="sha256", cache_dir=str(tmp_path / "c")
    )
    by_sha.download_and_prepare()
    assert by_sha.report.total_skips() == 0


def test_explicit_table_and_unreadable_image(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    rows = fx["rows"]["test"]
    victim = next(r for r in rows if r["naming"] != "other")  # findable by name once its hash no longer matches
    with open(victim["image_path"], "wb") as f:
        f.write(b"garbage")
    builder = PixmoCount(
        image_dir=str(fx["image_dir"]),
        table_files={"test": str(fx["tables"]["test"])},
        verify_sha256=False,
        cache_dir=str(tmp_path / "c"),
    )
    builder.download_and_prepare()
    assert builder.report.skips["test"] == {"unreadable_image": 1}
    assert len(builder.as_dataset("test")) == len(rows) - 1
    assert "cannot be read" in builder.report.examples["test"]["unreadable_image"][0]


def test_wrong_schema_names_file(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    pq.write_table(pa.table({"url": ["x"], "n": [1]}), fx["tables"]["validation"])
    with pytest.raises(DataError, match=r"validation-00000-of-00001\.parquet: not a PixMo-Count table.*image_sha256"):
        load_pixmo_count(fx["data_dir"], fx["image_dir"], split="validation", cache_dir=tmp_path / "c")


def test_points_outside_image_are_skipped(tmp_path):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    table = pq.read_table(fx["tables"]["train"]).to_pylist()
    table[1]["points"] = [{"x": 1e4, "y": 1.0}]
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(fx["tables"]["train"])), fx["tables"]["train"])
    builder = PixmoCount(data_dir=str(fx["data_dir"]), image_dir=str(fx["image_dir"]), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    assert builder.report.skips["train"] == {"point_outside_image": 1}


@pytest.mark.parametrize(
    "points",
    [
        {"x": [1.0, 2.5], "y": [3.0, 4.0]},
        [{"x": 1.0, "y": 3.0}, {"x": 2.5, "y": 4.0}],
        [[1.0, 3.0], [2.5, 4.0]],
        '{"x": [1.0, 2.5], "y": [3.0, 4.0]}',
    ],
)
def test_parse_points_shapes(points):
    assert parse_points(points) == [[1.0, 3.0], [2.5, 4.0]]


@pytest.mark.parametrize("empty", [None, [], "", "null", {"x": [], "y": []}])
def test_parse_points_empty(empty):
    assert parse_points(empty) == []


def test_parse_points_rejects_ragged():
    with pytest.raises(ValueError, match="2 x and 1 y"):
        parse_points({"x": [1, 2], "y": [3]})


def _write_table(path, rows):
    schema = pq.read_schema(path)
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema), path)


@pytest.mark.parametrize("verify_sha256", [True, False])
def test_damaged_files_rows_in_equal_rows_out_plus_skips(tmp_path, verify_sha256):
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    train, val = fx["rows"]["train"], fx["rows"]["validation"]
    assert [r["naming"] for r in train] == ["sha", "other", "url"] and [r["naming"] for r in val] == ["sha", "other"]
    truncate_image(train[0]["image_path"])  # an interrupted download; the table keeps the published sha256
    train[1]["image_path"].unlink()
    truncate_image(train[2]["image_path"])
    table = [dict(r) for r in train]
    table[2]["image_sha256"] = sha256_file(train[2]["image_path"])  # a table hashed from the local (damaged) file
    table += [
        {**val[0], "count": None},
        {**val[0], "label": None},
        {**val[0], "count": -2},
        {**val[0], "count": 1, "points": [{"x": 1e4, "y": 1.0}]},
        {**val[1], "count": 2},  # found by content hash
    ]
    _write_table(fx["tables"]["train"], table)
    builder = PixmoCount(
        data_dir=str(fx["data_dir"]),
        image_dir=str(fx["image_dir"]),
        verify_sha256=verify_sha256,
        splits=("train",),
        cache_dir=str(tmp_path / "c"),
    )
    builder.download_and_prepare()
    skips = builder.report.skips["train"]
    first = {"sha256_mismatch": 1} if verify_sha256 else {"unreadable_image": 1}  # the file found by name
    expected = {"missing_image": 1, "unreadable_image": 1, "malformed_record": 3, "point_outside_image": 1}
    assert skips == {k: expected.get(k, 0) + first.get(k, 0) for k in expected | first}
    assert "truncated" in builder.report.examples["train"]["unreadable_image"][0]
    ds = builder.as_dataset("train")
    assert len(table) == len(ds) + sum(skips.values())  # rows in = rows out + counted skips
    assert ds["id"] == ["pixmo-count/train/row-7"]
    for row in ds:
        row["image"].load()
        assert row["image"].size == (row["width"], row["height"]) == (val[1]["width"], val[1]["height"])


def test_truncated_image_passes_a_header_only_build(tmp_path):
    """What `decode_images` (the default) prevents: a row whose image fails at the training step that samples it."""
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    victim = fx["rows"]["train"][0]
    truncate_image(victim["image_path"])
    ds = load_pixmo_count(
        fx["data_dir"], fx["image_dir"], split="train", verify_sha256=False, decode_images=False, cache_dir=tmp_path
    )
    assert len(ds) == len(fx["rows"]["train"])
    with pytest.raises(OSError, match="truncated"):
        ds[0]["image"].load()


def test_cache_follows_an_image_replaced_in_place(tmp_path):
    """The cache key covers every file under image_dir (size, mtime), however deep: no stale row after a change."""
    fx = write_pixmo_fixture(tmp_path / "pixmo")
    victim = next(r for r in fx["rows"]["train"] if r["naming"] == "url")
    nested = fx["image_dir"] / "batch_1" / victim["image_path"].name  # images are searched recursively
    nested.parent.mkdir()
    victim["image_path"].rename(nested)
    index = fx["rows"]["train"].index(victim)

    def load():
        builder = PixmoCount(
            data_dir=str(fx["data_dir"]),
            image_dir=str(fx["image_dir"]),
            verify_sha256=False,
            splits=("train",),
            cache_dir=str(tmp_path / "c"),
        )
        builder.download_and_prepare()
        return builder, builder.as_dataset("train")

    first, ds = load()
    assert (ds[index]["width"], ds[index]["height"]) == (victim["width"], victim["height"])
    again, _ = load()
    assert again.cache_dir == first.cache_dir  # nothing changed: the cache is reused

    draw_image(nested, 33, 22, seed=5)  # same name, new content and size
    redrawn, ds = load()
    assert redrawn.cache_dir != first.cache_dir
    assert (ds[index]["width"], ds[index]["height"]) == (33, 22)
    ds[index]["image"].load()

    truncate_image(nested)
    truncated, ds = load()
    assert truncated.cache_dir not in (first.cache_dir, redrawn.cache_dir)
    assert truncated.report.skips["train"] == {"unreadable_image": 1}
    assert len(ds) == len(fx["rows"]["train"]) - 1
