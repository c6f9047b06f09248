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
"""Machinery shared by the perception dataset builders: config, build report, validation helpers."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, UnidentifiedImageError

from .. import prompts as _prompts
from ..families import get_family
from .schema import empty_row


logger = logging.getLogger("trl_perception.data")

REPORT_FILENAME = "perception_build_report.json"
_METADATA_MARKER = "\n\ntrl_perception_metadata: "
# Keep this many example messages per skip reason in the report (counts are always complete).
MAX_REPORT_EXAMPLES = 10


class DataError(ValueError):
    """Bad source data. The message names the file and the record."""


@dataclass
class PerceptionBuilderConfig(datasets.BuilderConfig):
    """Options shared by every perception builder.

    Args:
        family (`str`, *optional*, defaults to `"qwen2_5_vl"`):
            Registered model family the prompt is written for (`trl_perception.families.list_families`). GT stays in
            original pixels whatever the family.
        thinking (`bool`, *optional*, defaults to `False`):
            Use the thinking prompt variant.
        prompt_preset (`str`, *optional*, defaults to `"default"`):
            ``"default"`` or ``"released"`` (see `trl_perception.prompts`).
        prompt_variant (`str`, *optional*, defaults to `"auto"`):
            ``"train"``, ``"eval"``, or ``"auto"`` (train prompt for the ``train`` split, eval prompt otherwise).
        prompt_template (`str`, *optional*):
            User-message override with ``{slot}`` placeholders (see `trl_perception.prompts`).
        system_prompt (`str`, *optional*):
            System-prompt override; ``""`` drops the system message.
        strict (`bool`, *optional*, defaults to `False`):
            Raise a `DataError` on the first bad record instead of counting a reported skip.
        splits (`tuple[str, ...]`, *optional*):
            Build only these splits (e.g. only ``("validation",)`` of COCO). `None` builds every available split.
        decode_images (`bool`, *optional*, defaults to `True`):
            Fully decode every image at build time and skip those that do not decode as ``unreadable_image``
            (a truncated download passes a header read). Decoding runs in parallel threads where the builder knows
            its images up front, once per image file however many rows use it; the built dataset is cached. `False`
            reads only the headers (faster builds of trusted copies).
        source_fingerprint (`str`, *optional*):
            Set by the builder from the source files' sizes and mtimes, so that edited sources invalidate the cache.
    """

    family: str = "qwen2_5_vl"
    thinking: bool = False
    prompt_preset: str = "default"
    prompt_variant: str = "auto"
    prompt_template: str | None = None
    system_prompt: str | None = None
    strict: bool = False
    splits: tuple[str, ...] | None = None
    decode_images: bool = True
    source_fingerprint: str | None = None

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check option values (also re-run after `datasets` applies keyword overrides to a predefined config)."""
        get_family(self.family)  # raises, listing the registered families
        if self.prompt_preset not in _prompts.PRESETS:
            raise ValueError(
                f"Unknown prompt preset {self.prompt_preset!r}; expected one of {list(_prompts.PRESETS)}."
            )
        if self.prompt_variant not in ("auto", *_prompts.VARIANTS):
            raise ValueError(f"Unknown prompt variant {self.prompt_variant!r}; expected 'auto', 'train' or 'eval'.")
        if isinstance(self.splits, str):
            self.splits = (self.splits,)
        elif self.splits is not None:
            self.splits = tuple(self.splits)


