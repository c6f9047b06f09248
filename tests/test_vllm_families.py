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
"""vLLM colocate for the newer families (Qwen3-VL, Qwen3.5 with its Gated DeltaNet layers, InternVL) on the real
vLLM CPU engine: vLLM's prompt is the trainer's processor prompt token for token, training syncs the weights into
the engine, and the family's vision tokens are never sampled.

One engine per family, built when its tests start and dropped after them (fixture parametrised at module scope).
"""

import gc

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from trl.data_utils import prepare_multimodal_messages

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.families import get_family, vision_token_ids
from trl_perception.testing import build_tiny_model
from trl_perception.vllm_utils import collapse_image_runs


pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

# vLLM's CPU build runs the float32 checkpoints in bfloat16; see tests/test_vllm_colocate.py.
LOGPROB_ATOL = 0.06


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


# Single images and pairs, below, inside and above the tiny pixel budget, far from square.
ROWS = [[_image(64, 48, 0)], [_image(300, 200, 1), _image(20, 30, 2)], [_image(97, 131, 3)], [_image(400, 40, 4)]]


def _length_reward(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen3_5", "internvl"])
def trainer(request, tmp_path_factory):
    family = request.param
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # a fixed 1 GiB KV cache, whatever else runs here
        root = tmp_path_factory.mktemp(family)
        path = build_tiny_model(root / "model", arch=family)
        prompts = [[{"role": "user", "content": f"Where is object {i}?"}] for i in range(len(ROWS))]
        args = PerceptionGRPOConfig(
            output_dir=str(root / "run"), use_vllm=True, vllm_mode="colocate", vllm_max_model_length=1024,
            per_device_train_batch_size=2, num_generations=2, max_completion_length=8, max_steps=2,
            learning_rate=0.1, logging_steps=1, bf16=False, gradient_checkpointing=False, report_to="none", seed=0,
        )  # fmt: skip
        dataset = Dataset.from_dict({"prompt": prompts, "images": ROWS})
        built = PerceptionGRPOTrainer(path, _length_reward, args=args, train_dataset=dataset)
        assert built.model_family.name == family
        yield built
    del built
    gc.collect()


def _collapse(trainer, ids):
    return collapse_image_runs(ids, trainer.processing_class.image_token_id, trainer.vllm_generation.image_wrapper_ids)


def _tokenize(trainer, rows, text="Describe."):
    prompts = [prepare_multimodal_messages([{"role": "user", "content": text}], images=images) for images in rows]
    return trainer._tokenize_prompts(prompts)


def _logprobs(trainer, prompt, images, completion):
    """Per-token log-probabilities of `completion` after `prompt`: `(transformers, vLLM, prompt ids)`."""
    from vllm import SamplingParams

    inputs = trainer.processing_class.apply_chat_template(
        [prompt], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    prompt_ids = inputs["input_ids"][0].tolist()
    input_ids = torch.cat([inputs["input_ids"], torch.tensor([completion])], dim=1)
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in kwargs:
        kwargs["mm_token_type_ids"] = torch.cat(
            [kwargs["mm_token_type_ids"], torch.zeros(1, len(completion), dtype=torch.long)], dim=1
        )
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs).logits
    model.train(was_training)
    logps = torch.log_softmax(logits[0, len(prompt_ids) - 1 : -1].float(), dim=-1)
    hf = logps.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)

    request = {"prompt_token_ids": _collapse(trainer, prompt_ids) + completion, "multi_modal_data": {"image": images}}
    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    output = trainer.vllm_generation.llm.generate([request], params, use_tqdm=False)[0]
    assert list(output.prompt_token_ids[: len(prompt_ids)]) == prompt_ids
    scored = output.prompt_logprobs[-len(completion) :]
    vllm = torch.tensor([entry[token].logprob for entry, token in zip(scored, completion, strict=True)])
    return hf, vllm


def test_vllm_prompt_is_processor_prompt(trainer):
    from vllm import SamplingParams

    prompt_ids, images, _ = _tokenize(trainer, ROWS)
    requests = [
        {"prompt_token_ids": _collapse(trainer, ids), "multi_modal_data": {"image": imgs}}
        for ids, imgs in zip(prompt_ids, images, strict=True)
    ]
    outputs = trainer.vllm_generation.llm.generate(requests, SamplingParams(max_tokens=1), use_tqdm=False)
    assert [list(o.prompt_token_ids) for o in outputs] == [list(ids) for ids in prompt_ids]
    # The trainer's backend checks every batch itself and returns the processor's ids.
    got_ids, completions, logprobs, _ = trainer.vllm_generation.generate(prompt_ids, images, num_generations=1)
    assert got_ids == prompt_ids and [len(c) for c in completions] == [8] * len(ROWS)


def test_training_syncs_weights_into_vllm(trainer):
    images = [_image(97, 131, 3), _image(300, 200, 1)]
    prompt = prepare_multimodal_messages([{"role": "user", "content": "Where is the cat?"}], images=images)
    completion = trainer.processing_class.tokenizer.encode("[12, 40, 88, 97]", add_special_tokens=False)
    hf_before, vllm_before = _logprobs(trainer, prompt, images, completion)
    torch.testing.assert_close(vllm_before, hf_before, atol=LOGPROB_ATOL, rtol=0)

    trainer.train()  # 2 steps; the second generation already runs on synced weights
    assert trainer.state.global_step == 2
    batch_ids, batch_images, fields = trainer._tokenize_prompts([prompt])
    trainer._generate_single_turn(batch_ids, batch_images, fields, num_generations=1)  # pushes the last step
    assert trainer._last_loaded_step == 2
    hf_after, vllm_after = _logprobs(trainer, prompt, images, completion)
    torch.testing.assert_close(vllm_after, hf_after, atol=LOGPROB_ATOL, rtol=0)
    assert (vllm_after - vllm_before).abs().max() > 5 * LOGPROB_ATOL


def test_vllm_never_samples_the_family_vision_tokens(trainer):
    from vllm import SamplingParams

    family = trainer.model_family.name
    tokenizer = trainer.processing_class.tokenizer
    vision_ids = sorted(vision_token_ids(tokenizer, family).values())
    assert len(vision_ids) == len(get_family(family).vision_tokens)
    # Rig the policy so that a vision special token wins almost every draw, then sync it into vLLM.
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        model.model.language_model.norm.weight.zero_()
        model.model.language_model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        for k, token_id in enumerate(vision_ids):
            model.lm_head.weight[token_id, 0] = 200.0 * (1 if k % 2 == 0 else -1)
    trainer.vllm_generation.sync_weights()

    prompt_ids, images, _ = _tokenize(trainer, ROWS)
    requests = [
        {"prompt_token_ids": _collapse(trainer, ids), "multi_modal_data": {"image": imgs}}
        for ids, imgs in zip(prompt_ids, images, strict=True)
    ]
    # Control: unconstrained sampling from the synced engine emits vision tokens.
    raw = trainer.vllm_generation.llm.generate(requests, SamplingParams(max_tokens=8, seed=0), use_tqdm=False)
    assert any(set(o.outputs[0].token_ids) & set(vision_ids) for o in raw)
    _, completions, _, _ = trainer.vllm_generation.generate(prompt_ids, images, num_generations=1)
    assert sum(len(c) for c in completions) == 8 * len(ROWS)
    assert not any(set(c) & set(vision_ids) for c in completions)
