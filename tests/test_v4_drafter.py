"""DeepSeek-V4 DSpark drafters: loading the ``mtp.*`` tensors of a V4 repo (only their shards), the
drafter's attention window, and lossless greedy generation with a tiny random ``deepseek_v4`` target.

Everything is float32 on tiny random configs (tests/v4_repo.py). Token equality is exact; the
cache-consistency check allows 1e-5 (float32 summation order differs between one call and two).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors
import torch
from transformers import GenerationConfig

import dspark_hf.models.deepseek_v4.checkpoint as v4_checkpoint
from dspark_hf import CheckpointError, CompatibilityError, DSparkDraft, UnsupportedUsageError
from dspark_hf.models.deepseek_v4 import DSparkV4Draft
from v4_repo import (DRAFTER_SHARD, EXPERTS, HIDDEN, NOISE_TOKEN, RAW_CONFIG, STAGES, TARGET_SHARDS, VOCAB, drafter_tensors,
                     tiny_v4_target, write_v4_repo)

NEW_TOKENS = 32


def _load(folder: Path) -> DSparkV4Draft:
    return DSparkDraft.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A synthesised V4 repo folder and the drafter tensors written into it."""
    tensors = drafter_tensors(seed=1)
    folder = write_v4_repo(tmp_path_factory.mktemp("v4") / "DeepSeek-V4-Tiny-DSpark", tensors)
    return folder, tensors


@pytest.fixture(scope="module")
def target():
    return tiny_v4_target(seed=0)


