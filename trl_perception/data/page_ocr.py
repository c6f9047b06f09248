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
"""Page-OCR builder for Fox-benchmark-style page files (image + full-page text), English and Chinese configs.

Accepted annotation formats (detected per file):

- **Fox**: a JSON list of ``{"image": file name, "conversations": [{"from": "human", ...}, {"from": "gpt", "value":
  GT}]}`` (``en_page_ocr.json`` with ``en_pdf_png/``, ``cn_page_ocr.json`` with ``cn_pdf_png/``);
- **generic**: JSONL (or a JSON list) of ``{"image": path, "text": GT}``, for your own training pages.

Fox is a test benchmark, so its file becomes the ``test`` split; pass ``annotation_files={"train": ...}`` for more.
The prompt comes from the task template (``"OCR this image."``), not from the file's human turn, which is kept in
``source_prompt``. The GT text is kept verbatim (no whitespace normalization: the metrics define their own).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets

from ._common import (
    DataError,
    PerceptionBuilder,
    PerceptionBuilderConfig,
    batches,
    build_split,
    decode_images,
    probe_image,
)
from .schema import perception_features


LANGUAGES = {"en": "en", "zh": "cn"}  # config name → Fox file prefix

_FEATURES = perception_features(
    {
        "image_name": datasets.Value("string"),
        "language": datasets.Value("string"),
        "source_prompt": datasets.Value("string"),
    }
)


def _read_records(path: str) -> Iterator[tuple[int, Any]]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        yield i, json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of page records, got {type(data).__name__}")
    yield from enumerate(data)


def _image_path(record: Any, image_dir: str) -> str:
    """The image file of a record (``""`` when it names none); names are relative to ``image_dir``."""
    image = record.get("image") if isinstance(record, dict) else None
    if not isinstance(image, str):
        return ""
    return image if os.path.isabs(image) else os.path.join(image_dir, image)


def parse_page_record(record: Any) -> tuple[str, str, str | None]:
    """``(image, text, source_prompt)`` from a Fox or generic record; raises `ValueError` when neither fits."""
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        raise ValueError("record has no string 'image'")  # noqa: TRY004 - a data error, reported as a skip
    if "conversations" in record:
        turns = record["conversations"]
        if not isinstance(turns, list):
            raise ValueError("'conversations' is not a list")
        human = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
        gpt = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
        if not isinstance(gpt, str):
            raise ValueError("no 'gpt' turn with the GT text in 'conversations'")
        return record["image"], gpt, human
    if isinstance(record.get("text"), str):
        return record["image"], record["text"], None
    raise ValueError("record has neither 'conversations' (Fox) nor 'text' (generic)")


@dataclass
class PageOcrConfig(PerceptionBuilderConfig):
    """Config of `PageOcr`.

    Args:
        language (`str`, *optional*, defaults to `"en"`):
            ``"en"`` or ``"zh"`` (Fox's ``cn_*`` files).
        annotation_files (`dict[str, str]`, *optional*):
            Split → annotation file. Defaults to ``{"test": data_dir/<en|cn>_page_ocr.json}``.
        image_dir (`str`, *optional*):
            Folder the ``image`` names are relative to. Defaults to ``data_dir/<en|cn>_pdf_png``.
    """

    language: str = "en"
    annotation_files: dict[str, str] | None = None
    image_dir: str | None = None

    def validate(self) -> None:
        super().validate()
        if self.language not in LANGUAGES:
            raise ValueError(f"Unknown page-OCR language {self.language!r}; expected one of {list(LANGUAGES)}.")


def _files(data_dir: str | None, annotation_files: dict | None, image_dir: str | None, language: str):
    prefix = LANGUAGES.get(language, language)
    if annotation_files:
        files = {k: os.path.abspath(v) for k, v in annotation_files.items()}
    elif data_dir:
        files = {"test": os.path.abspath(os.path.join(data_dir, f"{prefix}_page_ocr.json"))}
    else:
        files = {}
    if image_dir is None and data_dir:
        image_dir = os.path.join(data_dir, f"{prefix}_pdf_png")
    return files, os.path.abspath(image_dir) if image_dir else None


class PageOcr(PerceptionBuilder):
    """OCR rows (full-page GT ``text``) from Fox page-OCR files or generic ``{image, text}`` JSONL.

    Example:
    ```python
    >>> builder = PageOcr(config_name="zh", data_dir="focus_benchmark_test", cache_dir="/tmp/hf")
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("test")[0]["text"][:10]
    ```
    """

    TASK = "ocr"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PageOcrConfig
    BUILDER_CONFIGS: ClassVar[list[PageOcrConfig]] = [
        PageOcrConfig(name="en", language="en", version=VERSION, description="Fox English page OCR"),
        PageOcrConfig(name="zh", language="zh", version=VERSION, description="Fox Chinese page OCR"),
    ]
    DEFAULT_CONFIG_NAME = "en"

    @classmethod
    def _source_paths(cls, kwargs: dict[str, Any]) -> list[str]:
        language = kwargs.get("language") or kwargs.get("config_name") or "en"
        files, _ = _files(kwargs.get("data_dir"), kwargs.get("annotation_files"), kwargs.get("image_dir"), language)
        return list(files.values())

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Full-page OCR (Fox benchmark layout) in the trl-perception schema.",
            features=_FEATURES,
            homepage="https://github.com/ucaslcl/Fox",
            license="Fox data: CC BY-NC 4.0 (research use).",
        )

    def _available_splits(self) -> list[datasets.SplitGenerator]:
        c = self.config
        files, image_dir = _files(c.data_dir, c.annotation_files, c.image_dir, c.language)
        if not files:
            raise ValueError(f"{self.name}: pass data_dir (Fox layout) or annotation_files.")
        for split, path in files.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Page-OCR annotation file {path} (split {split!r}) does not exist.")
        if image_dir is None or not os.path.isdir(image_dir):
            raise FileNotFoundError(f"Page-OCR image folder {image_dir} does not exist.")
        self.metadata.update({"annotation_files": files, "image_dir": image_dir, "language": c.language})
        return [
            datasets.SplitGenerator(name=s, gen_kwargs={"split": s, "path": p, "image_dir": image_dir})
            for s, p in files.items()
        ]

    def _generate_examples(self, split: str, path: str, image_dir: str):
        c = self.config
        rep = self.reporter(split)
        seen: dict[str, int] = {}
        prompt = self.prompt(split)
        for batch in batches(_read_records(path), 64):
            if c.decode_images:  # the batch's images in parallel, before the record-by-record checks
                decode_images(_image_path(record, image_dir) for _, record in batch)
            for index, record in batch:
                where = f"{path}: record {index}"
                try:
                    image, text, source_prompt = parse_page_record(record)
                except ValueError as e:
                    rep.skip("malformed_record", f"{where}: {e}")
                    continue
                if not text.strip():
                    rep.skip("empty_text", f"{where} ({image}): empty GT text")
                    continue
                file_path = _image_path(record, image_dir)
                size, reason, detail = probe_image(file_path, need_size=True, decode=c.decode_images)
                if reason is not None:
                    rep.skip(reason, f"{where}: {detail}")
                    continue
                # Image names identify Fox pages; a repeated name (generic JSONL) gets a stable "#n" suffix.
                seen[image] = seen.get(image, 0) + 1
                suffix = "" if seen[image] == 1 else f"#{seen[image]}"
                rep.emitted()
                yield (
                    f"{index}",
                    self.row(
                        id=f"page-ocr-{c.language}/{split}/{image}{suffix}",
                        prompt=prompt,
                        image=file_path,
                        width=size[0],
                        height=size[1],
                        text=text,
                        image_name=image,
                        language=c.language,
                        source_prompt=source_prompt,
                    ),
                )


def load_page_ocr(
    data_dir: str | os.PathLike | None = None,
    language: str = "en",
    split: str = "test",
    *,
    annotation_file: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    prompt_preset: str = "default",
    prompt_template: str | None = None,
    system_prompt: str | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **config_kwargs: Any,
) -> datasets.Dataset:
    """Build (or reuse from cache) page OCR and return one split.

    Args:
        data_dir (`str`):
            The unzipped ``focus_benchmark_test/`` folder (``{en,cn}_page_ocr.json`` + ``{en,cn}_pdf_png/``).
        language (`str`, *optional*, defaults to `"en"`):
            ``"en"`` or ``"zh"`` (``"cn"`` accepted).
        split (`str`, *optional*, defaults to `"test"`):
            Fox files form the ``test`` split; with ``annotation_file`` any name (e.g. ``"train"``).
        annotation_file, image_dir (`str`, *optional*):
            Explicit Fox JSON or generic ``{image, text}`` JSONL, and the folder its image names are relative to.

    Example:
    ```python
    >>> ds = load_page_ocr("focus_benchmark_test", language="zh", cache_dir="/tmp/hf")
    >>> ds[0]["text"][:20], ds[0]["prompt"][-1]["content"]
    ```
    """
    language = "zh" if language == "cn" else language
    if annotation_file is not None:
        config_kwargs["annotation_files"] = {split: str(annotation_file)}
    return build_split(
        PageOcr,
        split,
        config_name=language if language in LANGUAGES else None,
        cache_dir=cache_dir,
        data_dir=data_dir,
        image_dir=image_dir,
        family=family,
        thinking=thinking,
        prompt_preset=prompt_preset,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        strict=strict,
        **config_kwargs,
    )


__all__ = ["PageOcr", "PageOcrConfig", "load_page_ocr", "parse_page_record"]
