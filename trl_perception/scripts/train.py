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
"""GRPO training script behind `trl-perception train` (launched through `accelerate launch`, like `trl grpo`).

```bash
trl-perception train --config quickstart
trl-perception train --config grounding_refcoco --num_processes 8 --accelerate_config zero3
trl-perception train --config my_recipe.yaml   # a file: e.g. `trl-perception recipes copy quickstart my_recipe.yaml`
```

Everything that can be checked without a model or data (reward names and options, the dataset builder and its
keyword arguments, the model family) is checked by [`validate_arguments`] first, by the launcher before it starts
`accelerate launch` and again here before anything is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import math
import os
import sys
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from trl import ScriptArguments, TrlParser

from trl_perception.checkpoints import resolve_resume_argument


if typing.TYPE_CHECKING:
    from trl_perception.rewards._registry import RewardOptions


# Parameters TRL passes every reward function itself; they cannot be `reward_kwargs`.
_TRL_REWARD_ARGUMENTS = ("prompts", "completions", "completion_ids")


BUILDERS = {
    # name: (loader, the keyword that `dataset_config` fills)
    "synthetic_shapes": ("trl_perception.data:load_synthetic_shapes", "task"),
    "refcoco": ("trl_perception.data:load_refcoco", "dataset"),
    "pixmo_count": ("trl_perception.data:load_pixmo_count", None),
    "page_ocr": ("trl_perception.data:load_page_ocr", "language"),
    "coco_detection": ("trl_perception.data:load_coco_detection", None),
}
_BUILDER_NAMES = ", ".join(f"`{name}`" for name in BUILDERS)
_BUILDER_TASKS = {"refcoco": "grounding", "pixmo_count": "counting", "page_ocr": "ocr", "coco_detection": "detection"}


@dataclass
class PerceptionScriptArguments(ScriptArguments):
    """
    Script arguments of `trl-perception train`.

    Args:
        dataset_name (`str`):
            A trl-perception builder (`synthetic_shapes`, `refcoco`, `pixmo_count`, `page_ocr`, `coco_detection`),
            a directory saved with `Dataset.save_to_disk`, or anything `datasets.load_dataset` accepts.
        dataset_kwargs (`dict[str, Any]`, *optional*):
            Keyword arguments of the builder's loader (e.g. `data_dir`, `image_dir`, `split_by`). On the command line
            the JSON dict merges with the recipe's (a key set to `null` removes it).
        reward_funcs (`list[str]`):
            Reward names from `trl_perception.rewards.list_rewards()` (including those registered by
            `reward_modules`) or dotted import paths.
        reward_kwargs (`dict[str, dict[str, Any]]`, *optional*):
            Options per entry of `reward_funcs`: for a registered name, `get_reward(name, **options)`; for a dotted
            path to a reward factory or class, the factory's arguments; for a dotted path to a reward function, keyword
            arguments bound to it (they must be named parameters of the function).
        reward_modules (`list[str]`, *optional*):
            Modules imported before the rewards are resolved (the working directory is on `sys.path`), so that the
            rewards they register with `@register_reward` can be named in `reward_funcs` and `reward_kwargs`.
        warmstart_steps (`int`, *optional*, defaults to `0`):
            Supervised warm-start steps before GRPO (0 disables it). Needs a task with a text target (`count`).
        warmstart_shuffle_targets (`bool`, *optional*, defaults to `True`):
            Pair rows with other rows' targets, so the warm start teaches only the format, not the task.
        heldout_samples (`int`, *optional*, defaults to `0`):
            Held-out rows (from `dataset_test_split`) scored greedily with the training rewards before and after
            training; 0 disables it.
        min_pixels, max_pixels (`int`, *optional*):
            Pixel budget of the image processor (default: the checkpoint's). It also reaches the colocated vLLM engine
            and, through `model_image_sizes`, the rewards.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={"help": f"A builder ({_BUILDER_NAMES}), a `save_to_disk` directory or a Hub id."},
    )
    dataset_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of the builder's loader (JSON); merge with the recipe's, null removes."},
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Reward names (`trl-perception rewards`) or dotted import paths."},
    )
    reward_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Options per reward (JSON: {reward: {option: value}}); merge with the recipe's."},
    )
    reward_modules: list[str] = field(
        default_factory=list,
        metadata={"help": "Modules to import first, so that the rewards they register can be named."},
    )
    dataset_train_limit: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    warmstart_steps: int = field(default=0, metadata={"help": "Supervised warm-start steps before GRPO."})
    warmstart_learning_rate: float = field(default=1e-3, metadata={"help": "Warm-start learning rate."})
    warmstart_batch_size: int = field(default=16, metadata={"help": "Warm-start batch size."})
    warmstart_shuffle_targets: bool = field(default=True, metadata={"help": "Warm start on shuffled targets."})
    heldout_samples: int = field(default=0, metadata={"help": "Held-out rows scored before and after training."})
    heldout_max_new_tokens: int = field(default=16, metadata={"help": "Greedy tokens for held-out scoring."})
    min_pixels: int | None = field(default=None, metadata={"help": "Processor pixel budget (default: checkpoint)."})
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Processor pixel budget (default: checkpoint); Perception-R1 trained with 1000000."},
    )

    def __post_init__(self):
        for name in ("dataset_kwargs", "reward_kwargs"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as e:
                    raise ValueError(f"`{name}` must be a JSON object, got {value!r} ({e}).") from None
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"`{name}` must be a dict (a JSON object on the command line), got {value!r}.")
            setattr(self, name, value)
        for reward, options in (self.reward_kwargs or {}).items():
            if options is not None and not isinstance(options, dict):
                raise ValueError(
                    f"`reward_kwargs[{reward!r}]` must be a dict of options, got {options!r}: "
                    'e.g. {"detection": {"preset": "paper"}}.'
                )
        if not self.reward_funcs:
            raise ValueError("Set at least one reward with `reward_funcs` (see `trl-perception rewards`).")


