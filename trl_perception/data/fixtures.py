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
"""Tiny synthetic files in the official formats of RefCOCO, COCO 2017, PixMo-Count and the Fox page-OCR benchmark.

The licences of the real datasets forbid vendoring samples, so tests (and the evaluation tests) generate these at
test time. Every writer returns a `dict` with the paths it wrote and the ground truth it drew, so tests compare the
builders against values the fixture knows rather than against hard-coded numbers.

Example:
```python
>>> from trl_perception.data.fixtures import write_coco_fixture
>>> fx = write_coco_fixture(tmp_path)
>>> fx["annotation_file"], fx["image_dir"]
(PosixPath('.../annotations/instances_val2017.json'), PosixPath('.../val2017'))
```
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import struct
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont


_COLORS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 180, 30), (150, 60, 200)]

# Gapped COCO ids, including 90 (the highest id, which exposed an off-by-one in the released code).
COCO_FIXTURE_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
]


def draw_image(path: str | Path, width: int, height: int, boxes_xyxy: list[list[float]] = (), seed: int = 0) -> Path:
    """Draw a ``width`` × ``height`` image with one filled rectangle per box and save it (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(200, 256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for i, (x1, y1, x2, y2) in enumerate(boxes_xyxy):
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], fill=_COLORS[i % len(_COLORS)])
    image.save(path)
    return path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def truncate_image(path: str | Path) -> Path:
    """Cut a JPEG or PNG file in the middle of its pixel data, as an interrupted download does: the header (and so
    the size) still reads, a full decode fails."""
    path = Path(path)
    data = path.read_bytes()
    marker = b"\xff\xda" if data[:2] == b"\xff\xd8" else b"IDAT"  # JPEG start of scan / PNG image data
    start = data.index(marker) + 16
    path.write_bytes(data[: start + (len(data) - start) // 2])
    return path


def _xyxy(bbox_xywh: list[float]) -> list[float]:
    x, y, w, h = bbox_xywh
    return [x, y, x + w, y + h]


# -- COCO 2017 ---------------------------------------------------------------------------------------------------


def write_coco_fixture(root: str | Path, split: str = "val") -> dict[str, Any]:
    """Write ``annotations/instances_{split}2017.json`` and ``{split}2017/*.jpg`` under ``root``.

    Contents: 4 images (one with no annotations), categories with gapped ids ``1, 3, 18, 90``, ``area`` = w·h,
    ``iscrowd`` 0 except one crowd annotation (RLE segmentation) on the first image.

    Returns:
        `dict` with ``root``, ``annotation_file``, ``image_dir``, ``categories`` (id → name) and ``images``: per image id
        ``{"file_name", "width", "height", "boxes" (xyxy, non-crowd), "category_ids", "crowd_boxes"}``.
    """
    root = Path(root)
    image_dir = root / f"{split}2017"
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    specs = [  # (image id, width, height, [(category id, xywh, iscrowd)])
        (139, 96, 64, [(1, [4.0, 6.0, 30.0, 40.0], 0), (90, [50.5, 10.25, 20.0, 12.0], 0), (1, [0, 0, 90, 60], 1)]),
        (285, 120, 80, [(3, [10.0, 20.0, 60.0, 30.0], 0)]),
        (
            632,
            200,
            100,
            [(18, [100.0, 40.0, 80.0, 50.0], 0), (1, [5.0, 5.0, 10.0, 20.0], 0), (3, [30, 60, 40, 30], 0)],
        ),
        (724, 64, 64, []),
    ]
    images, annotations, truth = [], [], {}
    ann_id = 1000
    for image_id, width, height, objects in specs:
        file_name = f"{image_id:012d}.jpg"
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": width,
                "height": height,
                "license": 1,
                "coco_url": f"http://images.example.org/{split}2017/{file_name}",
                "flickr_url": "",
                "date_captured": "2013-11-14 16:28:13",
            }
        )
        entry = {"file_name": file_name, "width": width, "height": height, "boxes": [], "category_ids": [],
                 "crowd_boxes": [], "annotation_ids": []}  # fmt: skip
        for category_id, bbox, iscrowd in objects:
            ann_id += 1
            ann = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": bbox,
                "area": float(bbox[2] * bbox[3]),
                "iscrowd": iscrowd,
                "segmentation": {"counts": [0, width * height], "size": [height, width]}
                if iscrowd
                else [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]],
            }
            annotations.append(ann)
            if iscrowd:
                entry["crowd_boxes"].append(_xyxy(bbox))
            else:
                entry["boxes"].append(_xyxy(bbox))
                entry["category_ids"].append(category_id)
                entry["annotation_ids"].append(ann_id)
        truth[image_id] = entry
        draw_image(image_dir / file_name, width, height, entry["boxes"], seed=image_id)
    data = {
        "info": {"description": "trl-perception synthetic COCO fixture", "version": "1.0", "year": 2017},
        "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": COCO_FIXTURE_CATEGORIES,
    }
    ann_file.write_text(json.dumps(data))
    return {
        "root": root,
        "annotation_file": ann_file,
        "image_dir": image_dir,
        "categories": {c["id"]: c["name"] for c in COCO_FIXTURE_CATEGORIES},
        "images": truth,
    }


