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
"""The files of a run directory: live metrics and the reproducibility manifest.

| file | written |
|---|---|
| `metrics.json` | `{"summary": ..., "log_history": [...]}`, rewritten at every logging step and at the end |
| `metrics.csv` | the log history, one row per logging step, rewritten with it |
| `reward_curve.png` | the sampled training reward per logged step, refreshed at every checkpoint save and at the end |
| `run_manifest.json` | what reproduces the run: versions, config, recipe, seeds, dataset, model ([`build_run_manifest`]) |

Every file is written to a temporary name and renamed, so a run killed mid-write leaves the previous complete file.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
REWARD_CURVE = "reward_curve.png"
RUN_MANIFEST = "run_manifest.json"
# Distributions whose versions the manifest records (those installed).
PACKAGES = (
    "trl-perception",
    "trl",
    "transformers",
    "torch",
    "accelerate",
    "datasets",
    "peft",
    "deepspeed",
    "vllm",
    "pillow",
    "numpy",
    "safetensors",
    "tokenizers",
)


def _replace(path: str, write) -> None:
    """Write `path` through `write(tmp_path)` and an atomic rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(text)

    _replace(path, write)


def write_metrics(output_dir: str, log_history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """`metrics.json` (summary and log history) and `metrics.csv` (the log history) in `output_dir`."""
    import io

    os.makedirs(output_dir, exist_ok=True)
    _write_text(
        os.path.join(output_dir, METRICS_JSON),
        json.dumps({"summary": summary, "log_history": log_history}, indent=2, default=float),
    )
    keys = sorted({k for entry in log_history for k in entry})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(log_history)
    _write_text(os.path.join(output_dir, METRICS_CSV), buffer.getvalue())


def write_reward_curve(output_dir: str, log_history: list[dict[str, Any]], summary: dict[str, Any]) -> bool:
    """`reward_curve.png`: the logged training reward per step, with the held-out scores when known. Returns whether
    there was anything to plot."""
    steps = [e["step"] for e in log_history if "reward" in e]
    rewards = [e["reward"] for e in log_history if "reward" in e]
    if not steps:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rewards, marker="o", label="train reward (sampled)")
    for key, style in (("before", "--"), ("after", "-.")):
        if key in summary.get("heldout", {}):
            ax.axhline(summary["heldout"][key]["reward"], linestyle=style, color="gray", label=f"held-out {key}")
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title("trl-perception: reward")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _replace(os.path.join(output_dir, REWARD_CURVE), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return True


def write_run_files(output_dir: str, log_history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """All metric files of a run: `metrics.json`, `metrics.csv` and `reward_curve.png`."""
    write_metrics(output_dir, log_history, summary)
    write_reward_curve(output_dir, log_history, summary)


class RunFilesCallback(TrainerCallback):
    """
    Keeps a run directory's metrics current while training: `metrics.json` and `metrics.csv` are rewritten at every
    logging step (so a killed run keeps everything it logged) and `reward_curve.png` at every checkpoint save. Only
    the main process writes.

    Args:
        output_dir (`str`):
            The run directory.
        summary (`dict`, *optional*):
            The `summary` of `metrics.json` (e.g. held-out scores before training); the callback reads it at each
            write, so later changes to the same dict appear in later writes.

    Example:

    ```python
    >>> trainer.add_callback(RunFilesCallback(args.output_dir, summary={"model": "tiny"}))
    ```
    """

    def __init__(self, output_dir: str, summary: dict[str, Any] | None = None):
        self.output_dir = output_dir
        self.summary = summary if summary is not None else {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            write_metrics(self.output_dir, state.log_history, self.summary)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_reward_curve(self.output_dir, state.log_history, self.summary)


# -------------------------------------------------------------------------------------------------- the manifest


def _sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the installed distributions of `PACKAGES`, and Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_checkout() -> dict[str, Any]:
    """
    When trl_perception runs from a clone: its root, the `uv.lock` sha256, the git commit and whether the tree has
    uncommitted changes. Empty for an installed package.
    """
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        return {}
    info: dict[str, Any] = {"root": str(root)}
    if (root / "uv.lock").is_file():
        info["uv_lock_sha256"] = _sha256(root / "uv.lock")
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return info
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return info


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.value if hasattr(v, "value") else str(v)))


def _config_dict(config: Any) -> dict[str, Any]:
    if hasattr(config, "to_dict"):  # TrainingArguments: enums as values, tokens hidden
        return _jsonable(config.to_dict())
    return _jsonable(dataclasses.asdict(config))


def dataset_record(dataset: Any, name: str | None, config: str | None, split: str) -> dict[str, Any]:
    """Builder name, config, split, fingerprint, row count and (for trl-perception builders) build report of one
    loaded split."""
    from trl_perception.data import dataset_metadata

    info = getattr(dataset, "info", None)
    record: dict[str, Any] = {
        "dataset_name": name,
        "dataset_config": config,
        "split": split,
        "builder_name": getattr(info, "builder_name", None),
        "config_name": getattr(info, "config_name", None),
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_rows": len(dataset),
    }
    report = dataset_metadata(dataset).get("report") if info is not None else None
    if report:
        record["builder_rows"] = report.get("num_examples", {})
        record["skips"] = report.get("skips", {})
        record["notes"] = report.get("notes", {})
    return record


def processor_record(processor: Any) -> dict[str, Any]:
    """The image processor's class and pixel budget (`min_pixels`/`max_pixels`, or its `size`)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return {}
    record = {"class": type(image_processor).__name__}
    for attr in ("min_pixels", "max_pixels", "patch_size", "merge_size"):
        value = getattr(image_processor, attr, None)
        if value is not None:
            record[attr] = value
    size = getattr(image_processor, "size", None)
    if size:
        record["size"] = _jsonable(dict(size))
    return record


def build_run_manifest(
    *,
    script_args: Any,
    training_args: Any,
    model_args: Any,
    argv: list[str],
    datasets: dict[str, dict[str, Any]],
    model: Any = None,
    processor: Any = None,
    family: str | None = None,
    resumed_from: str | None = None,
) -> dict[str, Any]:
    """
    Everything that reproduces a run: the command line, the recipe (path, sha256, text), the resolved script, training
    and model configurations, the seeds, the datasets ([`dataset_record`]), the model (name, revision, resolved commit,
    family, class) and the processor's pixel budget, the package versions and, from a clone, the `uv.lock` sha256 and
    the git commit.
    """
    recipe: dict[str, Any] | None = None
    if "--config" in argv[:-1]:
        path = argv[argv.index("--config") + 1]
        recipe = {"path": os.path.abspath(path)}
        if os.path.isfile(path):
            recipe |= {"sha256": _sha256(path), "text": Path(path).read_text()}
    config = getattr(model, "config", None)
    return {
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv[:1], *argv],
        "resumed_from": resumed_from,
        "recipe": recipe,
        "seeds": {
            "seed": training_args.seed,
            "data_seed": training_args.data_seed,
            "dataset_seed": (script_args.dataset_kwargs or {}).get("seed"),
        },
        "datasets": datasets,
        "model": {
            "model_name_or_path": model_args.model_name_or_path,
            "revision": model_args.model_revision,
            "commit_hash": getattr(config, "_commit_hash", None),
            "class": type(model).__name__ if model is not None else None,
            "model_type": getattr(config, "model_type", None),
            "family": family,
            # `ds_numel`: under ZeRO-3 a parameter holds only its shard
            "num_parameters": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
            if model is not None
            else None,
        },
        "processor": processor_record(processor),
        "packages": package_versions(),
        "source": source_checkout(),
        "platform": {"system": platform.platform(), "machine": platform.machine()},
        "config": {
            "script": _config_dict(script_args),
            "training": _config_dict(training_args),
            "model": _config_dict(model_args),
        },
    }


def write_run_manifest(output_dir: str, manifest: dict[str, Any]) -> str:
    """
    Write `run_manifest.json` in `output_dir`. A resumed run keeps the manifests of the earlier launches under
    `previous_launches`. Returns the path.
    """
    path = os.path.join(output_dir, RUN_MANIFEST)
    previous: list[dict[str, Any]] = []
    if manifest.get("resumed_from") and os.path.isfile(path):
        try:
            with open(path) as f:
                earlier = json.load(f)
            previous = [*earlier.pop("previous_launches", []), earlier]
        except (OSError, ValueError):
            previous = []
    os.makedirs(output_dir, exist_ok=True)
    _write_text(path, json.dumps({**manifest, "previous_launches": previous}, indent=2, default=str))
    return path