def _expected_module_tensors(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Where each released tensor must land in DSparkV4Draft (transformers' deepseek_v4 names)."""
    out = {}
    per_layer = {
        "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
        "hc_attn_fn": "attn_hc.fn", "hc_attn_base": "attn_hc.base", "hc_attn_scale": "attn_hc.scale",
        "hc_ffn_fn": "ffn_hc.fn", "hc_ffn_base": "ffn_hc.base", "hc_ffn_scale": "ffn_hc.scale",
        "attn.attn_sink": "self_attn.sinks", "attn.wq_a.weight": "self_attn.q_a_proj.weight",
        "attn.q_norm.weight": "self_attn.q_a_norm.weight", "attn.wq_b.weight": "self_attn.q_b_proj.weight",
        "attn.wkv.weight": "self_attn.kv_proj.weight", "attn.kv_norm.weight": "self_attn.kv_norm.weight",
        "attn.wo_a.weight": "self_attn.o_a_proj.weight", "attn.wo_b.weight": "self_attn.o_b_proj.weight",
        "ffn.gate.weight": "mlp.gate.weight", "ffn.gate.bias": "mlp.gate.e_score_correction_bias",
        "ffn.shared_experts.w1.weight": "mlp.shared_experts.gate_proj.weight",
        "ffn.shared_experts.w2.weight": "mlp.shared_experts.down_proj.weight",
        "ffn.shared_experts.w3.weight": "mlp.shared_experts.up_proj.weight",
    }
    for s in range(STAGES):
        for theirs, mine in per_layer.items():
            out[f"layers.{s}.{mine}"] = t[f"mtp.{s}.{theirs}"]
        out[f"layers.{s}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([t[f"mtp.{s}.ffn.experts.{e}.w1.weight"], t[f"mtp.{s}.ffn.experts.{e}.w3.weight"]]) for e in range(EXPERTS)])
        out[f"layers.{s}.mlp.experts.down_proj"] = torch.stack([t[f"mtp.{s}.ffn.experts.{e}.w2.weight"] for e in range(EXPERTS)])
    last = f"mtp.{STAGES - 1}."
    out.update({
        "main_proj.weight": t["mtp.0.main_proj.weight"], "main_norm.weight": t["mtp.0.main_norm.weight"],
        "norm.weight": t[last + "norm.weight"], "hc_head.hc_fn": t[last + "hc_head_fn"],
        "hc_head.hc_base": t[last + "hc_head_base"], "hc_head.hc_scale": t[last + "hc_head_scale"],
        "markov_head.markov_w1.weight": t[last + "markov_head.markov_w1.weight"],
        "markov_head.markov_w2.weight": t[last + "markov_head.markov_w2.weight"],
        "confidence_head.proj.weight": t[last + "confidence_head.proj.weight"],
    })
    return out


# -- loading -------------------------------------------------------------------------------------------


def test_released_layout_loads_from_the_mtp_shard_only(tmp_path, monkeypatch):
    tensors = drafter_tensors(seed=2)
    folder = write_v4_repo(tmp_path / "repo", tensors)
    for shard in TARGET_SHARDS:  # opening a target shard would now fail loudly (root ignores chmod)
        (folder / shard).write_bytes(b"not a safetensors file")
    opened = []
    real_open = safetensors.safe_open

    def recording_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", recording_open)
    draft = _load(folder)
    assert isinstance(draft, DSparkV4Draft)
    assert opened == [DRAFTER_SHARD]
    state = draft.state_dict()
    expected = _expected_module_tensors(tensors)
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    cfg = draft.config
    assert (cfg.block_size, cfg.mask_token_id, cfg.target_layer_ids, cfg.num_hidden_layers, cfg.num_target_layers) == (
        5, NOISE_TOKEN, [1, 2, 3], STAGES, RAW_CONFIG["num_hidden_layers"])
    assert cfg.layer_types == ["sliding_attention"] * STAGES and cfg.sliding_window == 8
    assert draft.confidence_head.proj.bias is None  # no bias in the checkpoint, none in the model


def test_confidence_bias_and_bfloat16_loading(tmp_path, target):
    folder = write_v4_repo(tmp_path / "repo", drafter_tensors(seed=4, confidence_bias=True))
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.bfloat16)
    assert draft.confidence_head.proj.bias is not None
    assert draft.layers[0].self_attn.q_b_proj.weight.dtype == torch.bfloat16
    # transformers keeps V4's mHC mixes, sinks, router bias and norms in float32; so does the drafter
    kept = (draft.layers[0].attn_hc.fn, draft.layers[0].self_attn.sinks, draft.layers[0].mlp.gate.e_score_correction_bias,
            draft.norm.weight)
    assert all(t.dtype == torch.float32 for t in kept)
    draft.bind_target_embeddings(target)  # a float32 target: mixed dtypes must still run
    with torch.no_grad():
        out = draft(input_ids=torch.tensor([[5] + [NOISE_TOKEN] * 4]), context_features=torch.randn(1, 6, 3 * HIDDEN))
    assert out.logits.shape == (1, 5, VOCAB) and bool(out.logits.isfinite().all())
    assert draft.confidence_logits(out.last_hidden_state, torch.tensor([[5, 6, 7, 8, 9]])).shape == (1, 5)
    auto = DSparkDraft.from_pretrained(folder, dtype="auto")  # the config's torch_dtype: bfloat16
    assert auto.layers[1].mlp.experts.gate_up_proj.dtype == torch.bfloat16
    with pytest.raises(UnsupportedUsageError, match="device_map"):
        DSparkDraft.from_pretrained(folder, device_map="auto")


def test_quantised_weights_are_dequantised(tmp_path):
    """An FP8 (e4m3, one e8m0 block scale) attention weight and FP4 (e2m1 pairs in int8, e8m0 scale per
    32 columns) expert weights, as the V4 checkpoints store them."""
    tensors = drafter_tensors(seed=5)
    name = "mtp.1.attn.wq_b.weight"
    fp8 = tensors[name].to(torch.float8_e4m3fn)
    tensors[name], tensors["mtp.1.attn.wq_b.scale"] = fp8, torch.tensor([[4.0]]).to(torch.float8_e8m0fnu)
    lut = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
    expert = "mtp.2.ffn.experts.1.w1.weight"
    rows, cols = tensors[expert].shape
    nibbles = torch.randint(0, 16, (rows, cols), generator=torch.Generator().manual_seed(0))
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).to(torch.uint8).view(torch.int8)
    tensors[expert], tensors["mtp.2.ffn.experts.1.w1.scale"] = packed, torch.full((rows, cols // 32), 0.5).to(torch.float8_e8m0fnu)
    draft = _load(write_v4_repo(tmp_path / "repo", tensors))
    assert torch.equal(draft.layers[1].self_attn.q_b_proj.weight, fp8.float() * 4)
    gate_rows = draft.layers[2].mlp.experts.gate_up_proj[1, :rows]
    assert torch.equal(gate_rows, lut[nibbles] * 0.5)


def _rewrite(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / DRAFTER_SHARD)
    change(tensors)
    save_file(tensors, str(folder / DRAFTER_SHARD))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != DRAFTER_SHARD}
    index["weight_map"].update({k: DRAFTER_SHARD for k in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _one_line_error(error_type, folder: Path, *fragments: str) -> None:
    with pytest.raises(error_type) as info:
        _load(folder)
    message = str(info.value)
    assert "\n" not in message and info.value.__cause__ is None, message
    for fragment in fragments:
        assert fragment in message, message


def test_wrong_shape_gives_one_clear_error(tmp_path):
    folder = write_v4_repo(tmp_path / "repo", drafter_tensors())
    _rewrite(folder, lambda t: t.update({"mtp.1.attn.wkv.weight": torch.zeros(24, HIDDEN)}))
    _one_line_error(CheckpointError, folder, "mtp.1.attn.wkv.weight", "(24, 32)", "(16, 32)")


def test_checkpoint_errors_are_one_line(tmp_path):
    missing = write_v4_repo(tmp_path / "missing", drafter_tensors())
    _rewrite(missing, lambda t: t.pop("mtp.2.attn.wkv.weight"))
    _one_line_error(CheckpointError, missing, "lacks 1 tensors", "layers.2.self_attn.kv_proj.weight")
    stray = write_v4_repo(tmp_path / "stray", drafter_tensors())
    _rewrite(stray, lambda t: t.update({"mtp.0.e_proj.weight": torch.zeros(4, 4)}))
    _one_line_error(CheckpointError, stray, "mtp.0.e_proj.weight")
    no_keys = write_v4_repo(tmp_path / "no_keys", drafter_tensors(),
                            {k: v for k, v in RAW_CONFIG.items() if k != "dspark_noise_token_id"})
    _one_line_error(CheckpointError, no_keys, "dspark_noise_token_id", "without a drafter")
    no_mtp = write_v4_repo(tmp_path / "no_mtp", {})
    _one_line_error(CheckpointError, no_mtp, "without a drafter", "mtp.*")


# -- the drafter's forward ---------------------------------------------------------------------------


def _bound(folder: Path, target) -> DSparkV4Draft:
    draft = _load(folder)
    draft.bind_target_embeddings(target)
    return draft


def test_context_cache_and_sliding_window(released, target):
    """Context fed in two calls through the cache equals one call; context rows older than the window
    (8) do not change the block, rows inside it do; shifting every position leaves the block unchanged,
    moving the block away from its context does not."""
    draft = _bound(released[0], target)
    gen = torch.Generator().manual_seed(0)
    n, window = 20, draft.config.sliding_window
    features = torch.randn(1, n, 3 * HIDDEN, generator=gen)
    block = torch.tensor([[7] + [NOISE_TOKEN] * 4])
    positions = torch.arange(n + 5)[None]
    with torch.no_grad():
        whole = draft(input_ids=block, context_features=features, position_ids=positions, past_key_values=draft.new_cache())
        cache = draft.new_cache()
        draft(input_ids=block, context_features=features[:, :13], position_ids=positions[:, :18], past_key_values=cache)
        split = draft(input_ids=block, context_features=features[:, 13:], position_ids=positions[:, 13:], past_key_values=cache)
        assert torch.allclose(split.logits, whole.logits, atol=1e-5, rtol=0)
        old, recent = features.clone(), features.clone()
        old[:, : n - window] += 1.0
        recent[:, n - 1] += 1.0
        out_old = draft(input_ids=block, context_features=old, position_ids=positions)
        out_recent = draft(input_ids=block, context_features=recent, position_ids=positions)
        shifted = draft(input_ids=block, context_features=features, position_ids=positions + 37)
        block_moved = draft(input_ids=block, context_features=features, position_ids=torch.cat([positions[:, :n], positions[:, n:] + 3], 1))
    assert torch.allclose(out_old.logits, whole.logits, atol=1e-5, rtol=0)
    assert (out_recent.logits - whole.logits).abs().max() > 1e-3
    # RoPE on queries, keys and (undone at the query position) values: only relative positions matter
    assert torch.allclose(shifted.logits, whole.logits, atol=1e-4, rtol=0)
    assert (block_moved.logits - whole.logits).abs().max() > 1e-3


# -- generation ---------------------------------------------------------------------------------------


def _prompts(count: int) -> list[torch.Tensor]:
    return [torch.randint(2, VOCAB - 1, (1, 7 + 4 * i), generator=torch.Generator().manual_seed(i)) for i in range(count)]


def _speculative(target, ids, draft, policy, new_tokens=NEW_TOKENS):
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, dspark_policy=policy)
    return target.generate(ids, assistant_model=draft, generation_config=config)


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
def test_greedy_generation_is_identical_with_the_drafter(released, target, policy):
    draft = _load(released[0])
    for ids in _prompts(3):
        plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert torch.equal(_speculative(target, ids, draft, policy), plain)
        assert draft.last_telemetry.new_tokens == NEW_TOKENS
        assert all(s.proposed == 5 and len(s.confidences) == 5 for s in draft.last_telemetry.steps)


def _force_towards(draft, continuation: torch.Tensor, wrong_every: int = 3) -> list[torch.Tensor]:
    """Make the drafter propose the target's own continuation, wrong at scheduled slots; record features."""
    original = draft.forward
    features = []

    def forward(**kwargs):
        out = original(**kwargs)
        q_len = kwargs["input_ids"].shape[1]
        for k, pos in enumerate(kwargs["position_ids"][0, -q_len:].tolist()):
            if pos + 1 < continuation.shape[0]:
                token = int(continuation[pos + 1])
                if (pos + k) % wrong_every == 0:
                    token = (token + 1) % VOCAB
                out.logits[0, k, token] += 1e4
        features.append(kwargs["context_features"])
        return out

    draft.forward = forward
    return features


def test_partial_acceptance_past_the_window_is_lossless(released, target):
    """Forced proposals are partly accepted, so the target's sliding-window cache (window 8) is cut back
    after rejections while the sequence runs far past the window; the output stays plain greedy."""
    draft = _load(released[0])
    ids = _prompts(2)[1]
    plain = target.generate(ids, max_new_tokens=40, do_sample=False)
    _force_towards(draft, plain[0])
    assert torch.equal(_speculative(target, ids, draft, "whole", 40), plain)
    steps = draft.last_telemetry.steps
    assert draft.last_telemetry.tau > 1.5
    assert {s.accepted for s in steps} - {0}, "no drafted token was ever accepted"
    assert all(s.accepted < s.verified for s in steps[:-1]), "a scheduled wrong slot was accepted"


def test_features_are_the_target_layer_outputs_averaged_over_streams(released, target):
    draft = _load(released[0])
    ids = _prompts(1)[0]
    outputs = {}
    hooks = [target.model.layers[i].register_forward_hook(lambda m, a, o, i=i: outputs.setdefault(i, o.detach()))
             for i in (1, 2, 3)]
    with torch.no_grad():
        target(ids)
    for hook in hooks:
        hook.remove()
    expected = torch.cat([outputs[i].mean(dim=2) for i in (1, 2, 3)], dim=-1)
    features = _force_towards(draft, torch.zeros(200, dtype=torch.long))
    _speculative(target, ids, draft, "whole", 4)
    assert features[0].shape == (1, ids.shape[1], 3 * HIDDEN)  # every prompt position (the anchor is the next)
    assert torch.equal(features[0], expected)


COMPRESSED_LAYERS = ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                     "compressed_sparse_attention"]


def _compressed_target():
    """A V4 target with CSA (rate 2) and HCA (rate 4) layers whose indexer keeps 4 entries, fewer than
    the sequences produce, so its top-k selection matters. 16 indexer heads: with 2 heads the ReLU
    scores often tie exactly, and transformers' top-k then breaks ties differently for one-token
    decoding and for a multi-token forward (seen with 5.23.0), which no speculative method can match."""
    return tiny_v4_target(layer_types=COMPRESSED_LAYERS, index_topk=4, index_n_heads=16, index_head_dim=32,
                          compress_rates={"compressed_sparse_attention": 2, "heavily_compressed_attention": 4})


def test_compressed_attention_target_is_lossless(released, monkeypatch):
    """transformers cannot crop V4's compressor state; dspark_hf swaps in rewindable cache layers
    (dspark_hf.models.deepseek_v4.target_cache), so rejected tokens are undone exactly, also inside partly filled
    compression windows. Without the swap the same run diverges or fails (negative control)."""
    target = _compressed_target()
    ids = _prompts(2)[1]
    plain = target.generate(ids, max_new_tokens=40, do_sample=False)
    for wrong_every in (3, 5):
        draft = _load(released[0])
        _force_towards(draft, plain[0], wrong_every)
        assert torch.equal(_speculative(target, ids, draft, "whole", 40), plain)
        steps = draft.last_telemetry.steps
        assert {s.accepted for s in steps[:-1]} - {0, 5}, "no round was partly accepted"
    assert torch.equal(_speculative(target, ids, _load(released[0]), "threshold:0.5", 40), plain)
    assert target._is_stateful  # transformers' class-level mark is left as it was
    monkeypatch.setattr("dspark_hf.models.deepseek_v4.target_cache.make_rewindable", lambda cache: 0)
    draft = _load(released[0])
    _force_towards(draft, plain[0], 3)
    try:  # transformers' own layers: the run diverges, or fails on the mis-sized cache
        diverged = not torch.equal(_speculative(target, ids, draft, "whole", 40), plain)
    except RuntimeError:
        diverged = True
    assert diverged


def test_stateful_targets_and_misfits_are_refused(released):
    from transformers import MambaConfig, MambaForCausalLM

    from dspark_hf.integration.fit_checks import check_target_can_roll_back

    mamba = MambaForCausalLM(MambaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, state_size=4))
    with pytest.raises(UnsupportedUsageError, match="cannot do that for MambaForCausalLM") as info:
        check_target_can_roll_back(mamba)
    assert "\n" not in str(info.value)
    draft = _load(released[0])
    wider = tiny_v4_target(hidden_size=48)
    with pytest.raises(CompatibilityError, match="hidden size is 32, target hidden size is 48"):
        _speculative(wider, _prompts(1)[0], draft, "whole", 4)