def merge_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """
    `base` updated with `override`, recursively: nested dicts merge, a key set to `None` (JSON `null`) is removed, any
    other value replaces.

    Example:

    ```python
    >>> merge_dicts({"data_dir": "coco", "min_objects": 1, "crowd": "exclude"}, {"data_dir": "/data", "crowd": None})
    {'data_dir': '/data', 'min_objects': 1}

    ```
    """
    result = dict(base)
    for key, value in override.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_dicts(result[key] if isinstance(result.get(key), dict) else {}, value)
        else:
            result[key] = value
    return result


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's layout and shows each flag's default."""


class PerceptionTrlParser(TrlParser):
    """
    [`trl.TrlParser`] with two differences, both for the command line of `trl-perception train`:

    - flags are never prefix-matched (`allow_abbrev=False`): `--max_step` is an unknown flag, not `--max_steps`;
    - a dict-valued option given as a JSON object on the command line merges with the value the recipe (`--config`)
      or the dataclass gives it ([`merge_dicts`]: a key set to `null` removes it), so that
      `--dataset_kwargs '{"data_dir": "/data/coco"}'` keeps the recipe's other loader arguments. A value that is not
      a JSON object (e.g. a DeepSpeed config path for `--deepspeed`) replaces, as in `trl grpo`.
    """

    def __init__(self, dataclass_types: Any = None, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        self._dict_dests = {
            name
            for dtype in self.dataclass_types
            for name, hint in typing.get_type_hints(dtype).items()
            if dict in (typing.get_origin(arg) or arg for arg in (typing.get_args(hint) or (hint,)))
        }

    def parse_args_and_config(self, args: Iterable[str] | None = None, *positional: Any, **kwargs: Any):
        """[`trl.TrlParser.parse_args_and_config`], with `--config` taking a shipped recipe's name as well as a path."""
        args = resolve_config_argument(list(sys.argv[1:] if args is None else args))
        return super().parse_args_and_config(args, *positional, **kwargs)

    def parse_args_into_dataclasses(self, args: Iterable[str] | None = None, *positional: Any, **kwargs: Any):
        args = self.merge_dict_options(list(sys.argv[1:] if args is None else args))
        return super().parse_args_into_dataclasses(args, *positional, **kwargs)

    def merge_dict_options(self, args: list[str]) -> list[str]:
        """`args` with every JSON-object value of a dict-valued flag merged into that flag's current default."""
        merged: dict[str, dict[str, Any]] = {}
        result: list[str] = []
        i = 0
        while i < len(args):
            flag, has_value, value = args[i].partition("=")
            action = self._option_string_actions.get(flag) if flag.startswith("--") else None
            if action is None or action.dest not in self._dict_dests or (not has_value and i + 1 >= len(args)):
                result.append(args[i])
                i += 1
                continue
            if not has_value:
                value = args[i + 1]
            i += 1 if has_value else 2
            base = merged.get(action.dest, _as_dict(action.default))
            override = _as_dict(value)
            if base is None or override is None:  # not both dicts: the command-line value replaces
                result += [flag, value]
                continue
            merged[action.dest] = merge_dicts(base, override)
            result += [flag, json.dumps(merged[action.dest])]
        return result


def resolve_config_argument(args: list[str]) -> list[str]:
    """`args` with the value of `--config` (or `--config=VALUE`) as a file path: a file that exists stays as given, a
    shipped recipe's name (`quickstart`) becomes its path in the package ([`trl_perception.shipped_recipes`])."""
    result = list(args)
    for i, arg in enumerate(result):
        if arg == "--config":
            if i + 1 >= len(result) or result[i + 1].startswith("--"):
                raise ValueError("--config expects a recipe: a YAML file or a shipped recipe's name (`quickstart`).")
            return [*result[:i], "--config", _recipe_path(result[i + 1]), *result[i + 2 :]]
        if arg.startswith("--config="):
            return [*result[:i], "--config", _recipe_path(arg.split("=", 1)[1]), *result[i + 1 :]]
    return result


