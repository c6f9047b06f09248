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
"""`PerceptionGRPOTrainer(use_vllm=True, vllm_mode="colocate")` on the real vLLM engine (the CPU build here).

One engine per model is shared by the module (vLLM start-up dominates the cost). Tests run in file order; the last
ones overwrite the policy on purpose.
"""

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from trl.data_utils import prepare_multimodal_messages
from trl.generation.vllm_generation import VLLMGeneration

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.families import QWEN_VISION_TOKENS as VISION_SPECIAL_TOKENS
from trl_perception.testing import build_tiny_model, build_tiny_processor
from trl_perception.vllm_utils import collapse_image_runs


pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

# vLLM's CPU build runs float32 checkpoints in bfloat16 (dtype "auto"; TRL passes no dtype), while the trainer's model
# is float32: per-token log-probabilities of the tiny model then agree to ~0.03 (bf16 has 8 mantissa bits and the
# log-probabilities are around -5.6). The updates below move them by 0.8-1.4, more than 5x this tolerance.
LOGPROB_ATOL = 0.06


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


# Single images and image pairs, with sizes below, inside and above the tiny pixel budget.
ROWS = [
    [_image(64, 48, 0)],
    [_image(300, 200, 1), _image(20, 30, 2)],
    [_image(97, 131, 3)],
    [_image(56, 56, 4), _image(200, 90, 5)],
]


def _dataset():
    prompts = [[{"role": "user", "content": f"Where is object {i}?"}] for i in range(len(ROWS))]
    return Dataset.from_dict({"prompt": prompts, "images": ROWS})


def _length_reward(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


def _args(tmp_path, **kwargs):
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_max_model_length": 512,
        "per_device_train_batch_size": 2,  # VLM training on CPU: keep batches tiny
        "num_generations": 2,
        "max_completion_length": 8,
        "max_steps": 2,
        "learning_rate": 0.1,  # a large step, so the synced policy differs measurably from the initial one
        "logging_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "seed": 0,
    }
    defaults.update(kwargs)
    return PerceptionGRPOConfig(**defaults)


@pytest.fixture(scope="module")
def cpu_kv_cache():
    # On the CPU build, `vllm_gpu_memory_utilization` is a fraction of host RAM and is checked against free memory;
    # a fixed 1 GiB KV cache keeps the tests independent of what else runs on the machine.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        yield


@pytest.fixture(scope="module")
def trainers(tmp_path_factory, cpu_kv_cache):
    root = tmp_path_factory.mktemp("colocate")
    built = {}
    for arch in ("qwen2_5_vl", "qwen2_vl"):
        path = build_tiny_model(root / arch, arch=arch)
        built[arch] = PerceptionGRPOTrainer(
            path, _length_reward, args=_args(root / f"run-{arch}"), train_dataset=_dataset()
        )
    return built


def _tokenize(trainer, rows):
    prompts = [
        prepare_multimodal_messages([{"role": "user", "content": "Describe."}], images=images) for images in rows
    ]
    return trainer._tokenize_prompts(prompts)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_vllm_prompt_is_processor_prompt(trainers, arch):
    trainer = trainers[arch]
    prompt_ids, images, _ = _tokenize(trainer, ROWS)
    image_token_id = trainer.processing_class.image_token_id
    llm = trainer.vllm_generation.llm
    from vllm import SamplingParams

    # What vLLM builds from one placeholder per image is token-for-token the processor's prompt.
    requests = [
        {"prompt_token_ids": collapse_image_runs(ids, image_token_id), "multi_modal_data": {"image": imgs}}
        for ids, imgs in zip(prompt_ids, images, strict=True)
    ]
    outputs = llm.generate(requests, SamplingParams(max_tokens=1), use_tqdm=False)
    assert [list(o.prompt_token_ids) for o in outputs] == [list(ids) for ids in prompt_ids]

    # The trainer's backend generates from exactly those prompts (it checks them itself, and returns the HF ids).
    got_ids, completions, logprobs, _ = trainer.vllm_generation.generate(prompt_ids, images, num_generations=1)
    assert got_ids == prompt_ids
    assert [len(c) for c in completions] == [8] * len(ROWS)
    assert all(len(lp) == 8 for lp in logprobs)

    # TRL 1.16's own path sends the expanded ids with the images, and vLLM expands them a second time
    # (huggingface/trl#6294). If this starts failing, vLLM or TRL fixed it and the workaround can go.
    stock_ids, _, _, _ = VLLMGeneration.generate(trainer.vllm_generation, prompt_ids, images, num_generations=1)
    assert all(len(s) > len(p) for s, p in zip(stock_ids, prompt_ids, strict=True))


