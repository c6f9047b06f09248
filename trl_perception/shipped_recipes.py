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
"""The recipes shipped inside the package, by name.

The task recipes (`trl_perception/recipes/*.yaml`) and the accelerate/DeepSpeed configs
(`trl_perception/recipes/accelerate/*.yaml`) are package data, so a pip install has them too; in a clone, the
top-level `recipes` folder is a symlink to `trl_perception/recipes`. Wherever a recipe is expected, a path that exists
wins; otherwise a bare name (`quickstart`, `zero2_cpu`) is one of these files:

```python
from trl_perception.shipped_recipes import list_recipes, recipe_path

list_recipes()  # ['counting_pixmo', ..., 'quickstart']
recipe_path("quickstart")  # .../trl_perception/recipes/quickstart.yaml
```
"""

from __future__ import annotations

import difflib
import os
import shutil
from importlib import resources
from pathlib import Path


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
ACCELERATE_DIR = RECIPES_DIR / "accelerate"
_SEE_ALSO = "`trl-perception recipes` lists them; `trl-perception recipes copy NAME` copies one out for editing"


def list_recipes() -> list[str]:
    """The names of the shipped task recipes (`--config NAME`)."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def list_accelerate_configs() -> list[str]:
    """The names of the shipped accelerate configs (`--accelerate_config NAME`)."""
    return sorted(path.stem for path in ACCELERATE_DIR.glob("*.yaml"))


def trl_accelerate_configs() -> list[str]:
    """The names of TRL's packaged accelerate configs, which `--accelerate_config` also takes."""
    return sorted(
        entry.name[: -len(".yaml")]
        for entry in resources.files("trl.accelerate_configs").iterdir()
        if entry.name.endswith(".yaml")
    )


def shipped_file(name: str) -> Path:
    """The shipped task recipe or accelerate config called `name` (`quickstart`, `zero2_cpu`,
    `accelerate/zero2_cpu`)."""
    stem = name.removeprefix("accelerate/")
    if "/" not in stem and "\\" not in stem:
        folders = [ACCELERATE_DIR] if name.startswith("accelerate/") else [RECIPES_DIR, ACCELERATE_DIR]
        for folder in folders:
            if (folder / f"{stem}.yaml").is_file():
                return folder / f"{stem}.yaml"
    names = [*list_recipes(), *list_accelerate_configs()]
    raise FileNotFoundError(
        f"No shipped recipe or accelerate config is called {name!r}{_did_you_mean(name, names)}; "
        f"task recipes: {', '.join(list_recipes())}; accelerate configs: {', '.join(list_accelerate_configs())}."
    )


def recipe_path(value: str) -> str:
    """`--config VALUE`: a YAML file that exists, else the shipped task recipe named `VALUE`."""
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    if path.exists():
        raise FileNotFoundError(f"--config {value!r} is a directory, not a YAML recipe.")
    if value in list_recipes():
        return str(RECIPES_DIR / f"{value}.yaml")
    if path.stem in list_recipes() and path.suffix in (".yaml", ".yml"):
        hint = f" (the shipped one is `--config {path.stem}`)"
    else:
        hint = _did_you_mean(value, list_recipes(), as_flag="--config")
    raise FileNotFoundError(
        f"--config {value!r} is neither a file nor a shipped recipe{hint}. Shipped recipes: "
        f"{', '.join(list_recipes())} ({_SEE_ALSO})."
    )


def accelerate_config_path(value: str) -> str:
    """`--accelerate_config VALUE`: a file that exists, else a shipped accelerate config, else one of TRL's."""
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    if value in list_accelerate_configs():
        return str(ACCELERATE_DIR / f"{value}.yaml")
    if value in trl_accelerate_configs():
        return str(resources.files("trl.accelerate_configs").joinpath(f"{value}.yaml"))
    names = sorted({*list_accelerate_configs(), *trl_accelerate_configs()})
    if path.stem in names and path.suffix in (".yaml", ".yml"):
        hint = f" (the shipped one is `--accelerate_config {path.stem}`)"
    else:
        hint = _did_you_mean(value, names, as_flag="--accelerate_config")
    raise FileNotFoundError(
        f"--accelerate_config {value!r} is neither a file nor a shipped config{hint}. Shipped: "
        f"{', '.join(list_accelerate_configs())}; TRL's: {', '.join(trl_accelerate_configs())} ({_SEE_ALSO})."
    )


def copy_recipe(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Copy the shipped recipe or accelerate config `name` to `dest` (a file, or a folder to copy into; default: the
    current folder) for editing; an existing file is kept unless `force`."""
    source = shipped_file(name)
    target = Path(dest).expanduser() if dest is not None else Path(source.name)
    if target.is_dir() or str(dest).endswith(("/", os.sep)):
        target = target / source.name
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to overwrite it, or give another destination.")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def describe(path: Path) -> str:
    """The first sentence of a recipe's leading comment."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or not line.lstrip("#").strip():
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _did_you_mean(value: str, names: list[str], as_flag: str | None = None) -> str:
    matches = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean `{as_flag} {matches[0]}`?)" if as_flag else f" (did you mean {matches[0]!r}?)"
