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
"""Shared fixtures."""

import importlib
import re
import sys

import pytest


# Modules that hold registries (families, frames, box syntaxes, prompt styles, rewards, metrics, eval tasks); imported
# before a snapshot so that their built-in entries are part of it. All are cheap to import (no trainer, no vLLM).
REGISTRY_MODULES = (
    "trl_perception.families",
    "trl_perception.geometry",
    "trl_perception.parsing",
    "trl_perception.prompts",
    "trl_perception.rewards",
    "trl_perception.eval.metrics",
    "trl_perception.eval.tasks",
)


def registries() -> dict[str, dict]:
    """Every module-level `_UPPER_CASE` dict of the loaded trl_perception modules (the registries), by
    `module.name`."""
    for name in REGISTRY_MODULES:
        importlib.import_module(name)
    found = {}
    for name, module in list(sys.modules.items()):
        if name == "trl_perception" or name.startswith("trl_perception."):
            for attr, value in list(vars(module).items()):
                if re.fullmatch(r"_[A-Z][A-Z0-9_]*", attr) and type(value) is dict:
                    found[f"{name}.{attr}"] = value
    return found


@pytest.fixture
def isolated_registries():
    """Registrations made inside the test (families, frames, box syntaxes, prompt styles, rewards, metrics, eval tasks) are
    rolled back afterwards: the same dict objects get their previous entries back, in their previous order."""
    snapshot = {key: (registry, dict(registry)) for key, registry in registries().items()}
    yield
    for registry, saved in snapshot.values():
        registry.clear()
        registry.update(saved)
