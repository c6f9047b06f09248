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
"""trl-perception: Perception-R1 (GRPO with rule-based perception rewards) as a plugin on unmodified TRL."""

from typing import TYPE_CHECKING


__version__ = "0.1.0.dev0"

# Heavy imports (torch, transformers, trl) are deferred so `import trl_perception.geometry` stays cheap.
_LAZY = {
    "PerceptionGRPOConfig": ".config",
    "PerceptionGRPOTrainer": ".trainer",
}

__all__ = ["PerceptionGRPOConfig", "PerceptionGRPOTrainer", "__version__"]

if TYPE_CHECKING:
    from .config import PerceptionGRPOConfig
    from .trainer import PerceptionGRPOTrainer


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