def write_coco_scale_fixture(
    root: str | Path,
    num_images: int,
    boxes_per_image: int = 8,
    split: str = "train",
    seed: int = 0,
    image_bytes: bytes | None = None,
) -> dict[str, Any]:
    """A COCO-scale annotation file (random boxes, 80 gapped category ids) with one small JPEG per image.

    All image files share the same bytes (written once per file), so generation is fast; the sizes in the JSON are
    those of that image, as the builder checks them against the decoded file.
    """
    root = Path(root)
    rng = random.Random(seed)
    image_dir = root / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    categories = [{"id": i, "name": f"class_{i}", "supercategory": "thing"} for i in range(1, 91) if i not in missing]
    if image_bytes is None:
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (128, 128, 128)).save(buf, format="JPEG")
        image_bytes = buf.getvalue()
    images, annotations = [], []
    ann_id = 0
    with Image.open(io.BytesIO(image_bytes)) as im:
        width, height = im.size
    for image_id in range(1, num_images + 1):
        file_name = f"{image_id:012d}.jpg"
        (image_dir / file_name).write_bytes(image_bytes)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 1})
        for _ in range(boxes_per_image):
            ann_id += 1
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": rng.choice(categories)["id"],
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "segmentation": polygon,
                }
            )
    data = {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    with open(ann_file, "w") as f:
        json.dump(data, f)
    return {"root": root, "annotation_file": ann_file, "image_dir": image_dir, "num_boxes": len(annotations)}


# -- RefCOCO / RefCOCO+ / RefCOCOg -------------------------------------------------------------------------------


class _Python2Pickler(pickle._Pickler):
    """Writes `str` as Python-2 byte strings (``SHORT_BINSTRING``/``BINSTRING``), like the official refs files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str) -> None:
        data = obj.encode("utf-8")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str


_REFER_SPLITS = {
    "unc": ["train", "val", "testA", "testB"],
    "umd": ["train", "val", "test"],
    "google": ["train", "val"],
}


def write_refcoco_fixture(
    root: str | Path, dataset: str = "refcoco", split_by: str = "unc", python2_strings: bool = True
) -> dict[str, Any]:
    """Write the refer-API layout: ``<root>/<dataset>/refs(<split_by>).p`` (protocol-2 pickle) + ``instances.json``,
    and ``<root>/images/mscoco/images/train2014/COCO_train2014_*.jpg``.

    With ``python2_strings`` (default) the pickle stores strings as Python-2 byte strings, as the official files do;
    one sentence contains non-ASCII text ("café") to exercise decoding.

    Two refs per split; the first ref of each split has two sentences, the second one. A ref's own ``file_name``
    carries the annotation-id suffix of the real files (it is not the image file; builders must ignore it).

    Returns:
        `dict` with ``data_dir``, ``refs_file``, ``instances_file``, ``image_dir``, ``splits`` and ``sentences``: one entry
        per sentence ``{"sent_id", "ref_id", "ann_id", "image_id", "split", "sent", "raw", "box_xyxy",
        "category_id", "file_name", "width", "height"}``.
    """
    root = Path(root)
    data_dir = root / dataset
    data_dir.mkdir(parents=True, exist_ok=True)
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    splits = _REFER_SPLITS[split_by]
    categories = COCO_FIXTURE_CATEGORIES
    images, annotations, refs, sentences = [], [], [], []
    ref_id, ann_id, sent_id = 0, 500, 0
    for s_index, split in enumerate(splits):
        image_id = 9 + 10 * s_index
        width, height = 96 + 8 * s_index, 72
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        image_boxes = []
        for r in range(2):
            ann_id += 1
            ref_id += 1
            bbox = [4.0 + 40 * r, 8.5, 30.0 + r, 40.0]
            category = categories[(s_index + r) % len(categories)]
            annotations.append(
                {"id": ann_id, "image_id": image_id, "category_id": category["id"], "bbox": bbox,
                 "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": [[bbox[0], bbox[1], bbox[0] + 1, bbox[1]]]}
            )  # fmt: skip
            image_boxes.append(_xyxy(bbox))
            sents = []
            for k in range(2 if r == 0 else 1):
                sent_id += 1
                raw = f"The {category['name']} number {r} on the {'left' if r == 0 else 'right'}, take {k}"
                if s_index == 1 and r == 0 and k == 1:
                    raw += " near the café"
                sent = raw.lower().replace(",", "")
                sents.append({"tokens": sent.split(), "raw": raw, "sent_id": sent_id, "sent": sent})
                sentences.append(
                    {"sent_id": sent_id, "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                     "sent": sent, "raw": raw, "box_xyxy": _xyxy(bbox), "category_id": category["id"],
                     "file_name": file_name, "width": width, "height": height}
                )  # fmt: skip
            refs.append(
                {
                    "sent_ids": [s["sent_id"] for s in sents],
                    "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                    "ann_id": ann_id,
                    "ref_id": ref_id,
                    "image_id": image_id,
                    "split": split,
                    "sentences": sents,
                    "category_id": category["id"],
                }
            )
        draw_image(image_dir / file_name, width, height, image_boxes, seed=image_id)
    refs_file = data_dir / f"refs({split_by}).p"
    with open(refs_file, "wb") as f:
        if python2_strings:
            _Python2Pickler(f, protocol=2).dump(refs)
        else:
            pickle.dump(refs, f, protocol=2)
    instances_file = data_dir / "instances.json"
    instances_file.write_text(
        json.dumps(
            {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
        )
    )
    return {
        "root": root,
        "data_dir": data_dir,
        "refs_file": refs_file,
        "instances_file": instances_file,
        "image_dir": image_dir,
        "splits": splits,
        "sentences": sentences,
    }


# -- PixMo-Count -------------------------------------------------------------------------------------------------


def write_pixmo_fixture(root: str | Path, table_format: str = "parquet") -> dict[str, Any]:
    """Write PixMo-Count tables ``<root>/data/{train,validation,test}-00000-of-00001.<fmt>`` and ``<root>/images``.

    Table columns: ``image_url``, ``image_sha256`` (real sha256 of the drawn image), ``count``, ``label``, ``points``
    (``{x, y}`` structs in pixels on train; null on validation/test, as published). Image files are named three ways
    so every matching path is exercised: by the URL's file name, by ``<sha256>.<ext>``, and by an unrelated name that
    only a sha256 lookup finds. ``table_format`` is ``"parquet"``, ``"csv"`` (points as a JSON string) or ``"jsonl"``.

    Returns:
        `dict` with ``data_dir``, ``image_dir``, ``tables`` (split → path) and ``rows`` (split → list of row dicts with
        ``image_path`` and ``points_xy`` ([[x, y], ...]) added).
    """
    import pyarrow as pa

    root = Path(root)
    image_dir = root / "images"
    table_dir = root / "data"
    table_dir.mkdir(parents=True, exist_ok=True)
    labels = ["people", "cars", "birds"]
    rows: dict[str, list[dict[str, Any]]] = {}
    tables = {}
    naming = ["url", "sha", "other"]
    n = 0
    for split, num in (("train", 3), ("validation", 2), ("test", 2)):
        rows[split] = []
        for i in range(num):
            n += 1
            width, height = 80 + 10 * i, 60 + 5 * n
            count = 2 + (n % 3)
            pts = [[8.0 + 12 * k + 0.5, 10.0 + 7 * k] for k in range(count)]
            boxes = [[x - 3, y - 3, x + 3, y + 3] for x, y in pts]
            tmp = draw_image(image_dir / f".tmp_{n}.jpg", width, height, boxes, seed=n)
            sha = sha256_file(tmp)
            url = f"https://images.example.org/p/{n}/photo_{n}.jpg"
            how = naming[n % 3]
            final = image_dir / {"url": f"photo_{n}.jpg", "sha": f"{sha}.jpg", "other": f"renamed_{n}.jpg"}[how]
            tmp.rename(final)
            rows[split].append(
                {"image_url": url, "image_sha256": sha, "count": count, "label": labels[n % 3],
                 "points": [{"x": x, "y": y} for x, y in pts] if split == "train" else None,
                 "image_path": final, "points_xy": pts if split == "train" else [], "width": width,
                 "height": height, "naming": how}
            )  # fmt: skip
        columns = ["image_url", "image_sha256", "count", "label", "points"]
        path = table_dir / f"{split}-00000-of-00001.{table_format}"
        if table_format == "parquet":
            import pyarrow.parquet as pq

            schema = pa.schema(
                [("image_url", pa.string()), ("image_sha256", pa.string()), ("count", pa.int32()),
                 ("label", pa.string()), ("points", pa.list_(pa.struct([("x", pa.float32()), ("y", pa.float32())])))]
            )  # fmt: skip
            table = pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows[split]], schema=schema)
            pq.write_table(table, path)
        elif table_format == "csv":
            import csv

            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                for r in rows[split]:
                    writer.writerow({**{c: r[c] for c in columns}, "points": json.dumps(r["points"])})
        elif table_format == "jsonl":
            with open(path, "w") as f:
                for r in rows[split]:
                    f.write(json.dumps({c: r[c] for c in columns}) + "\n")
        else:
            raise ValueError(f"Unknown table_format {table_format!r}")
        tables[split] = path
    return {"root": root, "data_dir": root, "image_dir": image_dir, "tables": tables, "rows": rows}


# -- Fox page OCR ------------------------------------------------------------------------------------------------

FOX_EN_PAGES = [
    "Perception policies learn from rule based rewards.\nThe quick brown fox jumps over the lazy dog 42 times.",
    "Second page of synthetic text.\nIt has two paragraphs and some numbers: 3.14, 2.72.",
]
FOX_CN_PAGES = ["感知策略通过基于规则的奖励进行学习。\n第二行文字。", "这是第二页合成文本，包含数字 123。"]


def _render_page(path: Path, text: str, width: int = 320, height: int = 200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.multiline_text((8, 8), text, fill=(0, 0, 0), font=font)  # CJK glyphs may render as boxes; GT is the text
    image.save(path)
    return path


def write_fox_fixture(root: str | Path) -> dict[str, Any]:
    """Write the Fox page-OCR layout: ``<root>/{en,cn}_page_ocr.json`` and ``<root>/{en,cn}_pdf_png/*.png``.

    Each JSON is a list of ``{"image", "conversations": [{"from": "human", ...}, {"from": "gpt", "value": GT}]}``;
    English pages are ASCII, Chinese pages contain CJK characters.

    Returns:
        `dict` with ``data_dir`` and, per language (``"en"``, ``"cn"``), ``{"annotation_file", "image_dir",
        "pages": [{"image", "text", "width", "height"}]}``.
    """
    root = Path(root)
    out: dict[str, Any] = {"root": root, "data_dir": root}
    for lang, texts in (("en", FOX_EN_PAGES), ("cn", FOX_CN_PAGES)):
        image_dir = root / f"{lang}_pdf_png"
        records, pages = [], []
        for i, text in enumerate(texts):
            name = f"{lang}_page_{i}.png"
            width, height = 320 + 16 * i, 200
            _render_page(image_dir / name, text, width, height)
            records.append(
                {"image": name, "conversations": [{"from": "human", "value": "<image>\nOCR this image: "},
                                                  {"from": "gpt", "value": text}]}
            )  # fmt: skip
            pages.append({"image": name, "text": text, "width": width, "height": height})
        ann = root / f"{lang}_page_ocr.json"
        ann.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
        out[lang] = {"annotation_file": ann, "image_dir": image_dir, "pages": pages}
    return out


__all__ = [
    "COCO_FIXTURE_CATEGORIES",
    "FOX_CN_PAGES",
    "FOX_EN_PAGES",
    "draw_image",
    "sha256_file",
    "truncate_image",
    "write_coco_fixture",
    "write_coco_scale_fixture",
    "write_fox_fixture",
    "write_pixmo_fixture",
    "write_refcoco_fixture",
]