def _recipe_path(value: str) -> str:
    from trl_perception.shipped_recipes import recipe_path

    path = recipe_path(value)
    if path != value and os.path.isfile(f"{value}.yaml"):  # e.g. next to a copy made by `trl-perception recipes copy`
        print(
            f"note: --config {value} is the shipped recipe; the file {value}.yaml here is not used "
            f"(pass --config {value}.yaml for it).",
            file=sys.stderr,
        )
    return path


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A dict, a JSON object string as a dict, `{}` for `None`; `None` for anything else."""
    if value is None:
        return {}
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def _builder_loader(name: str) -> Callable[..., Any]:
    target, _ = BUILDERS[name]
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def builder_options(name: str) -> set[str]:
    """
    The `dataset_kwargs` keys the builder `name` accepts: its loader's named parameters (but `split`, which
    `dataset_train_split` / `dataset_test_split` set) and, when the loader forwards `**config_kwargs`, the fields of its
    `BuilderConfig` and the builder's own options (`writer_batch_size`, `storage_options`, `token`).
    """
    import datasets

    loader = _builder_loader(name)
    parameters = inspect.signature(loader).parameters.values()
    options = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"split"}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        module = sys.modules[loader.__module__]
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, datasets.BuilderConfig)
                and value.__module__ == module.__name__
            ):
                options |= {f.name for f in dataclasses.fields(value)} - {"splits", "source_fingerprint"}
        options |= {"writer_batch_size", "storage_options", "token"}
    return options


def default_test_split(name: str) -> str:
    """
    The held-out split of the dataset `name` when none is given: a builder's evaluation split (its loader's default
    `split`: `val` for refcoco, `validation` for pixmo_count and coco_detection, `test` for page_ocr), else `test`
    (synthetic_shapes, and TRL's `dataset_test_split` default).
    """
    if name in BUILDERS:
        parameter = inspect.signature(_builder_loader(name)).parameters.get("split")
        if parameter is not None and isinstance(parameter.default, str):
            return parameter.default
    return "test"


def load_perception_dataset(
    name: str, split: str, config: str | None = None, default_family: str | None = None, **kwargs
):
    """
    One split of a dataset given by builder name, saved directory or hub id (see `dataset_name`). A built-in builder
    that writes family-specific prompts gets `family=default_family` unless `kwargs` names one.
    """
    import datasets

    if name in BUILDERS:
        _, config_key = BUILDERS[name]
        loader = _builder_loader(name)
        if kwargs.get("family") in (None, "auto") and "family" in inspect.signature(loader).parameters:
            kwargs["family"] = default_family or kwargs.get("family") or "auto"
        if config is not None:
            if config_key is None:
                raise ValueError(f"The {name!r} builder has no `dataset_config`; use `dataset_kwargs` instead.")
            kwargs.setdefault(config_key, config)
        if name == "synthetic_shapes":  # builds both splits in one go
            return loader(**kwargs)[split]
        return loader(split=split, **kwargs)
    if os.path.isdir(name):
        loaded = datasets.load_from_disk(name)
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(name, name=config, split=split, **kwargs)


def validate_dataset(
    name: str | None, config: str | None, dataset_kwargs: dict[str, Any] | None, splits: Iterable[str]
) -> None:
    """Check the dataset arguments without loading anything; raises a `ValueError` naming the fix."""
    kwargs = dataset_kwargs or {}
    if not name:
        raise ValueError(
            f"Set `dataset_name`: a builder ({', '.join(BUILDERS)}), a `save_to_disk` directory or a Hub id."
        )
    if name in BUILDERS:
        _, config_key = BUILDERS[name]
        if config is not None and config_key is None:
            raise ValueError(f"The {name!r} builder has no `dataset_config`; use `dataset_kwargs` instead.")
        if "split" in kwargs:
            raise ValueError(
                "`dataset_kwargs` sets `split`; the splits come from `dataset_train_split` / `dataset_test_split`."
            )
        options = builder_options(name)
        for key in kwargs:
            if key not in options:
                raise ValueError(
                    f"Unknown `dataset_kwargs` key {key!r} for the {name!r} builder{_did_you_mean(key, options)}. "
                    f"It accepts: {', '.join(sorted(options))}."
                )
        if kwargs.get("family") not in (None, "auto"):
            from trl_perception.families import get_family

            get_family(kwargs["family"])  # raises, listing the registered families
        if name == "synthetic_shapes":
            for split in splits:
                if split not in ("train", "test"):
                    raise ValueError(
                        f"The 'synthetic_shapes' builder has the splits 'train' and 'test', not {split!r}."
                    )
        return
    looks_like_path = name.startswith((os.sep, ".", "~")) or (os.altsep is not None and os.altsep in name)
    if os.path.isdir(name):
        if kwargs:
            raise ValueError(
                f"`dataset_kwargs` {sorted(kwargs)} do not apply to the saved dataset {name!r} "
                "(`datasets.load_from_disk` takes none); remove them."
            )
    elif looks_like_path:
        raise ValueError(f"`dataset_name` {name!r} looks like a path, but no such directory exists.")
    elif "/" not in name and difflib.get_close_matches(name, BUILDERS, n=1, cutoff=0.75):
        raise ValueError(
            f"Unknown dataset builder {name!r}{_did_you_mean(name, BUILDERS)}. Builders: {', '.join(BUILDERS)}; "
            "a Hub dataset is named `owner/name`."
        )


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _model_image_sizes(processor, row: dict[str, Any]) -> dict[str, Any]:
    """`{"model_image_sizes": [[W_r, H_r], ...]}` of a row's images, or `{}` for a processor without a pixel budget."""
    from trl_perception.families import model_input_size

    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    try:
        return {"model_image_sizes": [list(model_input_size(processor, *image.size)) for image in images]}
    except (AttributeError, ValueError):  # fixed-size tiles (InternVL): the family's frame needs no resized size
        return {}


def warmstart_target(row: dict[str, Any]) -> str:
    """Supervised target for a row. Only tasks with a single-token-sequence answer are supported for now."""
    if row.get("task") == "counting" and row.get("count") is not None:
        return str(row["count"])
    raise ValueError(
        f"Warm start needs a counting row with a `count`; got task={row.get('task')!r}. Set warmstart_steps: 0."
    )


@contextlib.contextmanager
def dataset_progress_bars(enabled: bool):
    """`datasets`' progress bars (building a split, mapping, ...) on while the block runs when `enabled`, off
    otherwise (other processes, `--disable_tqdm true`); the previous setting is restored afterwards."""
    import datasets

    was_enabled = not datasets.utils.are_progress_bars_disabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()


def _previous_summary(output_dir: str) -> dict[str, Any]:
    """The `summary` of the run directory's `metrics.json` (written by the earlier launch), or `{}`."""
    try:
        with open(os.path.join(output_dir, "metrics.json")) as f:
            return json.load(f).get("summary") or {}
    except (OSError, ValueError):
        return {}


def two_proportion_test(k_before: int, k_after: int, n: int) -> dict[str, float]:
    """One-sided two-proportion z-test that the after-accuracy exceeds the before-accuracy (pooled variance)."""
    p1, p2 = k_before / n, k_after / n
    pooled = (k_before + k_after) / (2 * n)
    se = math.sqrt(max(pooled * (1 - pooled) * 2 / n, 1e-12))
    z = (p2 - p1) / se
    return {"z": z, "p_value": 0.5 * math.erfc(z / math.sqrt(2))}


def import_reward_modules(modules: Iterable[str]) -> None:
    """Import `modules` (the working directory first on `sys.path`, as TRL does for dotted reward paths)."""
    for module in modules:
        _import_user_module(module, what=f"reward module {module!r}")


def _import_user_module(module: str, what: str):
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        where = f"the working directory {os.getcwd()} and the installed packages"
        raise ValueError(f"Cannot import {what}: {e} (searched {where}).") from None


def resolve_reward(name: str, options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """
    The reward `name` of `reward_funcs`, configured with `options` (its `reward_kwargs` entry):

    - a registered name (`trl_perception.rewards.list_rewards()`, including rewards registered by `reward_modules`):
      `get_reward(name, **options)`;
    - a dotted import path (`my_rewards.length_reward`, imported with the working directory on `sys.path`, as
      `trl grpo` does). Importing it runs the module's `@register_reward` decorators. A registered factory or a class
      is called with `options` to build the reward; a reward function gets `options` bound as keyword arguments,
      which must be named parameters of the function.

    Raises a `ValueError` for an unknown name, an unknown option or options the reward rejects.
    """
    from trl_perception.rewards import get_reward, list_rewards
    from trl_perception.rewards._registry import _REWARDS, RewardOptions, reward_options

    options = dict(options or {})
    if name in list_rewards():
        _check_options(name, options, reward_options(name))
        return _build(name, lambda: get_reward(name, **options))
    if "." in name:
        module_path, attr = name.rsplit(".", 1)
        module = _import_user_module(module_path, what=f"the module of reward {name!r}")
        if not hasattr(module, attr):
            public = [n for n in vars(module) if not n.startswith("_")]
            raise ValueError(
                f"Reward {name!r}: module {module_path!r} has no attribute {attr!r}{_did_you_mean(attr, public)}."
            )
        obj = getattr(module, attr)
        if isinstance(obj, type) or any(obj is factory for factory in _REWARDS.values()):
            _check_options(name, options, reward_options(obj))
            return _build(name, lambda: obj(**options))
        if not callable(obj):
            raise ValueError(f"Reward {name!r} is a {type(obj).__name__}, not a callable reward.")
        if not options:
            return obj
        if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
            registered = getattr(obj, "__name__", None)
            hint = (
                f"name it by its registered name {registered!r}"
                if registered in list_rewards()
                else "build it with those options in your module"
            )
            raise ValueError(
                f"Reward {name!r} is an already built {type(obj).__name__}, which takes no `reward_kwargs`; {hint}."
            )
        parameters = inspect.signature(obj).parameters.values()
        named = [
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _TRL_REWARD_ARGUMENTS
        ]
        _check_options(name, options, RewardOptions(dict.fromkeys(named), complete=True))
        bound = functools.partial(obj, **options)
        functools.update_wrapper(bound, obj)
        return bound
    raise ValueError(
        f"Unknown reward {name!r}{_did_you_mean(name, list_rewards())}. Registered rewards: "
        f"{', '.join(list_rewards())}. A reward of your own: a dotted path (`my_rewards.my_reward`), or its registered "
        "name with its module in `reward_modules`."
    )


def _check_options(name: str, options: dict[str, Any], listing: RewardOptions) -> None:
    """Unknown options are an error when `listing` is complete (the reward takes no other options)."""
    unknown = [key for key in options if key not in listing.options]
    if unknown and listing.complete:
        raise ValueError(
            f"Unknown option {unknown[0]!r} for reward {name!r}{_did_you_mean(unknown[0], listing.options)}. "
            f"Its options: {', '.join(listing.options) or 'none'} (see `trl-perception rewards`)."
        )


def _build(name: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except (TypeError, ValueError) as e:
        raise ValueError(f"Reward {name!r}: {e}") from None


def build_rewards(script_args: PerceptionScriptArguments) -> tuple[list[Callable[..., Any]], list[str]]:
    """
    The reward functions of `reward_funcs` with their `reward_kwargs`, after importing `reward_modules`; and warnings
    (options given for a reward that is not used). Raises a `ValueError` for anything the rewards reject, or when two
    rewards would log under the same name.
    """
    from trl_perception.rewards import list_rewards
    from trl_perception.warmstart import reward_name

    import_reward_modules(script_args.reward_modules)
    reward_kwargs = script_args.reward_kwargs or {}
    warnings_ = []
    for key in reward_kwargs:
        if key in script_args.reward_funcs:
            continue
        if key in list_rewards() or "." in key:
            warnings_.append(f"`reward_kwargs` has options for {key!r}, which is not in `reward_funcs`: unused.")
        else:
            raise ValueError(
                f"`reward_kwargs` names {key!r}, which is neither in `reward_funcs` ({script_args.reward_funcs}) nor "
                f"a registered reward{_did_you_mean(key, [*script_args.reward_funcs, *list_rewards()])}."
            )
    funcs = [resolve_reward(name, reward_kwargs.get(name)) for name in script_args.reward_funcs]
    seen: dict[str, str] = {}
    for name, func in zip(script_args.reward_funcs, funcs):
        logged = reward_name(func)
        if logged in seen:
            raise ValueError(
                f"Rewards {seen[logged]!r} and {name!r} both log as {logged!r} (`rewards/{logged}/mean`), so their "
                "metrics would mix; give one another name (for a registered reward, the option `name`)."
            )
        seen[logged] = name
    return funcs, warnings_


def validate_arguments(
    script_args: PerceptionScriptArguments, training_args, model_args
) -> tuple[list[Callable[..., Any]], list[str]]:
    """
    Check everything that can be checked before a model or data is loaded: the model (`model_name_or_path` and its
    family), the dataset (builder name, `dataset_config`, `dataset_kwargs` keys), the rewards (names, `reward_kwargs`,
    `reward_modules`, `reward_weights`). Raises a `ValueError` naming the fix; returns the reward functions and the
    warnings to print.
    """
    model_path = model_args.model_name_or_path
    if not model_path:
        raise ValueError("Set `model_name_or_path`: a Hub id, a checkpoint directory or `tiny:<family>`.")
    _resolve_model_family(model_path, training_args.model_family)

    splits = [script_args.dataset_train_split]
    if script_args.heldout_samples or _evaluates(training_args):
        splits.append(script_args.dataset_test_split)
    validate_dataset(script_args.dataset_name, script_args.dataset_config, script_args.dataset_kwargs, splits)
    if script_args.warmstart_steps:
        task = _BUILDER_TASKS.get(script_args.dataset_name)
        if script_args.dataset_name == "synthetic_shapes":
            task = (script_args.dataset_kwargs or {}).get("task", script_args.dataset_config or "counting")
        if task not in (None, "counting"):
            raise ValueError(f"The warm start needs a counting task, not {task!r}; set `warmstart_steps: 0`.")

    reward_funcs, warnings_ = build_rewards(script_args)
    weights = getattr(training_args, "reward_weights", None)
    if weights is not None and len(weights) != len(reward_funcs):
        raise ValueError(
            f"`reward_weights` has {len(weights)} values for {len(reward_funcs)} rewards ({script_args.reward_funcs})."
        )
    resolve_resume_argument(training_args.resume_from_checkpoint, training_args.output_dir)
    return reward_funcs, warnings_


def _evaluates(training_args) -> bool:
    return training_args.eval_strategy != "no"


def _resolve_model_family(model_path: str, model_family: str):
    """The [`ModelFamily`] of the run: `tiny:<family>` names it, `auto` reads the checkpoint's `config.model_type`."""
    from trl_perception.families import AUTO, get_family, resolve_family, tiny_factory

    if model_path.startswith("tiny:"):
        arch = model_path.split(":", 1)[1]
        tiny_factory(arch)  # an unknown family fails here, listing the families with a tiny model
        return get_family(arch if model_family == AUTO else model_family)
    try:
        return resolve_family(model_family, model=model_path)
    except OSError as e:
        raise ValueError(
            f"Cannot read the configuration of {model_path!r} to recognise its model family ({e}). Check the path or "
            "Hub id, or set `model_family`."
        ) from None


def main(
    script_args: PerceptionScriptArguments, training_args, model_args, argv: list[str] | None = None
) -> dict[str, Any]:
    """
    Train: load the model, processor and data, score held-out rows, warm start, run GRPO, score again, and write the
    run directory (`run_manifest.json` first, then `metrics.json`/`metrics.csv` at every logging step and
    `reward_curve.png` at every save). With `resume_from_checkpoint`, the GRPO run continues from the checkpoint and
    the phases before it (warm start, held-out scoring before training) are not repeated: their results come from the
    run directory's `metrics.json`. `argv` (default `sys.argv[1:]`) is recorded in the manifest.
    """
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForImageTextToText
    from trl import get_peft_config

    from trl_perception import PerceptionGRPOTrainer
    from trl_perception.distributed import (
        checked_barrier,
        full_parameters,
        init_barrier_group,
        without_zero3_init,
        zero3_enabled,
    )
    from trl_perception.families import load_processor, resolve_family
    from trl_perception.run_files import (
        METRICS_JSON,
        RunFilesCallback,
        build_run_manifest,
        dataset_record,
        write_metrics,
        write_run_files,
        write_run_manifest,
    )
    from trl_perception.warmstart import heldout_greedy_scores, reward_name, supervised_warm_start

    state = PartialState()
    init_barrier_group()  # every process is here: a later barrier can fail fast instead of hanging
    started = time.time()
    # Everything that can fail without a model or data fails here, before anything is loaded.
    reward_funcs, warnings_ = validate_arguments(script_args, training_args, model_args)
    for warning in warnings_:
        state.print(f"[warning] {warning}")
    resume = resolve_resume_argument(training_args.resume_from_checkpoint, training_args.output_dir)

    # Model: `tiny:<family>` (e.g. `tiny:qwen3_vl`) builds that family's offline tiny model (tests, quickstart).
    model_path = model_args.model_name_or_path
    if model_path.startswith("tiny:"):
        from trl_perception.testing import build_tiny_model

        arch = model_path.split(":", 1)[1]
        model_path = os.path.join(training_args.output_dir, "initial_model")
        if state.is_main_process:
            with without_zero3_init():  # a partitioned build would wait for processes that do not build
                build_tiny_model(model_path, arch=arch, seed=training_args.seed)
        checked_barrier("building the tiny model on the main process")

    # Model family (`model_family: auto` reads config.model_type): rewards score in its frame, prompts use its syntax.
    family = resolve_family(training_args.model_family, model=model_path)
    training_args.model_family = family.name
    state.print(f"[family] {family.name}: boxes as {family.box_syntax} in the {family.box_frame!r} frame")

    # Model and processor are loaded here (not by the trainer) so that warm start and held-out scoring use them, and
    # before the data: under ZeRO-3 every process joins the partitioned load, however long its dataset build takes.
    # As `trl grpo` does: ModelConfig's dtype / attention / revision, then `model_init_kwargs` on top.
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    init_kwargs = {
        "dtype": dtype,
        "attn_implementation": model_args.attn_implementation,
        "revision": model_args.model_revision,
        **(training_args.model_init_kwargs or {}),
    }
    training_args.model_init_kwargs = None  # consumed here; the trainer receives an instantiated model
    # Under ZeRO-3 the model is created partitioned across the processes: a collective that all of them must join.
    checked_barrier("loading the model")
    model = AutoModelForImageTextToText.from_pretrained(model_path, **init_kwargs)
    # The trainer passes this processor's pixel budget to the colocated vLLM engine and to the rewards.
    processor = load_processor(model_path, family, script_args.min_pixels, script_args.max_pixels)

    # Dataset: the built-in builders write prompts for the family unless `dataset_kwargs.family` names one. The test
    # split serves held-out scoring and, with `eval_strategy` other than "no", the trainer's evaluation (as in
    # `trl grpo`).
    # Progress bars (dataset building, held-out scoring, warm start) on the main process only; `--disable_tqdm true`
    # turns them off, as it does the trainer's.
    progress = state.is_main_process and not training_args.disable_tqdm
    dataset_kwargs = {"default_family": family.name, **(script_args.dataset_kwargs or {})}
    with dataset_progress_bars(progress):
        train_dataset = load_perception_dataset(
            script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_config, **dataset_kwargs
        )
        if script_args.dataset_train_limit is not None:
            train_dataset = train_dataset.select(range(min(script_args.dataset_train_limit, len(train_dataset))))
        test_dataset = None
        if script_args.heldout_samples or _evaluates(training_args):
            test_dataset = load_perception_dataset(
                script_args.dataset_name, script_args.dataset_test_split, script_args.dataset_config, **dataset_kwargs
            )

    summary: dict[str, Any] = {"model": model_args.model_name_or_path, "dataset": script_args.dataset_name}
    if resume is not None:
        # The phases before GRPO ran in the first launch; their results are in its metrics.json.
        summary |= {
            k: v for k, v in _previous_summary(training_args.output_dir).items() if k in ("heldout", "warmstart")
        }
        summary["heldout"] = {k: v for k, v in summary.get("heldout", {}).items() if k in ("initial", "before")}
        if not summary["heldout"]:
            del summary["heldout"]
        summary["resumed_from"] = resume
        earlier = [k for k in ("warmstart", "heldout") if k in summary] or [f"none: no {METRICS_JSON} in output_dir"]
        state.print(
            f"[resume] from {resume}: the warm start and held-out scoring before training are not repeated "
            f"(earlier results kept: {', '.join(earlier)})"
        )
    if state.is_main_process:
        datasets_ = {
            "train": dataset_record(
                train_dataset, script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
            )
        }
        if test_dataset is not None:
            datasets_["test"] = dataset_record(
                test_dataset, script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
            )
        manifest = build_run_manifest(
            script_args=script_args,
            training_args=training_args,
            model_args=model_args,
            argv=list(sys.argv[1:] if argv is None else argv),
            datasets=datasets_,
            model=model,
            processor=processor,
            family=family.name,
            resumed_from=resume,
        )
        write_run_manifest(training_args.output_dir, manifest)
    heldout_rows = []
    if script_args.heldout_samples:
        # Held-out rewards get what the trainer passes its rewards: the family and the model-input image sizes.
        heldout_rows = [
            {**test_dataset[i], "model_family": family.name, **_model_image_sizes(processor, test_dataset[i])}
            for i in range(min(script_args.heldout_samples, len(test_dataset)))
        ]

    # Held-out scoring runs on the main process; under ZeRO-3 on every process (each generates for all rows, in step
    # with the others, and the main process reports), since every forward pass gathers weights from all of them.
    zero3 = zero3_enabled()

    def score(tag: str, scored_model, synced_gpus: bool = False):
        if not (zero3 or state.is_main_process):
            return
        result = heldout_greedy_scores(
            scored_model,
            processor,
            heldout_rows,
            reward_funcs,
            max_new_tokens=script_args.heldout_max_new_tokens,
            chat_template_kwargs=training_args.chat_template_kwargs,
            progress=progress,
            synced_gpus=synced_gpus,
        )
        if not state.is_main_process:
            return
        summary.setdefault("heldout", {})[tag] = {k: v for k, v in result.items() if k != "completions"}
        rewards = ", ".join(f"{name} {value:.3f}" for name, value in result["rewards"].items())
        state.print(f"[held-out {tag}] n={result['n']} greedy reward {result['reward']:.3f} ({rewards})")
        state.print(f"[held-out {tag}] sample completions: {result['completions'][:6]}")

    if heldout_rows and resume is None:
        with full_parameters(model) as full:  # ZeRO-3: gathered on every process, outside DeepSpeed
            score("initial", full)
    if script_args.warmstart_steps and resume is None:
        mode = "shuffled targets (format only)" if script_args.warmstart_shuffle_targets else "true targets"
        state.print(f"[warm start] {script_args.warmstart_steps} supervised steps on {mode}")
        # Every process trains the same steps; under ZeRO-3 on gathered weights, the main process's result kept.
        with full_parameters(model, write_back=True):
            losses = supervised_warm_start(
                model,
                processor,
                train_dataset,
                warmstart_target,
                steps=script_args.warmstart_steps,
                learning_rate=script_args.warmstart_learning_rate,
                batch_size=script_args.warmstart_batch_size,
                shuffle_targets=script_args.warmstart_shuffle_targets,
                seed=training_args.seed,
                log_every=max(1, script_args.warmstart_steps // 4),
                chat_template_kwargs=training_args.chat_template_kwargs,
                progress=progress,
            )
        summary["warmstart"] = {
            "steps": len(losses),
            "final_loss": losses[-1],
            "shuffle_targets": script_args.warmstart_shuffle_targets,
        }
    if heldout_rows and resume is None:
        with full_parameters(model) as full:
            score("before", full)

    if state.is_main_process and resume is None:
        # The phases so far are on disk before the first step: a run resumed from an early checkpoint finds them.
        write_metrics(training_args.output_dir, [], summary)

    # GRPO
    trainer = PerceptionGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=test_dataset if _evaluates(training_args) else None,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        # metrics.json / metrics.csv at every logging step, reward_curve.png at every save
        callbacks=[RunFilesCallback(training_args.output_dir, summary)],
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)

    if heldout_rows:
        # ZeRO-3: the trained model keeps DeepSpeed's hooks, which gather each layer's weights from every process.
        score("after", trainer.model, synced_gpus=zero3)
    if heldout_rows and state.is_main_process:
        if "before" not in summary["heldout"]:
            state.print("[held-out] no score before training to compare with (resumed without the first metrics.json)")
    if heldout_rows and state.is_main_process and "before" in summary["heldout"]:
        before, after = summary["heldout"]["before"], summary["heldout"]["after"]
        summary["heldout"]["improvement"] = after["reward"] - before["reward"]
        # Significance of the change in the first reward's success rate (rewards in {0, 1} count as accuracy).
        first = reward_name(reward_funcs[0])
        b, a = before["per_sample"][first], after["per_sample"][first]
        if all(v in (0.0, 1.0, None) for v in b + a):
            n = sum(v is not None for v in a)
            k_after = sum(v == 1.0 for v in a)
            test = two_proportion_test(sum(v == 1.0 for v in b), k_after, n)
            summary["heldout"]["accuracy_test"] = {"reward": first, "n": n, **test}
            counts = [row.get("count") for row in heldout_rows]
            if all(c is not None for c in counts):
                # The best any image-blind policy can do: always answer the most frequent count.
                k_blind = max(counts.count(c) for c in set(counts))
                summary["heldout"]["image_blind_baseline"] = {
                    "accuracy": k_blind / len(counts),
                    **two_proportion_test(k_blind, k_after, n),
                }
        state.print(
            f"[held-out] greedy reward before {before['reward']:.3f} -> after {after['reward']:.3f} "
            f"(+{summary['heldout']['improvement']:.3f})"
        )
        for key, label in (("accuracy_test", "after vs before"), ("image_blind_baseline", "after vs image-blind")):
            if key in summary["heldout"]:
                result = summary["heldout"][key]
                state.print(f"[held-out] {label}: z = {result['z']:.2f}, one-sided p = {result['p_value']:.2g}")
    summary["wall_time_s"] = time.time() - started
    if state.is_main_process:
        write_run_files(training_args.output_dir, trainer.state.log_history, summary)
        state.print(
            f"Run directory: {training_args.output_dir} (metrics.json, metrics.csv, reward_curve.png, run_manifest.json)"
        )
    _end(trainer)
    return summary


def _end(trainer) -> None:
    """Finish the trackers and destroy the process group: `Trainer.end()` (transformers >= 5.18), which is
    `accelerator.end_training()`, called directly on older versions."""
    end = getattr(trainer, "end", None)
    if callable(end):
        end()
    else:
        trainer.accelerator.end_training()


def _epilog() -> str:
    from trl_perception.families import get_family, list_families
    from trl_perception.shipped_recipes import list_accelerate_configs, list_recipes, trl_accelerate_configs

    trl_configs = [name for name in trl_accelerate_configs() if name not in list_accelerate_configs()]
    tiny = [name for name in list_families() if get_family(name).tiny]
    return "\n".join(
        [
            "recipe and launcher options (besides the flags above):",
            "  --config RECIPE        a YAML recipe file, or the name of a shipped one (`trl-perception recipes`",
            "                         lists them): the defaults of every flag above; flags given here override it.",
            *_indented("shipped: " + ", ".join(list_recipes()) + "."),
            "                         A dict-valued flag (--dataset_kwargs, --reward_kwargs, --model_init_kwargs, ...)",
            "                         given as a JSON object merges with the recipe's dict; a key set to null removes it.",
            "  --num_processes N      processes for `accelerate launch`; any other `accelerate launch` flag is passed on",
            "                         too, on the command line or as a recipe key (e.g. num_processes: 8).",
            "  --accelerate_config C  an accelerate config file, or the name of a shipped one or of one of TRL's:",
            *_indented(", ".join(list_accelerate_configs()) + "; TRL's: " + ", ".join(trl_configs) + "."),
            "",
            "models:   --model_name_or_path takes a Hub id, a checkpoint directory or tiny:<family>, the offline tiny",
            "          model of a family (" + ", ".join(tiny) + ").",
            "datasets: --dataset_name takes a builder (" + ", ".join(BUILDERS) + "),",
            "          a `save_to_disk` directory or a Hub id; --dataset_kwargs are the builder's loader arguments.",
            "rewards:  `trl-perception rewards` lists the reward names, their options and presets; --reward_modules",
            "          imports your own module so that the rewards it registers (@register_reward) can be named.",
            "",
            "example:  trl-perception train --config quickstart --max_steps 20 --num_processes 2",
        ]
    )


def _indented(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=118, initial_indent=" " * 25, subsequent_indent=" " * 25)


def make_parser(prog: str | None = None) -> PerceptionTrlParser:
    from trl import ModelConfig

    from trl_perception import PerceptionGRPOConfig

    parser = PerceptionTrlParser(
        (PerceptionScriptArguments, PerceptionGRPOConfig, ModelConfig),
        prog=prog,
        usage="%(prog)s [--config RECIPE] [--num_processes N] [--accelerate_config C] [--FLAG VALUE ...]",
        description="GRPO with perception rewards for vision-language models, launched through `accelerate launch`.\n"
        "Every flag below can also be a key of the YAML recipe. The end of this help describes --config,\n"
        "--num_processes, --accelerate_config, tiny:<family> models, the dataset builders and the rewards.",
        epilog=_epilog(),
    )
    action = parser._option_string_actions["--model_name_or_path"]
    action.help = f"{action.help or ''} `tiny:<family>` (e.g. tiny:qwen2_5_vl) builds a family's offline tiny model."
    return parser


def cli_main(argv: list[str] | None = None) -> None:
    """The training process: parse (a bad argument exits with one message, no traceback), validate, train."""
    parser = make_parser()
    try:
        # `--config NAME` as the shipped recipe's path, which the run manifest records.
        argv = resolve_config_argument(list(sys.argv[1:] if argv is None else argv))
        script_args, training_args, model_args = parser.parse_args_and_config(argv, fail_with_unknown_args=False)[:3]
        validate_arguments(script_args, training_args, model_args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    main(script_args, training_args, model_args, argv=argv)


if __name__ == "__main__":
    cli_main()
