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
"""The `trl-perception` console script.

```bash
trl-perception train --config recipes/quickstart.yaml            # GRPO, launched through `accelerate launch`
trl-perception train --config recipes/detection_coco.yaml --num_processes 8 --accelerate_config zero2
trl-perception eval --task grounding --model PATH --dataset refcoco --data-dir ... --image-dir ...
trl-perception rewards                                            # the registered rewards, options, presets
trl-perception --version
trl-perception tiny-model PATH [--arch qwen3_vl]                  # write the offline tiny model
```

`train` mirrors `trl grpo`: a YAML recipe (`--config`) sets the defaults of the script, `PerceptionGRPOConfig` and
TRL's `ModelConfig`; command-line flags override it (a dict-valued flag given as a JSON object merges with the recipe's
dict, a key set to `null` removes it); keys the script does not know (`num_processes`, `accelerate_config` — a path or
one of TRL's packaged `zero1`/`zero2`/`zero3`/`fsdp1`/`fsdp2`/`multi_gpu`/`single_gpu` — and any other
`accelerate launch` flag) go to `accelerate launch`. Flags are never prefix-matched, and an argument that neither the
script nor `accelerate launch` knows is an error. Everything that can be checked without a model or data (rewards and
their options, the dataset builder and its arguments, the model family) is checked before `accelerate launch` starts;
each failure is one `error:` line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable
from typing import Any


def _train(argv: list[str]) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    from .scripts import train as train_script

    parser = train_script.make_parser(prog="trl-perception train")
    launch_parser = launch_command_parser()
    try:
        # Handles -h (exits). `cli_remaining` is an ordered subsequence of argv; `config_remaining` comes from the
        # YAML. Flags are never prefix-matched, so a typo is left over here and reported by `_check_launch_args`.
        script_args, training_args, model_args, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        launch_args = _recipe_launch_args(config_remaining, launch_parser)
        _check_launch_args(launch_args, launch_parser, parser, source="in the recipe")
        _check_launch_args(cli_remaining, launch_parser, parser, source="on the command line")
        launch_args = resolve_accelerate_config_argument(
            _split_equals(launch_args + cli_remaining, "--accelerate_config")
        )
        if not any(arg.startswith("--num_cpu_threads_per_process") for arg in launch_args):
            # accelerate launch pins OMP_NUM_THREADS to 1 unless told otherwise; give each process its share of the
            # cores (CPU runs are otherwise several times slower).
            processes = _launch_arg_value(launch_args, "--num_processes", default=1)
            launch_args += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes))]
        # Everything that can fail without a model or data fails now, before any process is launched.
        train_script.validate_arguments(script_args, training_args, model_args)
    except (ValueError, FileNotFoundError) as e:
        print(f"trl-perception train: error: {e}", file=sys.stderr)
        return 2
    script_argv = _subtract_subsequence(argv, cli_remaining)
    accelerate_args = launch_parser.parse_args([*launch_args, train_script.__file__, *script_argv])
    return _launch(launch_command, accelerate_args)


def _launch(launch_command: Callable[[Any], None], accelerate_args: Any) -> int:
    """Run `accelerate launch`; a failed training process has printed its error, so only its exit code is added."""
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    except ImportError:  # a torch build without torch.distributed launches one process only
        ChildFailedError = subprocess.CalledProcessError

    try:
        launch_command(accelerate_args)
    except subprocess.CalledProcessError as e:  # one process (accelerate's simple launcher)
        code = e.returncode if e.returncode and e.returncode > 0 else 1
    except ChildFailedError:  # several processes (torch.distributed.run)
        code = 1
    else:
        return 0
    print(
        f"trl-perception train: error: the training process failed (exit code {code}); see its error above.",
        file=sys.stderr,
    )
    return code


def _recipe_launch_args(args: list[str], launch_parser: argparse.ArgumentParser) -> list[str]:
    """Recipe keys for `accelerate launch` (`--key value` pairs): a switch (`debug: true`) is the bare flag."""
    result = []
    for flag, value in zip(args[::2], args[1::2]):
        action = launch_parser._option_string_actions.get(flag)
        if action is not None and action.nargs == 0:
            if value.lower() in ("true", "1", "yes"):
                result.append(flag)
            continue
        result += [flag, value]
    return result


def _check_launch_args(
    args: list[str], launch_parser: argparse.ArgumentParser, parser: argparse.ArgumentParser, source: str
) -> None:
    """Every argument the training script does not know must be an `accelerate launch` flag (with its value)."""
    i = 0
    while i < len(args):
        flag, has_value, _ = args[i].partition("=")
        action = launch_parser._option_string_actions.get(flag) if flag.startswith("-") else None
        if action is None or action.dest in ("help", "training_script", "training_script_args"):
            if flag == "--accelerate_config":
                i += 1 if has_value else 2
                continue
            if not flag.startswith("-"):
                raise ValueError(f"Unexpected argument {args[i]!r} {source}: every value follows its flag.")
            known = [*parser._option_string_actions, *launch_parser._option_string_actions, "--accelerate_config"]
            matches = difflib.get_close_matches(flag, [k for k in known if k.startswith("--")], n=1, cutoff=0.6)
            hint = f" (did you mean {matches[0]}?)" if matches else ""
            raise ValueError(
                f"Unknown option {flag} {source}{hint}: it is neither a flag of the training script "
                "(`trl-perception train --help`) nor of `accelerate launch` (`accelerate launch --help`)."
            )
        i += 1 if has_value or action.nargs == 0 else 2


def _split_equals(args: list[str], flag: str) -> list[str]:
    """`--flag=value` as `--flag value` (TRL's `resolve_accelerate_config_argument` looks for the bare flag)."""
    result = []
    for arg in args:
        result += arg.split("=", 1) if arg.startswith(flag + "=") else [arg]
    return result


def _launch_arg_value(args: list[str], flag: str, default: int) -> int:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{flag} expects a positive integer, got {value!r}.")
        return int(value)
    return default


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """`items` without the ordered `subsequence` (the launch flags already given to accelerate)."""
    it = iter(subsequence)
    current = next(it, None)
    result = []
    for item in items:
        if current is not None and item == current:
            current = next(it, None)
        else:
            result.append(item)
    return result


def _rewards(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trl-perception rewards",
        description="List the registered rewards with their options and presets, and the ready-made rewards for "
        "`trl grpo --reward_funcs`.",
        allow_abbrev=False,
    )
    parser.add_argument("names", nargs="*", help="Only these rewards (default: all).")
    parser.add_argument(
        "--reward_modules", nargs="+", default=[], help="Modules to import first, to list the rewards they register."
    )
    args = parser.parse_args(argv)
    from . import rewards
    from .rewards._registry import _REWARDS, reward_options
    from .scripts.train import import_reward_modules

    try:
        import_reward_modules(args.reward_modules)
        unknown = [name for name in args.names if name not in rewards.list_rewards()]
        if unknown:
            raise ValueError(
                f"Unknown reward {unknown[0]!r}; registered rewards: {', '.join(rewards.list_rewards())}."
            )
    except ValueError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print("Registered rewards: `reward_funcs: [NAME]`, options as `reward_kwargs: {NAME: {OPTION: VALUE}}`.")
    for name in args.names or rewards.list_rewards():
        factory = _REWARDS[name]
        listing = reward_options(name)
        module = getattr(factory, "__module__", "") or ""
        origin = "" if module.startswith("trl_perception.") else f"  [{module}]"
        print(f"\n{name}{origin}: {_summary(factory)}")
        options = [_format_option(option, default) for option, default in listing.options.items()]
        if not listing.complete:
            options.append("**options")
        _print_wrapped("options: " + (", ".join(options) or "none"))
        if listing.presets:
            _print_wrapped("presets (option `preset`): " + ", ".join(listing.presets))
    if not args.names:
        ready = [
            attr
            for attr in rewards.__all__
            if isinstance(getattr(rewards, attr), (rewards.PerceptionReward, rewards.TaskRouterReward))
        ]
        print("\nReady-made rewards with default options, for stock `trl grpo --reward_funcs` (dotted paths):")
        _print_wrapped(", ".join(f"trl_perception.rewards.{attr}" for attr in sorted(ready)), indent="  ")
        print(
            '\nYour own rewards: `@register_reward("my_name")` in your module `my_rewards.py`, then\n'
            "  `reward_modules: [my_rewards]` (or `--reward_modules my_rewards`) and `reward_funcs: [my_name]`, with its\n"
            "  options in `reward_kwargs: {my_name: {...}}`. A dotted path (`my_rewards.my_reward`) works too."
        )
    return 0


def _summary(factory: Any) -> str:
    """The first sentence of the factory's docstring, or of its class's."""
    doc = inspect.getdoc(factory)
    if not doc:
        try:
            doc = inspect.getdoc(typing.get_type_hints(factory).get("return"))
        except Exception:  # annotations that do not resolve
            doc = None
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 110 else sentence[:109] + "…"


def _print_wrapped(text: str, indent: str = "    ") -> None:
    print(textwrap.fill(text, width=118, initial_indent="  ", subsequent_indent=indent))


def _format_option(name: str, default: Any) -> str:
    return name if default is inspect.Parameter.empty else f"{name}={default!r}"


def _tiny_model(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trl-perception tiny-model", description="Write the offline tiny model.")
    parser.add_argument("path")
    from .families import get_family, list_families

    tiny = [name for name in list_families() if get_family(name).tiny]
    parser.add_argument("--arch", default="qwen2_5_vl", choices=tiny, help="Model family of the tiny model.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .testing import build_tiny_model

    print(build_tiny_model(args.path, arch=args.arch, seed=args.seed))
    return 0


def _eval(argv: list[str]) -> int:
    from .eval.cli import main as eval_main

    return eval_main(argv)


COMMANDS = {
    "train": (_train, "GRPO training from a YAML recipe (through accelerate launch)"),
    "eval": (_eval, "evaluate a checkpoint on grounding / counting / OCR / detection"),
    "rewards": (_rewards, "list the registered rewards, their options and presets"),
    "tiny-model": (_tiny_model, "write the offline tiny Qwen-VL model used by tests and the quickstart"),
}


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        print(f"trl-perception {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"trl-perception {__version__}", "", "usage: trl-perception <command> [options]", "", "commands:"]
        lines += [f"  {name:12s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        lines += ["", "`trl-perception <command> --help` describes a command; `--version` prints the version."]
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, _ = COMMANDS[argv[0]]
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