@dataclass
class BuildReport:
    """Counted skips and notes of one build, per split.

    ``skips[split][reason]`` is the number of skipped records (or objects, for per-object reasons); ``examples`` keeps
    up to `MAX_REPORT_EXAMPLES` messages per reason, each naming the file and the record.
    """

    builder: str = ""
    config: str = ""
    num_examples: dict[str, int] = field(default_factory=dict)
    skips: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def total_skips(self, split: str | None = None) -> int:
        """Number of skipped records, in one split or all of them."""
        splits = [split] if split is not None else list(self.skips)
        return sum(sum(self.skips.get(s, {}).values()) for s in splits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "config": self.config,
            "num_examples": self.num_examples,
            "skips": self.skips,
            "notes": self.notes,
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        return cls(**{k: data.get(k, {} if k not in ("builder", "config") else "") for k in cls().to_dict()})

    def summary(self) -> str:
        lines = [f"{self.builder}/{self.config}:"]
        for split, n in self.num_examples.items():
            skips = ", ".join(f"{r}={c}" for r, c in sorted(self.skips.get(split, {}).items())) or "none"
            notes = ", ".join(f"{r}={c}" for r, c in sorted(self.notes.get(split, {}).items()))
            lines.append(f"  {split}: {n} examples; skipped: {skips}" + (f"; notes: {notes}" if notes else ""))
        return "\n".join(lines)


class SplitReporter:
    """Per-split counter used inside ``_generate_examples``; raises in strict mode."""

    def __init__(self, report: BuildReport, split: str, strict: bool):
        self.report, self.split, self.strict = report, split, strict
        self.skips: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.num_examples = 0
        report.skips[split] = {}
        report.notes[split] = {}
        report.examples[split] = {}
        report.num_examples[split] = 0

    def skip(self, reason: str, message: str) -> None:
        """Count a skipped record (or object). In strict mode raise `DataError(message)` instead."""
        if self.strict:
            raise DataError(f"[{reason}] {message}")
        self.skips[reason] += 1
        self._example(reason, message)
        self.report.skips[self.split] = dict(self.skips)

    def note(self, reason: str, count: int = 1, message: str | None = None) -> None:
        """Count a documented policy action that is not an error (e.g. crowd boxes excluded)."""
        self.notes[reason] += count
        if message:
            self._example(reason, message)
        self.report.notes[self.split] = dict(self.notes)

    def emitted(self) -> None:
        self.num_examples += 1
        self.report.num_examples[self.split] = self.num_examples

    def _example(self, reason: str, message: str) -> None:
        examples = self.report.examples[self.split].setdefault(reason, [])
        if len(examples) < MAX_REPORT_EXAMPLES:
            examples.append(message)


class PerceptionBuilder(datasets.GeneratorBasedBuilder):
    """Base class: fingerprints sources for caching, records a `BuildReport`, resolves prompts."""

    BUILDER_CONFIG_CLASS = PerceptionBuilderConfig
    TASK: str = ""

    def __init__(self, *args, **kwargs):
        # Cache key: the builder code and the source files' (size, mtime), not only their paths.
        kwargs.setdefault("hash", _code_hash())
        kwargs["source_fingerprint"] = _fingerprint(self._source_paths(kwargs))
        super().__init__(*args, **kwargs)
        self.config.validate()
        self.report = BuildReport(builder=self.name, config=self.config.name)
        self.metadata: dict[str, Any] = {}

    # -- hooks -------------------------------------------------------------------------------------------------
    @classmethod
    def _source_paths(cls, kwargs: dict[str, Any]) -> list[str]:
        """Annotation files whose size/mtime go into the cache key (overridden per builder)."""
        return []

    # -- datasets overrides ------------------------------------------------------------------------------------
    def download_and_prepare(self, *args, **kwargs) -> None:
        self.report = BuildReport(builder=self.name, config=self.config.name)
        _DECODED.clear()
        try:
            super().download_and_prepare(*args, **kwargs)
        except datasets.exceptions.DatasetGenerationError as e:
            # `datasets` wraps generator errors; surface ours (they name the file and record) unchanged.
            if isinstance(e.__cause__, DataError):
                raise e.__cause__ from None
            raise
        finally:
            _DECODED.clear()
        path = os.path.join(self._output_dir, REPORT_FILENAME)
        if not self.report.num_examples and os.path.isfile(path):  # reused cache: restore the original report
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.report = BuildReport.from_dict(data["report"])
            self.metadata = data.get("metadata", {})

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        # Runs inside the ".incomplete" dir, which datasets renames to the cache dir on success.
        self.metadata["report"] = self.report.to_dict()
        self.info.description = (self.info.description or "") + _METADATA_MARKER + json.dumps(self.metadata)
        with open(os.path.join(self._output_dir, REPORT_FILENAME), "w", encoding="utf-8") as f:
            json.dump({"report": self.report.to_dict(), "metadata": self.metadata}, f, indent=1)
        level = logging.WARNING if self.report.total_skips() else logging.INFO
        logger.log(level, "Built %s\n%s", self.name, self.report.summary())

    def _split_generators(self, dl_manager):
        generators = self._available_splits()
        wanted = self.config.splits
        if wanted is not None:
            available = [g.name for g in generators]
            unknown = [s for s in wanted if s not in available]
            if unknown:
                raise ValueError(
                    f"{self.name}: split(s) {unknown} not available from the given files; available: {available}."
                )
            generators = [g for g in generators if g.name in wanted]
        return generators

    def _available_splits(self) -> list[datasets.SplitGenerator]:
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------------------------
    def reporter(self, split: str) -> SplitReporter:
        return SplitReporter(self.report, split, self.config.strict)

    def prompt(self, split: str, **slots: object) -> list[dict[str, str]]:
        """The conversational prompt for one row of ``split``."""
        variant = self.config.prompt_variant
        if variant == "auto":
            variant = "train" if split == "train" else "eval"
        return _prompts.build_prompt(
            self.TASK,
            family=self.config.family,
            thinking=self.config.thinking,
            variant=variant,
            preset=self.config.prompt_preset,
            template=self.config.prompt_template,
            system_prompt=self.config.system_prompt,
            **slots,
        )

    def row(self, **values: Any) -> dict[str, Any]:
        return empty_row(task=self.TASK, **values)


# -- validation helpers ----------------------------------------------------------------------------------------


def build_split(builder_class: type[datasets.GeneratorBasedBuilder], split: str, **options: Any) -> datasets.Dataset:
    """Build (or load from the Arrow cache) one split with `builder_class`: the body of every one-call loader.

    Path-like options (`cache_dir`, `data_dir`, `image_dir`, ...) become strings; `None` stays `None`. ``rebuild=True``
    builds again even when a cache for the same key exists (e.g. after image files were replaced in place, which the
    COCO, RefCOCO and page-OCR keys do not see).
    """
    options = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    rebuild = options.pop("rebuild", False)
    builder = builder_class(splits=(split,), **options)
    if rebuild:  # the cached split sizes are what a rebuild may change: do not check against them
        builder.download_and_prepare(
            download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD, verification_mode=datasets.VerificationMode.NO_CHECKS
        )
    else:
        builder.download_and_prepare()
    if builder.report.num_examples.get(split) == 0:  # `datasets` cannot load an empty split: say why it is empty
        raise DataError(f"No {split!r} rows left after the skips: {builder.report.summary()}")
    return builder.as_dataset(split=split)


def read_image_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header only; raises `OSError`/`UnidentifiedImageError` if unreadable."""
    with Image.open(path) as im:
        return im.size


# Full-decode results by (path, size, mtime): an image is decoded once per build, however many rows use it (cleared
# when a build starts and ends).
_DECODED: dict[tuple[str, int, int], tuple[tuple[int, int] | None, str | None, str]] = {}


def _file_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _decode(path: str) -> tuple[tuple[int, int] | None, str | None, str]:
    try:
        with Image.open(path) as im:
            im.load()  # the whole file: a truncated JPEG/PNG raises here, not at `open`
            return im.size, None, ""
    except Exception as e:  # noqa: BLE001 - a file that does not decode, whatever the plugin raises, is a counted skip
        return None, "unreadable_image", f"image file {path} cannot be read ({type(e).__name__}: {e})"


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to ``size`` items (streams: never holds more than one batch)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_images(paths: Iterable[str], workers: int | None = None) -> None:
    """Fully decode image files in parallel threads (Pillow releases the GIL while decoding), for the
    ``probe_image(..., decode=True)`` calls that follow. Missing files are left to `probe_image`."""
    todo: dict[tuple[str, int, int], str] = {}
    for path in paths:
        try:
            key = _file_key(path)
        except OSError:
            continue
        if key not in _DECODED:
            todo[key] = path
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=workers or min(32, os.cpu_count() or 1)) as pool:
        for key, result in zip(todo, pool.map(_decode, todo.values())):
            _DECODED[key] = result


def probe_image(path: str, need_size: bool, decode: bool = False) -> tuple[tuple[int, int] | None, str | None, str]:
    """Check an image file without reporting: ``(size or None, skip reason or None, detail)``.

    With ``decode``, the whole image is decoded (once per file; see `decode_images`), so a truncated file is an
    ``unreadable_image``. Otherwise only the header is read, and only when ``need_size``; else existence is checked.
    """
    if not os.path.isfile(path):
        return None, "missing_image", f"image file {path} does not exist"
    if decode:
        key = _file_key(path)
        if key not in _DECODED:
            _DECODED[key] = _decode(path)
        size, reason, detail = _DECODED[key]
        return (size if need_size else None), reason, detail
    if not need_size:
        return None, None, ""
    try:
        return read_image_size(path), None, ""
    except (OSError, UnidentifiedImageError, ValueError) as e:
        return None, "unreadable_image", f"image file {path} cannot be read ({type(e).__name__}: {e})"


def check_image(
    path: str, reporter: SplitReporter, where: str, need_size: bool, decode: bool = False
) -> tuple[int, int] | None | bool:
    """Validate an image file. Returns its size (when ``need_size``), `True` (exists), or `None` after a skip."""
    size, reason, detail = probe_image(path, need_size, decode)
    if reason is not None:
        reporter.skip(reason, f"{where}: {detail}")
        return None
    return size if need_size else True


def xywh_box(bbox: Any, width: int, height: int, tolerance: float) -> tuple[list[float] | None, str | None]:
    """Validate a COCO ``[x, y, w, h]`` box and return it as ``[x1, y1, x2, y2]`` (original pixels).

    Boxes that leave the image by at most ``tolerance`` pixels (float rounding in COCO) are clipped; boxes further out
    or with non-positive width/height are rejected with a reason.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None, f"malformed bbox {bbox!r} (expected [x, y, w, h])"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, f"malformed bbox {bbox!r} (non-numeric)"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, f"non-finite bbox {bbox!r}"
    if w <= 0 or h <= 0:
        return None, f"zero-area bbox {bbox!r}"
    x1, y1, x2, y2 = x, y, x + w, y + h
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        return None, f"bbox {bbox!r} outside the {width}x{height} image"
    x1, y1 = max(x1, 0.0), max(y1, 0.0)
    x2, y2 = min(x2, float(width)), min(y2, float(height))
    if x2 <= x1 or y2 <= y1:
        return None, f"zero-area bbox {bbox!r} after clipping to the image"
    return [x1, y1, x2, y2], None


def dataset_metadata(dataset: datasets.Dataset | datasets.DatasetInfo) -> dict[str, Any]:
    """Machine-readable metadata a builder stored in the dataset info (e.g. COCO categories, annotation files).

    Example:
    ```python
    >>> ds = load_coco_detection(data_dir="coco", split="validation")
    >>> dataset_metadata(ds)["annotation_files"]["validation"]
    '/data/coco/annotations/instances_val2017.json'
    ```
    """
    info = dataset.info if isinstance(dataset, datasets.Dataset) else dataset
    description = info.description or ""
    if _METADATA_MARKER not in description:
        return {}
    return json.loads(description.split(_METADATA_MARKER, 1)[1])


def resolve_split(name: str, aliases: dict[str, str]) -> str:
    return aliases.get(name, name)


def _fingerprint(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths if p):
        try:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.path.abspath(p)}|missing\n".encode())
            continue
        if os.path.isdir(p):  # a folder of images, walked: every file's (size, mtime), so one replaced in place counts
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    file_path = os.path.join(root, name)
                    try:
                        est = os.stat(file_path)
                    except OSError:
                        continue
                    h.update(f"{os.path.relpath(file_path, p)}|{est.st_size}|{est.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for p in sorted([*here.glob("*.py"), here.parent / "prompts.py"]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
