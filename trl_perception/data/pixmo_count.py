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
"""PixMo-Count builder from the published table (``image_url``, ``image_sha256``, ``count``, ``label``, ``points``) and
a local folder of images you downloaded yourself (the dataset ships URLs only; this builder never downloads).

Each row's image is found, in order (``match_by="auto"``):

1. by file name: an explicit ``image_map`` entry (URL or sha256 → file), ``<sha256>.<ext>``, or the URL's file name;
   with ``verify_sha256`` (default) the file's sha256 must equal ``image_sha256``;
2. by content: the sha256 of every file in ``image_dir`` (hashed once, streaming, only if step 1 fails).

A row whose image is not found is skipped as ``missing_image``; one whose only candidate has another hash as
``sha256_mismatch``. Both are counted in the build report, never dropped silently. Points ``{x: [...], y: [...]}``
become ``points = [[x, y], ...]`` in original pixels (empty on the validation/test splits, which publish none).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import urllib.parse
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


SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation", "dev": "validation"}
REQUIRED_COLUMNS = ("image_url", "image_sha256", "count", "label")
_TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")

_FEATURES = perception_features(
    {
        "label": datasets.Value("string"),
        "image_url": datasets.Value("string"),
        "image_sha256": datasets.Value("string"),
    }
)


def sha256_of(path: str, chunk_size: int = 1 << 20) -> str:
    """Streaming sha256 of a file (never holds the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_tables(data_dir: str | None, table_files: dict[str, str] | None) -> dict[str, str]:
    if table_files:
        return {SPLIT_ALIASES.get(k, k): os.path.abspath(v) for k, v in table_files.items()}
    if not data_dir:
        return {}
    found = {}
    for folder in (os.path.join(data_dir, "data"), data_dir):
        if not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        for split in SPLITS:
            if split in found:
                continue
            for name in names:
                stem = name.split("-", 1)[0].split(".", 1)[0]
                if stem == split and name.endswith(_TABLE_SUFFIXES):
                    found[split] = os.path.abspath(os.path.join(folder, name))
                    break
    return found


def _read_table(path: str) -> Iterator[dict[str, Any]]:
    """Stream rows of a parquet / JSONL / JSON / CSV table, checking the required columns first."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a non-parquet file
            raise DataError(f"{path}: not a readable parquet table ({type(e).__name__}: {e})") from e
        _check_columns(path, pf.schema_arrow.names)
        for batch in pf.iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            _check_columns(path, reader.fieldnames or [])
            yield from reader
    elif path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {line_no} is not valid JSON ({e})") from e
                if line_no == 1 or not isinstance(row, dict):
                    _check_columns(path, list(row) if isinstance(row, dict) else [], f" (line {line_no})")
                yield row
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        if not isinstance(rows, list) or (rows and not isinstance(rows[0], dict)):
            raise DataError(f"{path}: expected a JSON list of row objects")
        _check_columns(path, list(rows[0]) if rows else list(REQUIRED_COLUMNS))
        yield from rows
    else:
        raise DataError(f"{path}: unsupported table format (use parquet, jsonl, json or csv)")


def _check_columns(path: str, columns: list[str], where: str = "") -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{path}{where}: not a PixMo-Count table, missing column(s) {missing}; has {list(columns)}")


def parse_points(points: Any) -> list[list[float]]:
    """PixMo points in any published shape → ``[[x, y], ...]``.

    Accepts ``{"x": [...], "y": [...]}`` (`datasets`), ``[{"x":, "y":}, ...]`` (pyarrow), ``[[x, y], ...]``, a JSON
    string of any of these (CSV), or `None`/empty (evaluation splits).
    """
    if points is None or (isinstance(points, str) and points.strip() in ("", "null", "None", "[]")):
        return []
    if isinstance(points, str):
        points = json.loads(points)
    if isinstance(points, dict):
        xs, ys = points.get("x") or [], points.get("y") or []
        if len(xs) != len(ys):
            raise ValueError(f"points has {len(xs)} x and {len(ys)} y values")
        return [[float(x), float(y)] for x, y in zip(xs, ys)]
    out = []
    for p in points:
        if isinstance(p, dict):
            out.append([float(p["x"]), float(p["y"])])
        elif isinstance(p, (list, tuple)) and len(p) == 2:
            out.append([float(p[0]), float(p[1])])
        else:
            raise ValueError(f"unrecognised point {p!r}")
    return out


@dataclass
class PixmoCountConfig(PerceptionBuilderConfig):
    """Config of `PixmoCount`.

    Args:
        table_files (`dict[str, str]`, *optional*):
            Split → table (parquet/jsonl/json/csv). Defaults to ``data_dir/data/{split}-*.parquet`` (the hub layout).
        image_dir (`str`):
            Folder with the downloaded images (searched recursively).
        match_by (`str`, *optional*, defaults to `"auto"`):
            ``"auto"`` (file name, then content hash), ``"filename"`` or ``"sha256"``.
        verify_sha256 (`bool`, *optional*, defaults to `True`):
            Check a file found by name against ``image_sha256``.
        image_map (`dict[str, str]`, *optional*):
            Explicit URL-or-sha256 → file path (relative to ``image_dir`` or absolute), e.g. from your downloader.
        point_tolerance (`float`, *optional*, defaults to `1.0`):
            Pixels a point may lie outside the image before the row counts as invalid.
    """

    table_files: dict[str, str] | None = None
    image_dir: str | None = None
    match_by: str = "auto"
    verify_sha256: bool = True
    image_map: dict[str, str] | None = None
    point_tolerance: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.match_by not in ("auto", "filename", "sha256"):
            raise ValueError(f"match_by must be 'auto', 'filename' or 'sha256', got {self.match_by!r}.")


class _ImageIndex:
    """File-name and (lazy) content-hash lookup over an image folder; each file is hashed at most once."""

    def __init__(self, image_dir: str):
        self.image_dir = image_dir
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        for root, _, files in os.walk(image_dir):
            for name in sorted(files):
                path = os.path.join(root, name)
                self.by_name.setdefault(name, path)
                self.by_stem.setdefault(os.path.splitext(name)[0].lower(), path)
        self._sha: dict[str, str] = {}
        self._by_sha: dict[str, str] | None = None

    def sha(self, path: str) -> str:
        if path not in self._sha:
            self._sha[path] = sha256_of(path)
        return self._sha[path]

    def find_by_sha(self, sha: str) -> str | None:
        if self._by_sha is None:
            self._by_sha = {}
            for path in sorted(self.by_name.values()):
                self._by_sha.setdefault(self.sha(path), path)
        return self._by_sha.get(sha.lower())


class PixmoCount(PerceptionBuilder):
    """Counting rows for PixMo-Count: ``count``, ``points`` (train only) and the object ``label``.

    Example:
    ```python
    >>> builder = PixmoCount(data_dir="pixmo-count", image_dir="pixmo-count/images", cache_dir="/tmp/hf")
    >>> builder.download_and_prepare()
    >>> builder.report.skips["validation"]
    {'missing_image': 6}
    ```
    """

    TASK = "counting"
    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PixmoCountConfig
    BUILDER_CONFIGS: ClassVar[list[PixmoCountConfig]] = [PixmoCountConfig(name="default", version=VERSION)]
    DEFAULT_CONFIG_NAME = "default"

    @classmethod
    def _source_paths(cls, kwargs: dict[str, Any]) -> list[str]:
        paths = list(_find_tables(kwargs.get("data_dir"), kwargs.get("table_files")).values())
        image_dir = kwargs.get("image_dir")
        return paths + ([image_dir] if image_dir else [])  # every file under it: which one matches, and its content

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="PixMo-Count object counting in the trl-perception schema (points in original pixels).",
            features=_FEATURES,
            homepage="https://huggingface.co/datasets/allenai/pixmo-count",
            license="ODC-BY-1.0 (annotations); images are third-party web content.",
        )

    def _available_splits(self) -> list[datasets.SplitGenerator]:
        c = self.config
        tables = _find_tables(c.data_dir, c.table_files)
        if not tables:
            raise FileNotFoundError(
                f"No PixMo-Count table found in {c.data_dir!r} (expected data/{{train,validation,test}}-*.parquet)."
            )
        for split, path in tables.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"PixMo-Count table {path} (split {split!r}) does not exist.")
        if not c.image_dir or not os.path.isdir(c.image_dir):
            raise FileNotFoundError(f"PixMo-Count image folder {c.image_dir!r} does not exist.")
        self._index = _ImageIndex(os.path.abspath(c.image_dir))
        self.metadata.update({"tables": tables, "image_dir": os.path.abspath(c.image_dir)})
        order = [s for s in SPLITS if s in tables] + sorted(set(tables) - set(SPLITS))
        return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s, "path": tables[s]}) for s in order]

    def _locate(self, url: str, sha: str) -> tuple[str | None, str | None]:
        """(path, None) when found, else (None, "missing_image" | "sha256_mismatch")."""
        c, index = self.config, self._index
        mismatch = False
        if c.match_by in ("auto", "filename"):
            candidates = []
            for key in (url, sha):
                if c.image_map and key in c.image_map:
                    candidates.append(os.path.join(index.image_dir, c.image_map[key]))
            if sha.lower() in index.by_stem:
                candidates.append(index.by_stem[sha.lower()])
            url_name = urllib.parse.unquote(os.path.basename(urllib.parse.urlparse(url).path))
            if url_name in index.by_name:
                candidates.append(index.by_name[url_name])
            for path in dict.fromkeys(candidates):
                if not os.path.isfile(path):
                    continue
                if not c.verify_sha256 or index.sha(path) == sha.lower():
                    return path, None
                mismatch = True
        if c.match_by in ("auto", "sha256"):
            path = index.find_by_sha(sha)
            if path is not None:
                return path, None
        return None, "sha256_mismatch" if mismatch else "missing_image"

    def _generate_examples(self, split: str, path: str):
        c = self.config
        rep = self.reporter(split)
        # In batches of rows: decode the batch's images in parallel first, then check and emit row by row.
        for batch in batches(enumerate(_read_table(path)), 256):
            if c.decode_images:
                decode_images(self._image_of(row) for _, row in batch)
            for index, row in batch:
                where = f"{path}: row {index}"
                url, sha, label = row.get("image_url"), row.get("image_sha256"), row.get("label")
                try:
                    count = int(row.get("count"))
                    if count < 0:
                        raise ValueError("negative count")
                    points = parse_points(row.get("points"))
                except (TypeError, ValueError, KeyError, json.JSONDecodeError) as e:
                    rep.skip("malformed_record", f"{where} ({url}): bad count/points ({e})")
                    continue
                if not isinstance(url, str) or not isinstance(sha, str) or not label:
                    rep.skip("malformed_record", f"{where}: image_url/image_sha256/label missing")
                    continue
                file_path, reason = self._locate(url, sha)
                if file_path is None:
                    detail = "no local file" if reason == "missing_image" else "local file has a different sha256"
                    rep.skip(reason, f"{where} ({url}, sha256 {sha[:12]}…): {detail} in {self._index.image_dir}")
                    continue
                size, reason, detail = probe_image(file_path, need_size=True, decode=c.decode_images)
                if reason is not None:
                    rep.skip(reason, f"{where} ({url}): {detail}")
                    continue
                width, height = size
                tol = c.point_tolerance
                outside = [p for p in points if not (-tol <= p[0] <= width + tol and -tol <= p[1] <= height + tol)]
                if outside:
                    rep.skip("point_outside_image", f"{where} ({url}): point {outside[0]} outside {width}x{height}")
                    continue
                if points and len(points) != count:
                    rep.note("count_differs_from_points")
                rep.emitted()
                yield (
                    index,
                    self.row(
                        id=f"pixmo-count/{split}/row-{index}",
                        prompt=self.prompt(split, question=label, label=label),
                        image=file_path,
                        width=width,
                        height=height,
                        count=count,
                        points=[[min(max(x, 0.0), width), min(max(y, 0.0), height)] for x, y in points],
                        label=label,
                        image_url=url,
                        image_sha256=sha.lower(),
                    ),
                )

    def _image_of(self, row: dict[str, Any]) -> str:
        """The file a row's image resolves to, or ``""`` (a lookup only: `_locate` caches the hashes it computes)."""
        url, sha = row.get("image_url"), row.get("image_sha256")
        return (self._locate(url, sha)[0] or "") if isinstance(url, str) and isinstance(sha, str) else ""


def load_pixmo_count(
    data_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    split: str = "validation",
    *,
    table_file: str | os.PathLike | None = None,
    match_by: str = "auto",
    verify_sha256: bool = True,
    family: str = "qwen2_5_vl",
    thinking: bool = False,
    prompt_preset: str = "default",
    prompt_template: str | None = None,
    system_prompt: str | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **config_kwargs: Any,
) -> datasets.Dataset:
    """Build (or reuse from cache) one split of PixMo-Count and return it.

    Args:
        data_dir (`str`):
            A local copy of the dataset repo (``data/{train,validation,test}-00000-of-00001.parquet``).
        image_dir (`str`):
            Your downloaded images (named by URL file name or ``<sha256>.<ext>``, or anything: content hashes match).
        split (`str`, *optional*, defaults to `"validation"`):
            ``"train"``, ``"validation"`` or ``"test"``.
        table_file (`str`, *optional*):
            Explicit table for ``split`` (parquet / jsonl / json / csv) instead of the ``data_dir`` layout.

    Example:
    ```python
    >>> ds = load_pixmo_count("pixmo-count", "pixmo-count/images", split="train", cache_dir="/tmp/hf")
    >>> ds[0]["count"], ds[0]["points"][:2], ds[0]["label"]
    ```
    """
    split = SPLIT_ALIASES.get(split, split)
    if table_file is not None:
        config_kwargs["table_files"] = {split: str(table_file)}
    return build_split(
        PixmoCount,
        split,
        cache_dir=cache_dir,
        data_dir=data_dir,
        image_dir=image_dir,
        match_by=match_by,
        verify_sha256=verify_sha256,
        family=family,
        thinking=thinking,
        prompt_preset=prompt_preset,
        prompt_template=prompt_template,
        system_prompt=system_prompt,
        strict=strict,
        **config_kwargs,
    )


__all__ = ["PixmoCount", "PixmoCountConfig", "load_pixmo_count", "parse_points", "sha256_of"]
