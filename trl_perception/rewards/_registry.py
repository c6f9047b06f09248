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

from collections.abc import Callable
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
    Build the reward registered as `name`, configured with `options` (see the README's "Perception rewards" section for each reward's
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
