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
"""COCO 2017 detection builder: one row per image with all its objects, from ``instances_{train,val}2017.json``.

Policies (all counted in the build report):

- **Crowd** (``iscrowd=1``) annotations are region labels, not instances. ``crowd="exclude"`` (default) keeps them out
  of ``boxes``/``labels`` and stores them in ``crowd_boxes`` (pycocotools ignores detections matched to them);
  ``"include"`` treats them as ordinary objects; ``"skip_image"`` drops images that contain any.
- Objects with an unknown ``category_id`` or an invalid box (zero area, outside the image by more than
  ``box_tolerance`` px) are skipped and reported (strict mode raises). Boxes within the tolerance are clipped.
- ``min_box_area`` drops small objects; ``min_objects`` / ``max_objects`` filter images by their number of kept
  objects (e.g. ``min_objects=1`` for training, since the reward needs GT; keep the default 0 for evaluation so
  the image set matches the GT file).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets

from ._common import (
    DataError,
    PerceptionBuilder,
    PerceptionBuilderConfig,
    build_split,
    check_image,
    decode_images,
    xywh_box,
)
from .schema import perception_features


_SPLITS = {"train": "train", "validation": "val"}
SPLIT_ALIASES = {"val": "validation", "val2017": "validation", "train2017": "train"}

_FEATURES = perception_features(
    {
        "image_id": datasets.Value("int64"),
        "file_name": datasets.Value("string"),
        "areas": datasets.Sequence(datasets.Value("float32")),
        "annotation_ids": datasets.Sequence(datasets.Value("int64")),
        "crowd_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
    }
)


@dataclass
class CocoDetectionConfig(PerceptionBuilderConfig):
    """Config of `CocoDetection`.

    Args:
        year (`str`, *optional*, defaults to `"2017"`):
            File-name year: ``instances_{split}{year}.json`` and ``{split}{year}/``.
        annotation_files (`dict[str, str]`, *optional*):
            Split (``"train"``/``"validation"``) → instances JSON; defaults to ``data_dir/annotations/``.
        image_dirs (`dict[str, str]`, *optional*):
            Split → image folder; defaults to ``data_dir/{train,val}2017``.
        crowd (`str`, *optional*, defaults to `"exclude"`):
            ``"exclude"``, ``"include"`` or ``"skip_image"`` (see the module docstring).
        min_objects (`int`, *optional*, defaults to `0`), max_objects (`int`, *optional*):
            Keep images whose number of kept objects is within these bounds.
        min_box_area (`float`, *optional*, defaults to `0.0`):
            Drop objects whose box area (w·h, px²) is below this.
        box_tolerance (`float`, *optional*, defaults to `1.0`):
            Pixels a box may leave the image before it counts as invalid (within it, it is clipped).
        verify_images (`bool`, *optional*, defaults to `False`):
            Read every image header to check it is readable and matches the annotated size (`decode_images`, on by
            default, does this and decodes the whole image).
    """

    year: str = "2017"
    annotation_files: dict[str, str] | None = None
    image_dirs: dict[str, str] | None = None
    crowd: str = "exclude"
    min_objects: int = 0
    max_objects: int | None = None
    min_box_area: float = 0.0
    box_tolerance: float = 1.0
    verify_images: bool = False

    def validate(self) -> None:
        super().validate()
        if self.crowd not in ("exclude", "include", "skip_image"):
            raise ValueError(f"crowd must be 'exclude', 'include' or 'skip_image', got {self.crowd!r}.")


def _resolve_files(
    data_dir: str | None, annotation_files: dict | None, image_dirs: dict | None, year: str
) -> dict[str, tuple[str, str | None]]:
    """Split → (annotation file, image dir), for every split whose annotation file is given or exists."""
    out = {}
    annotation_files = {SPLIT_ALIASES.get(k, k): v for k, v in (annotation_files or {}).items()}
    image_dirs = {SPLIT_ALIASES.get(k, k): v for k, v in (image_dirs or {}).items()}
    for split, stem in _SPLITS.items():
        ann = annotation_files.get(split)
        if ann is None and data_dir is not None and not annotation_files:
            for candidate in (
                os.path.join(data_dir, "annotations", f"instances_{stem}{year}.json"),
                os.path.join(data_dir, f"instances_{stem}{year}.json"),
            ):
                if os.path.isfile(candidate):
                    ann = candidate
                    break
        if ann is None:
            continue
        image_dir = image_dirs.get(split)
        if image_dir is None and data_dir is not None:
            image_dir = os.path.join(data_dir, f"{stem}{year}")
        out[split] = (os.path.abspath(ann), os.path.abspath(image_dir) if image_dir else None)
    return out


def _drop_segmentation(d: dict) -> Any:
    # Segmentations are most of a COCO file's bytes; dropping them while parsing keeps peak memory low.
    d.pop("segmentation", None)
    return d


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load a COCO instances file without segmentations and check its top-level schema."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_hook=_drop_segmentation)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO instances object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path}: not a COCO instances file (missing or non-list keys {missing})")
    return data


def _categories(data: dict[str, Any], path: str) -> dict[int, str]:
    table = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise DataError(f"{path}: categories[{i}] = {cat!r} lacks an int 'id' and a str 'name'")
        if cat["id"] in table:
            raise DataError(f"{path}: categories[{i}] repeats category id {cat['id']}")
        table[cat["id"]] = cat["name"]
    return dict(sorted(table.items()))


def coco_categories(source: str | os.PathLike | datasets.Dataset) -> dict[int, str]:
    """COCO category table (id → name, ascending ids) from an instances JSON or a dataset built by this module.

    Example:
    ```python
    >>> coco_categories("annotations/instances_val2017.json")[90]
    'toothbrush'
    ```
    """
    if isinstance(source, datasets.Dataset):
        from ._common import dataset_metadata

        meta = dataset_metadata(source)
        if "categories" not in meta:
            raise ValueError("This dataset carries no COCO category table (was it built by CocoDetection?).")
        return {int(c["id"]): c["name"] for c in meta["categories"]}
    return _categories(load_coco_json(source), str(source))


class CocoDetection(PerceptionBuilder):
    """COCO 2017 detection rows: all objects of an image, boxes ``[x1, y1, x2, y2]`` in original pixels.

    Example:
    ```python
    >>> builder = CocoDetection(data_dir="/data/coco", splits=("validation",), cache_dir="/tmp/cache")
    >>> builder.download_and_prepare()
    >>> ds = builder.as_dataset("validation")
    >>> builder.report.summary()
    ```
    """

    TASK = "detection"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = CocoDetectionConfig
    BUILDER_CONFIGS: ClassVar[list[CocoDetectionConfig]] = [
        CocoDetectionConfig(name="2017", version=VERSION, description="COCO 2017 instances")
    ]
    DEFAULT_CONFIG_NAME = "2017"

    @classmethod
    def _source_paths(cls, kwargs: dict[str, Any]) -> list[str]:
        files = _resolve_files(
            kwargs.get("data_dir"),
            kwargs.get("annotation_files"),
            kwargs.get("image_dirs"),
            kwargs.get("year", "2017"),
        )
        return [ann for ann, _ in files.values()]

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="COCO 2017 object detection in the trl-perception schema (boxes in original pixels).",
            features=_FEATURES,
            homepage="https://cocodataset.org",
            license="Annotations CC BY 4.0; images under Flickr terms.",
        )

    def _available_splits(self) -> list[datasets.SplitGenerator]:
        c = self.config
        files = _resolve_files(c.data_dir, c.annotation_files, c.image_dirs, c.year)
        if not files:
            where = c.annotation_files or os.path.join(str(c.data_dir), "annotations", f"instances_*{c.year}.json")
            raise FileNotFoundError(f"No COCO instances file found (looked for {where}).")
        generators = []
        for split, (ann, image_dir) in files.items():
            if not os.path.isfile(ann):
                raise FileNotFoundError(f"COCO annotation file {ann} (split {split!r}) does not exist.")
            if image_dir is None or not os.path.isdir(image_dir):
                raise FileNotFoundError(f"COCO image folder {image_dir} (split {split!r}) does not exist.")
            generators.append(
                datasets.SplitGenerator(name=split, gen_kwargs={"split": split, "path": ann, "image_dir": image_dir})
            )
        return generators

    def _generate_examples(self, split: str, path: str, image_dir: str):
        c = self.config
        rep = self.reporter(split)
        data = load_coco_json(path)
        categories = _categories(data, path)
        self.metadata.setdefault("categories", [{"id": i, "name": n} for i, n in categories.items()])
        self.metadata.setdefault("annotation_files", {})[split] = path
        self.metadata.setdefault("image_dirs", {})[split] = image_dir
        prompt = self.prompt(split, categories=", ".join(categories.values()))

        images: dict[int, dict] = {}
        for i, img in enumerate(data["images"]):
            if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not img.get("file_name"):
                rep.skip("malformed_record", f"{path}: images[{i}] = {str(img)[:200]} lacks 'id'/'file_name'")
                continue
            images[img["id"]] = img
        by_image: dict[int, list[dict]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or not all(k in ann for k in ("image_id", "category_id", "bbox")):
                rep.skip(
                    "malformed_record", f"{path}: annotations[{i}] = {str(ann)[:200]} lacks image_id/category_id/bbox"
                )
                continue
            if ann["image_id"] not in images:
                rep.skip(
                    "unknown_image",
                    f"{path}: annotation id {ann.get('id')} refers to unknown image id {ann['image_id']}",
                )
                continue
            by_image[ann["image_id"]].append(ann)
        del data  # the grouped annotations are all that is needed from here on

        if c.decode_images:  # in parallel, before the per-image checks below
            decode_images(os.path.join(image_dir, img["file_name"]) for img in images.values())
        for image_id, img in images.items():
            where = f"{path}: image id {image_id} ({img['file_name']})"
            file_path = os.path.join(image_dir, img["file_name"])
            width, height = img.get("width"), img.get("height")
            need_size = c.verify_images or c.decode_images or not (isinstance(width, int) and isinstance(height, int))
            checked = check_image(file_path, rep, where, need_size=need_size, decode=c.decode_images)
            if checked is None:
                continue
            if isinstance(checked, tuple):
                if isinstance(width, int) and isinstance(height, int) and checked != (width, height):
                    rep.skip(
                        "size_mismatch",
                        f"{where}: file is {checked[0]}x{checked[1]}, annotation says {width}x{height}",
                    )
                    continue
                width, height = checked
            boxes, labels, cat_ids, areas, ann_ids, crowd_boxes = [], [], [], [], [], []
            has_crowd = False
            for ann in by_image.get(image_id, ()):
                ann_where = f"{path}: annotation id {ann.get('id')} (image id {image_id})"
                if ann["category_id"] not in categories:
                    rep.skip("unknown_category", f"{ann_where}: unknown category_id {ann['category_id']}")
                    continue
                box, problem = xywh_box(ann["bbox"], width, height, c.box_tolerance)
                if box is None:
                    rep.skip("invalid_box", f"{ann_where}: {problem}")
                    continue
                if ann.get("iscrowd", 0) and c.crowd != "include":
                    has_crowd = True
                    crowd_boxes.append(box)
                    rep.note("crowd_box_excluded")
                    continue
                if (box[2] - box[0]) * (box[3] - box[1]) < c.min_box_area:
                    rep.note("small_box_dropped")
                    continue
                area = ann.get("area")
                if not isinstance(area, (int, float)):
                    area = (box[2] - box[0]) * (box[3] - box[1])
                    rep.note("area_from_bbox")
                boxes.append(box)
                labels.append(categories[ann["category_id"]])
                cat_ids.append(ann["category_id"])
                areas.append(float(area))
                ann_ids.append(int(ann.get("id", -1)))
            if has_crowd and c.crowd == "skip_image":
                rep.note("image_with_crowd_dropped")
                continue
            if len(boxes) < c.min_objects:
                rep.note("image_below_min_objects")
                continue
            if c.max_objects is not None and len(boxes) > c.max_objects:
                rep.note("image_above_max_objects")
                continue
            rep.emitted()
            yield (
                image_id,
                self.row(
                    id=f"coco-{c.year}/{split}/{image_id}",
                    prompt=prompt,
                    image=file_path,
                    width=width,
                    height=height,
                    boxes=boxes,
                    labels=labels,
                    category_ids=cat_ids,
                    image_id=image_id,
                    file_name=img["file_name"],
                    areas=areas,
                    annotation_ids=ann_ids,
                    crowd_boxes=crowd_boxes,
                ),
            )


def load_coco_detection(
    data_dir: str | os.PathLike | None = None,
    split: str = "validation",
    *,
    annotation_file: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    prompt_preset: str = "default",
    prompt_template: str | None = None,
    system_prompt: str | None = None,
    crowd: str = "exclude",
    min_objects: int = 0,
    max_objects: int | None = None,
    min_box_area: float = 0.0,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **config_kwargs: Any,
) -> datasets.Dataset:
    """Build (or reuse from cache) one split of COCO detection and return it.

    Args:
        data_dir (`str`, *optional*):
            COCO root with ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/``.
        split (`str`, *optional*, defaults to `"validation"`):
            ``"train"`` or ``"validation"`` (``"val"`` accepted).
        annotation_file, image_dir (`str`, *optional*):
            Explicit files for ``split`` instead of the ``data_dir`` layout.
        cache_dir (`str`, *optional*):
            Arrow cache root (defaults to the `datasets` cache).
        **config_kwargs:
            Other `CocoDetectionConfig` fields (e.g. ``box_tolerance``, ``verify_images``, ``prompt_variant``).

    The category table and the GT file path for pycocotools are in `dataset_metadata(ds)` / `coco_categories(ds)`.

    Example:
    ```python
    >>> ds = load_coco_detection("/data/coco", split="val", cache_dir="/tmp/hf")
    >>> ds[0]["boxes"], ds[0]["labels"], coco_categories(ds)[1]
    ```
    """
    split = SPLIT_ALIASES.get(split, split)
    if annotation_file is not None:
        config_kwargs["annotation_files"] = {split: str(annotation_file)}
        if image_dir is not None:
            config_kwargs["image_dirs"] = {split: str(image_dir)}
    elif image_dir is not None:
        config_kwargs["image_dirs"] = {split: str(image_dir)}
    return build_split(
        CocoDetection,
        split,
        cache_dir=cache_dir,
        data_dir=data_dir,
        family=family,
        thinking=thinking,
        prompt_preset=prompt_preset,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        crowd=crowd,
        min_objects=min_objects,
        max_objects=max_objects,
        min_box_area=min_box_area,
        strict=strict,
        **config_kwargs,
    )


__all__ = ["CocoDetection", "CocoDetectionConfig", "coco_categories", "load_coco_detection", "load_coco_json"]
