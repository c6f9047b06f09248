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
"""RefCOCO / RefCOCO+ / RefCOCOg builder from the refer-API files (``refs(<split_by>).p`` + ``instances.json``).

One row per referring sentence; the GT box is the referred annotation's ``bbox`` as ``[x1, y1, x2, y2]`` in original
train2014 pixels. The ref's own ``file_name`` is ignored (it carries an annotation-id suffix); the image file comes
from ``instances.json``. Splits are those present in the refs file, in the standard order (``train``, ``val``,
``testA``, ``testB``; RefCOCOg-umd: ``train``, ``val``, ``test``).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets

from ._common import (
    DataError,
    PerceptionBuilder,
    PerceptionBuilderConfig,
    build_split,
    decode_images,
    logger,
    probe_image,
    xywh_box,
)
from .schema import perception_features


DATASETS = ("refcoco", "refcoco+", "refcocog")
SPLIT_ORDER = ("train", "val", "testA", "testB", "testC", "test")
EXPECTED_SPLITS = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
    ("refcoco", "google"): ("train", "val", "test"),
}

_FEATURES = perception_features(
    {
        "image_id": datasets.Value("int64"),
        "file_name": datasets.Value("string"),
        "ref_id": datasets.Value("int64"),
        "ann_id": datasets.Value("int64"),
        "sent_id": datasets.Value("int64"),
        "raw_expression": datasets.Value("string"),
        "category_name": datasets.Value("string"),
    }
)


class _SafeUnpickler(pickle.Unpickler):
    """The refs files hold only lists/dicts/strings/numbers; refuse any class so a pickle cannot run code."""

    # Python 3 writes `bytes` in protocol-2 pickles through `_codecs.encode` (pure, harmless); nothing else is allowed.
    _ALLOWED: ClassVar[set[tuple[str, str]]] = {("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a refs file")


def load_refs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Load a refer-API ``refs(<split_by>).p``.

    The official files are Python-2 pickles whose strings are byte strings; they are read as bytes and decoded as
    UTF-8 (Latin-1 as a fallback), keys included, so Python-2 and Python-3 pickles give the same result.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            refs = _decode(_SafeUnpickler(f, encoding="bytes").load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: not a refer-API refs pickle ({type(e).__name__}: {e})") from e
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of ref dicts, got {type(refs).__name__}")
    return refs


def _decode(obj: Any) -> Any:
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode("latin1")
    if isinstance(obj, list):
        return [_decode(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_decode(x) for x in obj)
    if isinstance(obj, dict):
        return {_decode(k): _decode(v) for k, v in obj.items()}
    return obj


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class RefCocoConfig(PerceptionBuilderConfig):
    """Config of `RefCoco`.

    Args:
        dataset (`str`, *optional*, defaults to `"refcoco"`):
            ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split_by (`str`, *optional*, defaults to `"unc"`):
            ``"unc"`` (RefCOCO/RefCOCO+), ``"umd"`` (RefCOCOg, recommended) or ``"google"``.
        refs_file, instances_file (`str`, *optional*):
            Explicit files; default ``data_dir/refs(<split_by>).p`` and ``data_dir/instances.json``.
        image_dir (`str`):
            COCO ``train2014`` folder.
        box_tolerance (`float`, *optional*, defaults to `1.0`):
            Pixels a box may leave the image before it counts as invalid (within it, it is clipped).
    """

    dataset: str = "refcoco"
    split_by: str = "unc"
    refs_file: str | None = None
    instances_file: str | None = None
    image_dir: str | None = None
    box_tolerance: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown RefCOCO dataset {self.dataset!r}; expected one of {list(DATASETS)}.")


def _files(data_dir: str | None, refs_file: str | None, instances_file: str | None, split_by: str):
    refs = refs_file or (os.path.join(data_dir, f"refs({split_by}).p") if data_dir else None)
    inst = instances_file or (os.path.join(data_dir, "instances.json") if data_dir else None)
    return refs, inst


class RefCoco(PerceptionBuilder):
    """Grounding rows for RefCOCO, RefCOCO+ and RefCOCOg (one per referring sentence).

    Example:
    ```python
    >>> builder = RefCoco(config_name="refcoco-unc", data_dir="refer/data/refcoco", image_dir="coco/train2014")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("testA")[0]["labels"]
    ['man in red']
    ```
    """

    TASK = "grounding"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = RefCocoConfig
    BUILDER_CONFIGS: ClassVar[list[RefCocoConfig]] = [
        RefCocoConfig(name="refcoco-unc", dataset="refcoco", split_by="unc", version=VERSION),
        RefCocoConfig(name="refcoco+-unc", dataset="refcoco+", split_by="unc", version=VERSION),
        RefCocoConfig(name="refcocog-umd", dataset="refcocog", split_by="umd", version=VERSION),
        RefCocoConfig(name="refcocog-google", dataset="refcocog", split_by="google", version=VERSION),
        RefCocoConfig(name="refcoco-google", dataset="refcoco", split_by="google", version=VERSION),
    ]
    DEFAULT_CONFIG_NAME = "refcoco-unc"

    @classmethod
    def _source_paths(cls, kwargs: dict[str, Any]) -> list[str]:
        config_name = kwargs.get("config_name") or cls.DEFAULT_CONFIG_NAME
        split_by = kwargs.get("split_by") or next(
            (c.split_by for c in cls.BUILDER_CONFIGS if c.name == config_name), "unc"
        )
        return [
            p
            for p in _files(kwargs.get("data_dir"), kwargs.get("refs_file"), kwargs.get("instances_file"), split_by)
            if p
        ]

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="RefCOCO/RefCOCO+/RefCOCOg referring-expression grounding in the trl-perception schema.",
            features=_FEATURES,
            homepage="https://github.com/lichengunc/refer",
        )

    def _paths(self) -> tuple[str, str, str]:
        c = self.config
        refs, inst = _files(c.data_dir, c.refs_file, c.instances_file, c.split_by)
        for what, path in (("refs file", refs), ("instances file", inst), ("image folder", c.image_dir)):
            if path is None:
                raise ValueError(f"{self.name}: no {what} given (pass data_dir/refs_file/instances_file/image_dir).")
        if not os.path.isfile(refs):
            raise FileNotFoundError(f"RefCOCO refs file {refs} does not exist.")
        if not os.path.isfile(inst):
            raise FileNotFoundError(f"RefCOCO instances file {inst} does not exist.")
        if not os.path.isdir(c.image_dir):
            raise FileNotFoundError(f"RefCOCO image folder (COCO train2014) {c.image_dir} does not exist.")
        return os.path.abspath(refs), os.path.abspath(inst), os.path.abspath(c.image_dir)

    def _available_splits(self) -> list[datasets.SplitGenerator]:
        refs_path, inst_path, image_dir = self._paths()
        refs = load_refs(refs_path)
        found = {r.get("split") for r in refs if isinstance(r, dict)}
        found = {_text(s) for s in found if s is not None}
        names = [s for s in SPLIT_ORDER if s in found] + sorted(found - set(SPLIT_ORDER))
        expected = EXPECTED_SPLITS.get((self.config.dataset, self.config.split_by))
        missing = sorted(set(expected or ()) - found)
        if missing:
            logger.warning("%s: split(s) %s missing from %s (found %s).", self.name, missing, refs_path, names)
        self.metadata.update(
            {"refs_file": refs_path, "instances_file": inst_path, "image_dir": image_dir, "splits": names}
        )
        return [
            datasets.SplitGenerator(
                name=s, gen_kwargs={"split": s, "refs_path": refs_path, "inst_path": inst_path, "image_dir": image_dir}
            )
            for s in names
        ]

    def _split_generators(self, dl_manager):
        generators = super()._split_generators(dl_manager)
        for i, generator in enumerate(generators):  # a ref that is not a dict has no split: count it once
            generator.gen_kwargs["count_unsplit"] = i == 0
        return generators

    def _load_instances(self, path: str):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f, object_hook=lambda d: (d.pop("segmentation", None), d)[1])
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
            raise DataError(f"{path}: not a refer instances.json (needs 'images' and 'annotations' lists)")
        images = {im["id"]: im for im in data["images"] if isinstance(im, dict) and "id" in im}
        anns = {a["id"]: a for a in data["annotations"] if isinstance(a, dict) and "id" in a}
        cats = {c["id"]: c.get("name", "") for c in data.get("categories", []) if isinstance(c, dict) and "id" in c}
        return images, anns, cats

    def _generate_examples(
        self, split: str, refs_path: str, inst_path: str, image_dir: str, count_unsplit: bool = True
    ):
        c = self.config
        rep = self.reporter(split)
        refs = load_refs(refs_path)
        images, anns, cats = self._load_instances(inst_path)
        probed: dict[int, tuple] = {}
        prefix = f"{c.dataset}-{c.split_by}/{split}"
        if c.decode_images:  # this split's images in parallel, before the ref-by-ref checks below
            ids = {r.get("image_id") for r in refs if isinstance(r, dict) and _text(r.get("split")) == split}
            ids.discard(None)
            decode_images(
                os.path.join(image_dir, images[i]["file_name"])
                for i in ids
                if isinstance(images.get(i), dict) and isinstance(images[i].get("file_name"), str)
            )
        for index, ref in enumerate(refs):
            if not isinstance(ref, dict) or _text(ref.get("split")) != split:
                if not isinstance(ref, dict) and count_unsplit:
                    rep.skip("malformed_record", f"{refs_path}: refs[{index}] is a {type(ref).__name__}, not a dict")
                continue
            missing = [k for k in ("ref_id", "ann_id", "image_id", "sentences") if k not in ref]
            if missing:
                rep.skip("malformed_record", f"{refs_path}: refs[{index}] lacks {missing}")
                continue
            where = f"{refs_path}: ref_id {ref['ref_id']}"
            ann = anns.get(ref["ann_id"])
            if ann is None:
                rep.skip("unknown_annotation", f"{where}: ann_id {ref['ann_id']} not in {inst_path}")
                continue
            image = images.get(ref["image_id"])
            if image is None or "file_name" not in image:
                rep.skip("unknown_image", f"{where}: image_id {ref['image_id']} not in {inst_path}")
                continue
            category_id = ref.get("category_id", ann.get("category_id"))
            if cats and category_id not in cats:
                rep.skip("unknown_category", f"{where}: category_id {category_id} not in {inst_path}")
                continue
            file_path = os.path.join(image_dir, image["file_name"])
            if ref["image_id"] not in probed:  # each image is checked once, however many refs point at it
                width, height = image.get("width"), image.get("height")
                annotated = isinstance(width, int) and isinstance(height, int)
                size, reason, detail = probe_image(file_path, c.decode_images or not annotated, c.decode_images)
                if reason is None and annotated and size is not None and size != (width, height):
                    reason, detail = "size_mismatch", f"file is {size[0]}x{size[1]}, annotation says {width}x{height}"
                probed[ref["image_id"]] = ((width, height) if annotated else size, reason, detail)
            size, reason, detail = probed[ref["image_id"]]
            if reason is not None:
                rep.skip(reason, f"{where} (image_id {ref['image_id']}): {detail}")
                continue
            width, height = size
            box, problem = xywh_box(ann.get("bbox"), width, height, c.box_tolerance)
            if box is None:
                rep.skip("invalid_box", f"{where} (ann_id {ref['ann_id']}): {problem}")
                continue
            for sentence in ref["sentences"]:
                if not isinstance(sentence, dict) or "sent_id" not in sentence:
                    rep.skip("malformed_record", f"{where}: sentence {str(sentence)[:100]} lacks sent_id")
                    continue
                sent = _text(sentence.get("sent", sentence.get("raw", ""))).strip()
                if not sent:
                    rep.skip("empty_expression", f"{where}: sent_id {sentence['sent_id']} is empty")
                    continue
                rep.emitted()
                yield (
                    sentence["sent_id"],
                    self.row(
                        id=f"{prefix}/sent-{sentence['sent_id']}",
                        prompt=self.prompt(split, question=sent, expression=sent, label=sent),
                        image=file_path,
                        width=width,
                        height=height,
                        boxes=[box],
                        labels=[sent],
                        category_ids=[category_id] if isinstance(category_id, int) else [],
                        image_id=ref["image_id"],
                        file_name=image["file_name"],
                        ref_id=ref["ref_id"],
                        ann_id=ref["ann_id"],
                        sent_id=sentence["sent_id"],
                        raw_expression=_text(sentence.get("raw", sent)),
                        category_name=cats.get(category_id, ""),
                    ),
                )


def load_refcoco(
    data_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    dataset: str = "refcoco",
    split_by: str | None = None,
    split: str = "val",
    *,
    refs_file: str | os.PathLike | None = None,
    instances_file: str | os.PathLike | None = None,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    prompt_preset: str = "default",
    prompt_template: str | None = None,
    system_prompt: str | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **config_kwargs: Any,
) -> datasets.Dataset:
    """Build (or reuse from cache) one split of RefCOCO / RefCOCO+ / RefCOCOg and return it.

    Args:
        data_dir (`str`):
            The unzipped ``refer/data/<dataset>/`` folder (``refs(<split_by>).p`` + ``instances.json``).
        image_dir (`str`):
            The COCO ``train2014`` image folder.
        dataset (`str`, *optional*, defaults to `"refcoco"`):
            ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split_by (`str`, *optional*):
            Defaults to ``"umd"`` for RefCOCOg and ``"unc"`` otherwise.
        split (`str`, *optional*, defaults to `"val"`):
            ``"train"``, ``"val"``, ``"testA"``, ``"testB"`` (RefCOCOg: ``"train"``, ``"val"``, ``"test"``).

    Example:
    ```python
    >>> ds = load_refcoco("refer/data/refcoco", "coco/train2014", dataset="refcoco", split="testA")
    >>> ds[0]["boxes"], ds[0]["labels"]
    ([[103.9, 0.0, 384.5, 312.1]], ['man in red'])
    ```
    """
    if split_by is None:
        split_by = "umd" if dataset == "refcocog" else "unc"
    name = f"{dataset}-{split_by}"
    predefined = name in RefCoco.builder_configs
    if not predefined:
        config_kwargs["name"] = name
    return build_split(
        RefCoco,
        split,
        config_name=name if predefined else None,
        cache_dir=cache_dir,
        data_dir=data_dir,
        image_dir=image_dir,
        refs_file=refs_file,
        instances_file=instances_file,
        dataset=dataset,
        split_by=split_by,
        family=family,
        thinking=thinking,
        prompt_preset=prompt_preset,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        strict=strict,
        **config_kwargs,
    )


__all__ = ["RefCoco", "RefCocoConfig", "load_refcoco", "load_refs"]
