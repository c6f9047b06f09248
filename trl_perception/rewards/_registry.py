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
"""Reward registry: a name -> factory table, filled by the `@register_reward` decorator."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


_REWARDS: dict[str, Callable[..., Any]] = {}


def register_reward(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """
    Register a reward factory (a class or a function returning a reward callable) under `name`.

    Example:

    ```python
    >>> from trl_perception.rewards import get_reward, register_reward
    >>> @register_reward("always_one")
    ... def always_one(**options):
    ...     def reward(prompts, completions, **kwargs):
    ...         return [1.0] * len(completions)
    ...     return reward
    >>> get_reward("always_one")(prompts=["p"], completions=["c"])
    [1.0]

    ```
    """

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REWARDS and _REWARDS[name] is not factory:
            raise ValueError(f"A reward named {name!r} is already registered.")
        _REWARDS[name] = factory
        return factory

    return decorator


def get_reward(name: str, /, **options: Any) -> Any:
    """
    Build the reward registered as `name`, configured with `options` (see docs/rewards.md for each reward's
    options). The result is a TRL reward callable whose `__name__` is `name` unless the option `name=` overrides it.

    Example:

    ```python
    >>> from trl_perception.rewards import get_reward
    >>> reward = get_reward("iou", frame="original")
    >>> reward(prompts=[None], completions=["[0, 0, 10, 10]"], boxes=[[[0, 0, 10, 20]]])
    [0.5]

    ```
    """
    if name not in _REWARDS:
        raise ValueError(f"Unknown reward {name!r}. Available rewards: {', '.join(list_rewards())}.")
    return _REWARDS[name](**options)


def list_rewards() -> list[str]:
    """Names of all registered rewards, sorted."""
    return sorted(_REWARDS)


@dataclass(frozen=True)
class RewardOptions:
    """
    The options a reward factory takes (see [`reward_options`]).

    Args:
        options (`dict[str, Any]`):
            Option name -> default (`inspect.Parameter.empty` when it has none), in signature order.
        complete (`bool`):
            Whether these are all its options; `False` when the factory forwards `**kwargs` the listing cannot follow.
        presets (`dict[str, dict[str, Any]]`, *optional*):
            The values of its `preset` option, when it has one (the factory's or its class's `presets` attribute).

    A factory that fixes some of its class's arguments lists them in a `fixed_options` attribute (e.g. `kind` for
    `iou_squared`); they are left out.
    """

    options: dict[str, Any]
    complete: bool
    presets: dict[str, dict[str, Any]] | None = None


def reward_options(reward: str | Callable[..., Any]) -> RewardOptions:
    """
    The options of a reward factory (a registered name, a factory or a class), read from the signatures: a factory
    that forwards `**options` to the class of its return annotation (`def _iou(**options) -> GroundingReward`) gets that
    class's options, and a class's `**kwargs` are followed up its bases (`GroundingReward` -> `PerceptionReward`).

    Example:

    ```python
    >>> from trl_perception.rewards._registry import reward_options
    >>> listing = reward_options("count_exact")
    >>> list(listing.options)[:2], listing.complete
    (['source', 'name'], True)

    ```
    """
    factory = _REWARDS[reward] if isinstance(reward, str) else reward
    options: dict[str, Any] = {}
    presets = None
    fixed = set(getattr(factory, "fixed_options", ()))
    for owner, function in _signature_chain(factory):
        if presets is None:
            presets = getattr(owner, "presets", None)
        parameters = list(inspect.signature(function).parameters.values())
        if isinstance(owner, type):
            parameters = parameters[1:]  # self
        for p in parameters:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed:
                options.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return RewardOptions(options, complete=True, presets=presets)
    return RewardOptions(options, complete=False, presets=presets)


def _signature_chain(factory: Callable[..., Any]) -> Iterator[tuple[Any, Callable[..., Any]]]:
    """(owner, function) pairs whose parameters make up `factory`'s options, following `**kwargs` where it can."""
    if not isinstance(factory, type):
        yield factory, factory
        try:
            factory = typing.get_type_hints(factory).get("return")
        except Exception:  # annotations that do not resolve: the listing stops here
            return
        if not isinstance(factory, type):
            return
    for klass in factory.__mro__:
        if klass is not object and "__init__" in vars(klass):
            yield klass, vars(klass)["__init__"]
