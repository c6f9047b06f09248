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
from __future__ import annotations

from trl import GRPOTrainer

from .config import PerceptionGRPOConfig  # noqa: F401  (re-exported for type checkers)


class PerceptionGRPOTrainer(GRPOTrainer):
    """
    [`~trl.GRPOTrainer`] for perception tasks on vision-language models (Perception-R1).

    Datasets use TRL's native multimodal format: a conversational `prompt` plus an `image` (or `images`) column;
    every other column (ground-truth boxes, counts, text, image size) reaches the reward functions as keyword
    arguments.
    """

    _tag_names = ["trl", "grpo", "trl-perception"]
    _name = "PerceptionGRPO"
