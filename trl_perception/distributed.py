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
"""Multi-process phases of `trl-perception train` outside the trainer: barriers that fail fast instead of hanging,
and full parameters for the phases that run outside DeepSpeed under ZeRO-3.

Under DeepSpeed ZeRO-3 every parameter is partitioned across the processes as soon as the model is loaded
(`zero.Init`), and gathering a parameter is a collective that every process must join. Two rules follow:

- **Every collective is joined by every process.** Work done by the main process alone (building the offline tiny
  model, scoring held-out rows) must not create a partitioned model there; the other processes then wait at a
  [`checked_barrier`], which raises a `RuntimeError` naming the phase after `timeout` seconds instead of hanging
  until the process group's timeout (30 minutes by default).
- **Code outside DeepSpeed sees full parameters only inside [`full_parameters`].** The warm start and held-out
  scoring run on the model before (or after) the trainer wraps it; under ZeRO-3 each process holds a shard of every
  weight (a 0-element embedding: "Padding_idx must be within num_embeddings"), so these phases run inside a context
  that gathers the weights on every process, and, for the warm start, writes the main process's result back into
  the shards.

Without ZeRO-3 (one process, DDP, ZeRO-1/2) both helpers are no-ops or plain barriers.

Example:

```python
>>> from trl_perception.distributed import checked_barrier, zero3_enabled
>>> zero3_enabled()  # no DeepSpeed config in this process
False
>>> checked_barrier("a single process")  # nothing to wait for

```
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from typing import Any


# Seconds a process waits at a `checked_barrier` for the others before failing. The phases it guards take seconds
# (building the tiny model, writing the run manifest); raise it for slow shared file systems.
BARRIER_TIMEOUT_ENV = "TRL_PERCEPTION_BARRIER_TIMEOUT"
DEFAULT_BARRIER_TIMEOUT_S = 300.0

_GLOO_GROUP: Any = None


def zero3_enabled() -> bool:
    """Whether this process runs under DeepSpeed ZeRO-3 (transformers' view, set by the training arguments)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_barrier_group() -> None:
    """
    Create the gloo group [`checked_barrier`] uses (`monitored_barrier` is a gloo collective; NCCL runs get a side
    group). A collective itself: call it where every process certainly is, at start-up.
    """
    global _GLOO_GROUP
    if not _distributed() or _GLOO_GROUP is not None:
        return
    import torch.distributed as dist

    _GLOO_GROUP = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def barrier_timeout() -> float:
    """[`checked_barrier`]'s default timeout: `$TRL_PERCEPTION_BARRIER_TIMEOUT` seconds, else 300."""
    value = os.environ.get(BARRIER_TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_BARRIER_TIMEOUT_S
    except ValueError:
        raise ValueError(f"${BARRIER_TIMEOUT_ENV} must be a number of seconds, got {value!r}.") from None


def checked_barrier(phase: str, timeout: float | None = None) -> None:
    """
    Wait until every process reaches this point, or raise a `RuntimeError` naming `phase` and the processes that did
    not arrive after `timeout` seconds (default [`barrier_timeout`]). A process that skipped or is stuck in a
    collective then stops the run with that message instead of hanging it. A no-op in a single process.
    """
    if not _distributed():
        return
    import torch.distributed as dist

    init_barrier_group()
    seconds = barrier_timeout() if timeout is None else timeout
    try:
        dist.monitored_barrier(group=_GLOO_GROUP, timeout=datetime.timedelta(seconds=seconds), wait_all_ranks=True)
    except RuntimeError as e:
        raise RuntimeError(
            f"Process {dist.get_rank()} of {dist.get_world_size()} waited {seconds:.0f} s for the others at "
            f"'{phase}' ({e}). A process is stuck or skipped a collective (under ZeRO-3 every process must load the "
            f"model and join each gather). Raise ${BARRIER_TIMEOUT_ENV} if that phase is just slow."
        ) from None


@contextlib.contextmanager
def full_parameters(model, write_back: bool = False) -> Iterator[Any]:
    """
    `model` with full (gathered) parameters on every process under ZeRO-3; the model itself otherwise. Every process
    must enter it. With `write_back=True` the main process's changes to the parameters (a warm start) are written
    into every process's shards on exit. For a model before the trainer prepares it; a prepared one (with DeepSpeed's
    fetch hooks) goes through TRL's `unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator)`.
    """
    params = [p for p in model.parameters() if hasattr(p, "ds_id")] if zero3_enabled() else []
    if not params:
        yield model  # not partitioned: nothing to gather
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=0 if write_back else None):
        yield model


@contextlib.contextmanager
def without_zero3_init() -> Iterator[None]:
    """
    Build models in this context as ordinary full models even under ZeRO-3: transformers would otherwise create them
    partitioned (`zero.Init`), a collective that the other processes do not join when only the main process builds
    (the offline tiny model). Used where one process writes a checkpoint that every process then loads.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved
