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
trl-perception train --config quickstart                          # GRPO, launched through `accelerate launch`
trl-perception train --config detection_coco --num_processes 8 --accelerate_config zero3
trl-perception train --config my_recipe.yaml                      # a recipe file (e.g. a copied, edited one)
trl-perception recipes                                            # the shipped recipes and accelerate configs
trl-perception recipes copy quickstart [DEST]                     # copy one out for editing
trl-perception eval --config quickstart                           # the trained model on the recipe's held-out split
trl-perception rewards                                            # the registered rewards, options, presets
trl-perception --version
trl-perception tiny-model PATH [--arch qwen3_vl]                  # write the offline tiny model
```

`train` mirrors `trl grpo`: a YAML recipe (`--config`: a file, or the name of a recipe shipped in the package) sets
the defaults of the script, `PerceptionGRPOConfig` and TRL's `ModelConfig`; command-line flags override it (a
dict-valued flag given as a JSON object merges with the recipe's dict, a key set to `null` removes it); keys the script
does not know (`num_processes`, `accelerate_config` — a file, a shipped config (`zero2`, `zero2_cpu`, `zero3`, `zero3_cpu`)
or one of TRL's packaged `zero1`/`fsdp1`/`fsdp2`/`multi_gpu`/`single_gpu` — and any other `accelerate launch` flag) go to
`accelerate launch`. Flags are never prefix-matched, and an argument that neither the script nor `accelerate launch`
knows is an error. Everything that can be checked without a model or data (rewards and their options, the dataset
builder and its arguments, the model family) is checked before `accelerate launch` starts; each failure is one
`error:` line and a non-zero exit status.
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
from typing import Any


def _train(argv: list[str]) -> int:
    from accelerate.commands.launch import launch_command_parser

    from .scripts import train as train_script

    parser = train_script.make_parser(prog="trl-perception train")
    launch_parser = launch_command_parser()
    try:
        # `--config quickstart` names a shipped recipe; the training process gets its path.
        argv = train_script.resolve_config_argument(argv)
        # Handles -h (exits). `cli_remaining` is an ordered subsequence of argv; `config_remaining` comes from the
        # YAML. Flags are never prefix-matched, so a typo is left over here and reported by `_check_launch_args`.
        script_args, training_args, model_args, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        launch_args = _recipe_launch_args(config_remaining, launch_parser)
        _check_launch_args(launch_args, launch_parser, parser, source="in the recipe")
        _check_launch_args(cli_remaining, launch_parser, parser, source="on the command line")
        launch_args = _resolve_accelerate_config(_split_equals(launch_args + cli_remaining, "--accelerate_config"))
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
    launch_argv = [*launch_args, train_script.__file__, *script_argv]
    launch_parser.parse_args(launch_argv)  # a bad `accelerate launch` value exits here, before anything starts
    return _launch(launch_argv, output_dir=training_args.output_dir)


# Signals `trl-perception train` passes on to the training processes. SIGINT too: they run in their own process group,
# which the terminal's Ctrl-C no longer reaches directly.
_FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
# Seconds the training processes get to exit after a forwarded signal before the rest of their group is killed.
STOP_GRACE_S = 20.0


def _launch(launch_argv: list[str], output_dir: str) -> int:
    """
    Run `accelerate launch` (through `trl_perception.scripts.launch`) in a new process group and wait for it. A
    SIGINT/SIGTERM/SIGHUP/SIGQUIT to this command goes to the whole group, so stopping the command stops every
    training process instead of leaving them to train on; whatever is still running [`STOP_GRACE_S`] seconds later is
    killed. A failed training process has printed its error, so only one line is added.
    """
    import signal
    import time

    command = [sys.executable, "-m", "trl_perception.scripts.launch", *launch_argv]
    child = subprocess.Popen(command, process_group=0)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        _signal_group(child.pid, signum)

    previous = {}
    for name in _FORWARDED_SIGNALS:
        signum = getattr(signal, name, None)
        # A signal this command ignores stays ignored (nohup's SIGHUP, SIGINT of a background job): the run goes on.
        if signum is None or signal.getsignal(signum) == signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, forward)
    deadline = None
    try:
        # Poll, so that a group that ignores the forwarded signal is killed after the grace period.
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE_S
                if deadline is not None and time.monotonic() > deadline:
                    _signal_group(child.pid, signal.SIGKILL)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        _stop_group(child.pid, STOP_GRACE_S)
        name = signal.Signals(received[0]).name
        print(
            f"trl-perception train: stopped by {name}. Continue from the last complete checkpoint with "
            f"--resume_from_checkpoint true (checkpoints of {output_dir} without trainer_state.json are skipped).",
            file=sys.stderr,
        )
        return 128 + received[0]
    if code == 0:
        return 0
    code = code if code > 0 else 128 - code  # killed by a signal that did not come through this command
    print(
        f"trl-perception train: error: the training process failed (exit code {code}); see its error above.",
        file=sys.stderr,
    )
    return code


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):  # the group has exited
        pass


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group `pgid`."""
    import psutil

    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _stop_group(pgid: int, grace_s: float) -> None:
    """Wait up to `grace_s` seconds for the process group `pgid` to exit, then kill what is left of it."""
    import signal
    import time

    deadline = time.monotonic() + grace_s
    while _group_members(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            return
        time.sleep(0.2)


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


def _resolve_accelerate_config(args: list[str]) -> list[str]:
    """`--accelerate_config C` as accelerate's `--config_file PATH`: C is a file, a shipped config (`zero2_cpu`) or one
    of TRL's packaged configs (`zero1`, `fsdp2`, ...). Given twice (recipe, then command line), the last one wins."""
    from .shipped_recipes import accelerate_config_path

    value, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--accelerate_config":
            if i + 1 >= len(args):
                raise ValueError("--accelerate_config expects a file or a config name (`zero2_cpu`, `zero3`, ...).")
            value = args[i + 1]
            i += 2
            continue
        rest.append(args[i])
        i += 1
    return rest if value is None else ["--config_file", accelerate_config_path(value), *rest]


def _split_equals(args: list[str], flag: str) -> list[str]:
    """`--flag=value` as `--flag value`."""
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


def _recipes(argv: list[str]) -> int:
    from . import shipped_recipes

    parser = argparse.ArgumentParser(
        prog="trl-perception recipes",
        description="The recipes shipped in the package: task recipes (`train --config NAME`) and accelerate/DeepSpeed "
        "configs (`train --accelerate_config NAME`). Without a command, list them.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="{list,show,path,copy}")
    commands.add_parser("list", help="list the shipped recipes and configs (the default)", allow_abbrev=False)
    show = commands.add_parser("show", help="print a recipe", allow_abbrev=False)
    path = commands.add_parser("path", help="print a recipe's path in the package", allow_abbrev=False)
    copy = commands.add_parser("copy", help="copy a recipe out for editing", allow_abbrev=False)
    for sub in (show, path, copy):
        sub.add_argument("name", help="a recipe or accelerate config name (`quickstart`, `zero2_cpu`)")
    copy.add_argument("dest", nargs="?", default=None, help="a file or folder (default: ./NAME.yaml)")
    copy.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            print(shipped_recipes.shipped_file(args.name).read_text(encoding="utf-8"), end="")
        elif args.command == "path":
            print(shipped_recipes.shipped_file(args.name))
        elif args.command == "copy":
            accelerate = shipped_recipes.shipped_file(args.name).parent == shipped_recipes.ACCELERATE_DIR
            target = shipped_recipes.copy_recipe(args.name, args.dest, force=args.force)
            use = f"--config RECIPE --accelerate_config {target}" if accelerate else f"--config {target}"
            print(f"Copied {args.name} to {target}; edit it, then: trl-perception train {use}")
        else:
            _list_recipes()
    except (FileNotFoundError, FileExistsError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 0


def _list_recipes() -> None:
    import yaml

    from .shipped_recipes import (
        ACCELERATE_DIR,
        RECIPES_DIR,
        describe,
        list_accelerate_configs,
        list_recipes,
        trl_accelerate_configs,
    )

    print("Task recipes (`trl-perception train --config NAME`):")
    for name in list_recipes():
        recipe = yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8")) or {}
        trains = f"{recipe.get('model_name_or_path', '?')} on {recipe.get('dataset_name', '?')}"
        print(f"  {name:28s} {trains}")
        print(
            textwrap.fill(
                describe(RECIPES_DIR / f"{name}.yaml"), 118, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
        )
    print("\nAccelerate/DeepSpeed configs (`--accelerate_config NAME`):")
    for name in list_accelerate_configs():
        print(
            textwrap.fill(
                describe(ACCELERATE_DIR / f"{name}.yaml"),
                118,
                initial_indent=f"  {name:28s} ",
                subsequent_indent=" " * 31,
            )
        )
    others = [name for name in trl_accelerate_configs() if name not in list_accelerate_configs()]
    _print_wrapped("TRL's packaged configs, by name too: " + ", ".join(others))
    print(
        f"\nShipped in {RECIPES_DIR}.\n"
        "A name that is not a file is one of these; a path (`--config my_recipe.yaml`) is a file.\n"
        "Edit a copy: `trl-perception recipes copy quickstart [DEST]`, then `trl-perception train --config "
        "quickstart.yaml`.\n`trl-perception recipes show NAME` prints one; `recipes path NAME` gives its path."
    )


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
    "eval": (_eval, "evaluate a checkpoint: a recipe's held-out split (--config) or any benchmark split"),
    "recipes": (_recipes, "list the shipped recipes and accelerate configs; show or copy one out for editing"),
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
