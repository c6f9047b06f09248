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
"""Fuzz every registered reward (presets, main options) and the eval scorers with adversarial completions.

Properties: no exception, finite values in the documented range, no `eval`/`exec`, and a batch gives the values of
its rows scored one by one. Bounded (small example counts, inputs capped) so the suite stays fast; the 1,000,000-input
run with timings is `benchmarks/fuzz.py`.
"""

import builtins
import contextlib
import json
import math
import random

import pytest
from fuzz_corpus import PIECES, SPAM_UNITS, adversarial_completion, columns, ground_truth, reward_variants, value_range
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_perception.eval.scoring import score_counting, score_detection, score_grounding, score_ocr
from trl_perception.geometry import ImageGeometry
from trl_perception.parsing import list_box_syntaxes


VARIANTS = reward_variants()

completion_text = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=20).map("".join),
    st.text(max_size=60),
    st.tuples(st.sampled_from(SPAM_UNITS), st.integers(1, 2000)).map(lambda t: t[0] * t[1]),
)
completion = st.one_of(
    completion_text,
    completion_text.map(lambda t: [{"role": "assistant", "content": t}]),
    st.sampled_from([None, 7, [], [{"role": "assistant", "content": [{"type": "text", "text": None}]}]]),
)


@contextlib.contextmanager
def no_eval():
    """`eval`/`exec` raise while the block runs (only around the code under test: hypothesis itself uses `exec`)."""

    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec called on model output")

    saved = builtins.eval, builtins.exec
    builtins.eval = builtins.exec = refuse
    try:
        yield
    finally:
        builtins.eval, builtins.exec = saved


def check_values(values, low, high, n):
    assert len(values) == n
    for value in values:
        assert value is not None
        assert type(value) is float and math.isfinite(value), value
        assert low - 1e-9 <= value <= high + 1e-9, (value, low, high)


@pytest.mark.parametrize("label,reward,task", VARIANTS, ids=[v[0] for v in VARIANTS])
@settings(max_examples=25, deadline=None)
@given(completions=st.lists(completion, min_size=1, max_size=4))
def test_reward_fuzz(label, reward, task, completions):
    rows = [ground_truth(task) for _ in completions]
    logged = []
    with no_eval():
        batch = reward(
            prompts=[[{"role": "user", "content": "q"}]] * len(completions),
            completions=completions,
            log_metric=lambda k, v: logged.append((k, v)),
            **columns(rows),
        )
        singles = [reward(completions=[c], **columns([row]))[0] for c, row in zip(completions, rows)]
    low, high = value_range(reward)
    check_values(batch, low, high, len(completions))
    assert all(math.isfinite(v) for _, v in logged), logged
    assert batch == singles


@pytest.mark.parametrize("label,reward,task", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_reward_fuzz_seeded_corpus(label, reward, task):
    """The benchmark's generator (with cap-sized attacks), a fixed sample per variant."""
    rng = random.Random(label)
    completions = [adversarial_completion(rng, spam_rate=0.1) for _ in range(40)]
    with no_eval():
        values = reward(completions=completions, **columns([ground_truth(task)] * len(completions)))
    check_values(values, *value_range(reward), len(completions))


GEOMETRY = ImageGeometry(640, 480, 644, 476)


@settings(max_examples=150, deadline=None)
@given(
    text=completion_text,
    frame=st.sampled_from(["original", "resized", "grid_1000", "normalized"]),
    out_of_image=st.sampled_from(["keep", "clip", "reject"]),
    syntax=st.sampled_from([None, *list_box_syntaxes()]),
)
def test_scorer_fuzz(text, frame, out_of_image, syntax):
    with no_eval():
        records = [
            score_grounding(text, ground_truth("grounding"), GEOMETRY, frame, out_of_image, syntax),
            score_counting(text, ground_truth("counting"), syntax=syntax),
            score_ocr(text, ground_truth("ocr")),
            score_detection(
                text,
                ground_truth("detection"),
                GEOMETRY,
                frame,
                {1: "person", 17: "cat"},
                0.5,
                out_of_image,
                syntax=syntax,
            ),
        ]
    for record in records:
        assert type(record["score"]) is float and 0.0 <= record["score"] <= 1.0
        json.dumps(record, allow_nan=False)  # strict JSON: no NaN / Infinity anywhere
