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
"""The offline tiny-model factory: loads in transformers, is deterministic, and generates in vLLM (CPU build)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from trl_perception.testing import MODEL_SIZES, QWEN_SPECIAL_TOKENS, build_tiny_model, tiny_config


PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many shapes?"}]}]


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_tiny_model_loads_and_generates_with_an_image(tmp_path, arch):
    path = build_tiny_model(tmp_path / arch, arch=arch)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    expected = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration"}
    assert type(model).__name__ == expected[arch]
    assert processor.tokenizer.padding_side == "left"
    # Token ids of the config match the tokenizer, so image features land on the image pads.
    tokenizer = processor.tokenizer
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in QWEN_SPECIAL_TOKENS)
    # Head dim >= 32: vLLM's CPU attention rejects smaller ones.
    assert model.config.text_config.hidden_size // model.config.text_config.num_attention_heads >= 32

    text = processor.apply_chat_template([PROMPT], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, images=[Image.new("RGB", (100, 80), "red")], return_tensors="pt")
    # The small pixel budget: 100x80 -> 112x84 -> a 6x8 patch grid -> 12 merged visual tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 8]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 12
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 5


def test_same_seed_same_weights_different_seed_different_weights(tmp_path):
    a = load_file(os.path.join(build_tiny_model(tmp_path / "a", seed=3), "model.safetensors"))
    b = load_file(os.path.join(build_tiny_model(tmp_path / "b", seed=3), "model.safetensors"))
    c = load_file(os.path.join(build_tiny_model(tmp_path / "c", seed=4), "model.safetensors"))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # Tokenizer files are byte-identical too (ids do not depend on hash randomisation).
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(tmp_path / "a" / name) as fa, open(tmp_path / "c" / name) as fc:
            assert json.load(fa) == json.load(fc)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_tiny_model_generates_in_vllm_with_an_image(tmp_path, arch):
    """Real vLLM (CPU build) engine, in a fresh process: same prompt length as HF, same first greedy tokens."""
    path = build_tiny_model(tmp_path / arch, arch=arch)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    image = Image.new("RGB", (100, 80), "red")
    image.save(tmp_path / "image.png")
    text = processor.apply_chat_template([PROMPT], add_generation_prompt=True, tokenize=False)[0]
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    hf_ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1] :].tolist()

    script = textwrap.dedent(
        f"""
        import json
        from PIL import Image
        from vllm import LLM, SamplingParams
        llm = LLM(model={str(path)!r}, max_model_len=512, dtype="float32", enforce_eager=True,
                  kv_cache_memory_bytes=64 * 2**20, seed=0)
        out = llm.generate([{{"prompt": {text!r}, "multi_modal_data": {{"image": Image.open({str(tmp_path / "image.png")!r})}}}}],
                           SamplingParams(temperature=0, max_tokens=6))[0]
        print("RESULT" + json.dumps({{"prompt_len": len(out.prompt_token_ids), "ids": list(out.outputs[0].token_ids)}}))
        """
    )
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=400)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT") :])
    # vLLM expands the image placeholder to the same number of tokens as the HF processor.
    assert result["prompt_len"] == inputs["input_ids"].shape[1]
    assert len(result["ids"]) == 6
    # vLLM's CPU build computes in reduced precision; the first greedy tokens still agree on this model.
    assert result["ids"][:2] == hf_ids[:2]


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_small_size_preset_is_a_benchmark_sized_model(arch):
    # Built on the meta device: the parameter count without allocating the 300 MB of weights.
    config = tiny_config(arch, **MODEL_SIZES["small"])
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    assert 50e6 < params < 150e6
    text = config.text_config
    assert text.hidden_size // text.num_attention_heads == 64  # vLLM's CPU attention needs >= 32


def test_size_presets_and_overrides(tmp_path):
    with pytest.raises(ValueError, match="Unknown model size 'huge'"):
        build_tiny_model(tmp_path / "x", size="huge")
    path = build_tiny_model(tmp_path / "tiny", num_attention_heads=4, num_hidden_layers=1)
    text = AutoModelForImageTextToText.from_pretrained(path).config.text_config
    assert (text.hidden_size, text.num_attention_heads, text.num_hidden_layers) == (128, 4, 1)