def test_pixel_budget_mismatch_is_an_error(trainers):
    trainer = trainers["qwen2_5_vl"]
    # A trainer-side processor with 4x the checkpoint's max_pixels: vLLM (reading the checkpoint) gives big images
    # fewer tokens.
    other = build_tiny_processor("qwen2_5_vl", max_pixels=28 * 28 * 64)
    prompt = prepare_multimodal_messages([{"role": "user", "content": "Describe."}], images=[_image(300, 200, 1)])
    ids = other.apply_chat_template([prompt], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    # Per batch: the rollout is refused with the fix in the message.
    with pytest.raises(ValueError, match="different prompt.*preprocessor_config.json"):
        trainer.vllm_generation.generate([list(ids[0])], [[_image(300, 200, 1)]], num_generations=1)


def _fixed_sample(trainer):
    images = [_image(97, 131, 3), _image(300, 200, 1)]
    prompt = prepare_multimodal_messages([{"role": "user", "content": "Where is the cat?"}], images=images)
    completion = trainer.processing_class.tokenizer.encode("[12, 40, 88, 97]", add_special_tokens=False)
    return prompt, images, completion


def _hf_logprobs(trainer, prompt, completion):
    inputs = trainer.processing_class.apply_chat_template(
        [prompt], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    prompt_length = inputs["input_ids"].shape[1]
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
    logps = torch.log_softmax(logits[0, prompt_length - 1 : -1].float(), dim=-1)
    return logps.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1), list(inputs["input_ids"][0])


def _vllm_logprobs(trainer, prompt_ids, images, completion):
    from vllm import SamplingParams

    request = {
        "prompt_token_ids": collapse_image_runs(prompt_ids, trainer.processing_class.image_token_id) + completion,
        "multi_modal_data": {"image": images},
    }
    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    output = trainer.vllm_generation.llm.generate([request], params, use_tqdm=False)[0]
    scored = output.prompt_logprobs[-len(completion) :]
    return torch.tensor([entry[token].logprob for entry, token in zip(scored, completion, strict=True)])


def test_training_syncs_weights_into_vllm(trainers):
    trainer = trainers["qwen2_5_vl"]
    prompt, images, completion = _fixed_sample(trainer)

    hf_before, prompt_ids = _hf_logprobs(trainer, prompt, completion)
    vllm_before = _vllm_logprobs(trainer, prompt_ids, images, completion)
    torch.testing.assert_close(vllm_before, hf_before, atol=LOGPROB_ATOL, rtol=0)

    params_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()  # 2 steps: the second generation already runs on synced weights
    assert trainer.state.global_step == 2
    assert all(not torch.equal(params_before[n], p) for n, p in trainer.model.named_parameters())

    # Root cause of the stock failure on the CPU build: vLLM's CPU linear layers were re-packed after loading and
    # their `weight` replaced by an empty Parameter without `weight_loader`.
    linear = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    qkv = linear.language_model.model.layers[0].self_attn.qkv_proj
    assert qkv.weight.numel() == 0 and not hasattr(qkv.weight, "weight_loader")
    with pytest.raises(AttributeError, match="weight_loader"):
        VLLMGeneration.sync_weights(trainer.vllm_generation)

    # The trainer's own path: the next generation after an optimizer step pushes the weights.
    prompt_ids_batch, images_batch, fields = trainer._tokenize_prompts([prompt])
    trainer._generate_single_turn(prompt_ids_batch, images_batch, fields, num_generations=1)
    assert trainer._last_loaded_step == 2

    hf_after, _ = _hf_logprobs(trainer, prompt, completion)
    vllm_after = _vllm_logprobs(trainer, prompt_ids, images, completion)
    torch.testing.assert_close(vllm_after, hf_after, atol=LOGPROB_ATOL, rtol=0)
    assert (vllm_after - vllm_before).abs().max() > 5 * LOGPROB_ATOL


def test_vision_encoder_cache_is_reset_on_sync(trainers):
    # Same image before and after a sync that changes only the vision tower: vLLM must recompute its embeddings.
    trainer = trainers["qwen2_5_vl"]
    prompt, images, completion = _fixed_sample(trainer)
    _, prompt_ids = _hf_logprobs(trainer, prompt, completion)
    before = _vllm_logprobs(trainer, prompt_ids, images, completion)  # caches the encoder outputs
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("model.visual"):
                param.mul_(-1.5)
    trainer.vllm_generation.sync_weights()
    hf_after, _ = _hf_logprobs(trainer, prompt, completion)
    after = _vllm_logprobs(trainer, prompt_ids, images, completion)
    torch.testing.assert_close(after, hf_after, atol=LOGPROB_ATOL, rtol=0)
    assert (after - before).abs().max() > 5 * LOGPROB_ATOL


def test_vllm_never_samples_vision_tokens(trainers):
    from vllm import SamplingParams

    trainer = trainers["qwen2_5_vl"]
    tokenizer = trainer.processing_class.tokenizer
    vision_ids = {tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS}
    # Rig the policy so that a vision special token wins almost every draw, then sync it into vLLM.
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        model.model.language_model.norm.weight.zero_()
        model.model.language_model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        for sign, token_id in zip([1, -1, 1, -1, 1], sorted(vision_ids), strict=True):
            model.lm_head.weight[token_id, 0] = 200.0 * sign
    trainer.vllm_generation.sync_weights()

    prompt_ids, images, _ = _tokenize(trainer, ROWS)
    # Control: unconstrained sampling from the synced engine emits vision tokens.
    requests = [
        {
            "prompt_token_ids": collapse_image_runs(ids, trainer.processing_class.image_token_id),
            "multi_modal_data": {"image": imgs},
        }
        for ids, imgs in zip(prompt_ids, images, strict=True)
    ]
    raw = trainer.vllm_generation.llm.generate(requests, SamplingParams(max_tokens=8, seed=0), use_tqdm=False)
    assert any(set(o.outputs[0].token_ids) & vision_ids for o in raw)

    _, completions, _, _ = trainer.vllm_generation.generate(prompt_ids, images, num_generations=1)
    assert sum(len(c) for c in completions) == 8 * len(ROWS)
    assert not any(set(c) & vision_ids for c in completions)


def test_trainer_pixel_budget_reaches_the_engine_and_the_probe_guards_it(tmp_path, trainers):
    # Last in the module: it starts a third engine in this process.
    # The checkpoint's preprocessor says max_pixels = 28*28*16; the trainer resizes with 28*28*64. Stock TRL builds
    # vLLM from the checkpoint alone, so the engine would expand large images to fewer tokens than the trainer's ids
    # (the start-up probe then fails); PerceptionGRPOTrainer gives the engine its own budget.
    path = trainers["qwen2_5_vl"].model.name_or_path
    other = build_tiny_processor("qwen2_5_vl", max_pixels=28 * 28 * 64)
    trainer = PerceptionGRPOTrainer(
        path, _length_reward, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(), processing_class=other
    )
    prompt_ids, images, _ = _tokenize(trainer, ROWS)
    assert max(len(ids) for ids in prompt_ids) > max(len(ids) for ids in _tokenize(trainers["qwen2_5_vl"], ROWS)[0])
    got_ids, completions, _, _ = trainer.vllm_generation.generate(prompt_ids, images, num_generations=1)
    assert got_ids == prompt_ids and len(completions) == len(ROWS)
    trainer.train()  # every rollout batch passes the per-batch parity check

    # The probe catches a budget the engine does not use: ids built with the checkpoint's budget no longer match.
    checkpoint_ids, checkpoint_images, _ = _tokenize(trainers["qwen2_5_vl"], ROWS[1:2])
    with pytest.raises(ValueError, match="Start-up probe failed"):
        trainer.vllm_generation.check_image_processor(checkpoint_ids[0], checkpoint_images[0])


def test_lora_training_syncs_merged_weights_into_vllm(tmp_path, cpu_kv_cache):
    # LoRA (`--use_peft`) in colocate mode: vLLM must generate from the merged weights, and the sync must leave the
    # base weights bit-identical (TRL merges in place and un-merges, which rounds them: fix 5 of vllm_utils).
    from peft import LoraConfig

    path = build_tiny_model(tmp_path / "tiny", arch="qwen2_5_vl", seed=1)
    trainer = PerceptionGRPOTrainer(
        path,
        _length_reward,
        args=_args(tmp_path),
        train_dataset=_dataset(),
        peft_config=LoraConfig(r=8, lora_alpha=64),  # no target_modules: the family's language-model default
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert not any(".lora_" in n and "visual" in n for n, _ in model.named_parameters())
    prompt, images, completion = _fixed_sample(trainer)
    hf_before, prompt_ids = _hf_logprobs(trainer, prompt, completion)
    vllm_before = _vllm_logprobs(trainer, prompt_ids, images, completion)
    torch.testing.assert_close(vllm_before, hf_before, atol=LOGPROB_ATOL, rtol=0)

    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_B" in n}
    trainer.train()  # 2 steps: the second generation syncs the step-1 adapters into vLLM
    prompt_ids_batch, images_batch, fields = trainer._tokenize_prompts([prompt])
    trainer._generate_single_turn(prompt_ids_batch, images_batch, fields, num_generations=1)  # syncs step 2's
    assert trainer._last_loaded_step == 2

    assert all(not torch.equal(lora_before[n], p) for n, p in model.named_parameters() if n in lora_before)
    assert all(torch.equal(base_before[n], p) for n, p in model.named_parameters() if n in base_before)
    hf_after, _ = _hf_logprobs(trainer, prompt, completion)
    vllm_after = _vllm_logprobs(trainer, prompt_ids, images, completion)
    torch.testing.assert_close(vllm_after, hf_after, atol=LOGPROB_ATOL, rtol=0)
    assert (vllm_after - vllm_before).abs().max() > 5 * LOGPROB_ATOL
