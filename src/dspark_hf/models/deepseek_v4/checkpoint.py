"""Loading a DeepSeek-V4 drafter from the ``mtp.*`` tensors of a V4 repo folder.

A V4 repo holds the whole target, sharded, with ``model.safetensors.index.json``. The drafter is the
``mtp.<stage>.*`` tensors (one stage per drafter layer). Only the shards the index lists for them are
opened, with ``safetensors.safe_open``, and only those tensors are read.

Released names (DeepSeek's own, as vLLM's ``DSparkDeepseekV4ForCausalLM`` reads them):

- per stage ``i``: the V4 decoder layer in DeepSeek's naming (``attn_norm``, ``ffn_norm``,
  ``hc_attn_{fn,base,scale}``, ``hc_ffn_*``, ``attn.{wq_a,q_norm,wq_b,wkv,kv_norm,wo_a,wo_b}``,
  ``attn.attn_sink``, ``ffn.gate.{weight,bias}``, ``ffn.experts.E.w{1,2,3}``, ``ffn.shared_experts.w{1,2,3}``);
- on stage 0: ``main_proj``, ``main_norm`` (context projection);
- on the last stage: ``norm``, ``hc_head_{fn,base,scale}``, ``markov_head.markov_w{1,2}``,
  ``confidence_head.proj``.

Quantised weights (``X.weight`` with a sibling ``X.scale``: FP8 blocks, or FP4 experts packed two per
byte) are de-quantised with transformers' own FP8/FP4 de-quantiser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from dspark_hf.checkpoints.fetch import resolve_draft
from dspark_hf.checkpoints.files import CONFIG_NAME, SINGLE_WEIGHTS, WEIGHTS_INDEX, is_local_path, load_config_json
from dspark_hf.checkpoints.formats import DEEPSEEK_V4, V4_DRAFTER_PREFIX, checkpoint_format
from dspark_hf.errors import CheckpointError, UnsupportedUsageError
from dspark_hf.models.deepseek_v4.configuration import from_v4_repo_config
from dspark_hf.models.deepseek_v4.modeling import DeepseekV4RotaryEmbedding, DSparkV4Draft

DRAFTER_PREFIX = V4_DRAFTER_PREFIX

# Released per-stage names (after ``mtp.<i>.``) -> transformers deepseek_v4 names (after ``layers.<i>.``).
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "hc_attn_fn": "attn_hc.fn",
    "hc_attn_base": "attn_hc.base",
    "hc_attn_scale": "attn_hc.scale",
    "hc_ffn_fn": "ffn_hc.fn",
    "hc_ffn_base": "ffn_hc.base",
    "hc_ffn_scale": "ffn_hc.scale",
    "attn.attn_sink": "self_attn.sinks",
    "attn.wq_a.weight": "self_attn.q_a_proj.weight",
    "attn.q_norm.weight": "self_attn.q_a_norm.weight",
    "attn.wq_b.weight": "self_attn.q_b_proj.weight",
    "attn.wkv.weight": "self_attn.kv_proj.weight",
    "attn.kv_norm.weight": "self_attn.kv_norm.weight",
    "attn.wo_a.weight": "self_attn.o_a_proj.weight",
    "attn.wo_b.weight": "self_attn.o_b_proj.weight",
    "ffn.gate.weight": "mlp.gate.weight",
    "ffn.gate.bias": "mlp.gate.e_score_correction_bias",
    "ffn.shared_experts.w1.weight": "mlp.shared_experts.gate_proj.weight",
    "ffn.shared_experts.w2.weight": "mlp.shared_experts.down_proj.weight",
    "ffn.shared_experts.w3.weight": "mlp.shared_experts.up_proj.weight",
}
# Released drafter-level names (on stage 0 or the last stage) -> DSparkV4Draft names.
_HEAD_NAMES = {
    "main_proj.weight": "main_proj.weight",
    "main_norm.weight": "main_norm.weight",
    "norm.weight": "norm.weight",
    "hc_head_fn": "hc_head.hc_fn",
    "hc_head_base": "hc_head.hc_base",
    "hc_head_scale": "hc_head.hc_scale",
    "markov_head.markov_w1.weight": "markov_head.markov_w1.weight",
    "markov_head.markov_w2.weight": "markov_head.markov_w2.weight",
    "confidence_head.proj.weight": "confidence_head.proj.weight",
    "confidence_head.proj.bias": "confidence_head.proj.bias",
}
_STAGE = re.compile(r"^mtp\.(\d+)\.(.+)$")
_EXPERT = re.compile(r"^ffn\.experts\.(\d+)\.(w[123])\.weight$")


def is_v4_config(raw: dict[str, Any]) -> bool:
    """True for a DeepSeek-V4 repo's ``config.json`` (the drafter, if any, is its ``mtp.*`` tensors)."""
    return checkpoint_format(raw) == DEEPSEEK_V4


def drafter_weight_map(folder: Path) -> dict[str, str]:
    """``{released mtp.* name: shard file}`` from the folder's weight index (or its single weights file)."""
    index_path = folder / WEIGHTS_INDEX
    if index_path.is_file():
        weight_map = load_config_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path} is not a safetensors weight index: it has no weight_map.")
    elif (folder / SINGLE_WEIGHTS).is_file():
        from safetensors import safe_open

        with safe_open(folder / SINGLE_WEIGHTS, framework="pt") as f:
            weight_map = {name: SINGLE_WEIGHTS for name in f.keys()}
    else:
        raise CheckpointError(f"{folder} has no {WEIGHTS_INDEX} or {SINGLE_WEIGHTS}: no safetensors weights to load.")
    drafter = {name: shard for name, shard in weight_map.items() if name.startswith(DRAFTER_PREFIX)}
    if not drafter:
        raise CheckpointError(f"{folder} is a DeepSeek-V4 checkpoint without a drafter: its weights have no {DRAFTER_PREFIX}* tensors.")
    return drafter


def read_tensors(folder: Path, weight_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """The tensors of ``weight_map``, opening only its shards and reading only its names."""
    from safetensors import safe_open

    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    tensors: dict[str, torch.Tensor] = {}
    for shard, names in sorted(by_shard.items()):
        path = folder / shard
        if not path.is_file():
            raise CheckpointError(f"{folder}: the weight index puts {names[0]} in {shard}, which is missing.")
        with safe_open(path, framework="pt") as f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise CheckpointError(f"{folder}: the weight index puts {name} in {shard}, which does not hold it.")
                tensors[name] = f.get_tensor(name)
    return tensors


def dequantize(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A block-scaled FP8 weight, or FP4 (two e2m1 per byte, int8 storage) weight, as float32."""
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    return Fp8Dequantize(None)._dequantize_one(weight, scale, output_dtype=torch.float32)


def to_module_names(tensors: dict[str, torch.Tensor], num_stages: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Released ``mtp.*`` tensors -> ``DSparkV4Draft`` state-dict entries, and for each entry the released
    name it came from (for error messages). Experts are stacked into ``gate_up_proj`` / ``down_proj``."""
    state: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.endswith(".scale") and name.removesuffix(".scale") + ".weight" in tensors:
            continue  # consumed with its weight below
        scale = tensors.get(name.removesuffix(".weight") + ".scale") if name.endswith(".weight") else None
        if scale is not None:
            try:
                tensor = dequantize(tensor, scale)
            except (ValueError, RuntimeError) as err:
                raise CheckpointError(f"Cannot de-quantise {name} {tuple(tensor.shape)} with its scale {tuple(scale.shape)}: {err}") from None
        stage, rest = _split(name)
        if stage >= num_stages:
            raise CheckpointError(f"Unexpected drafter tensor {name}.")
        expert = _EXPERT.match(rest)
        if expert:
            experts.setdefault((stage, expert.group(2)), {})[int(expert.group(1))] = tensor
            continue
        if rest in _LAYER_NAMES:
            key = f"layers.{stage}.{_LAYER_NAMES[rest]}"
        elif rest in _HEAD_NAMES:
            key = _HEAD_NAMES[rest]
        else:
            raise CheckpointError(f"Unexpected drafter tensor {name}: not part of a DeepSeek-V4 DSpark drafter.")
        if key in state:
            raise CheckpointError(f"Drafter tensor {name} appears on two stages ({source[key]} and {name}).")
        state[key], source[key] = tensor, name
    for stage in range(num_stages):
        parts = {w: experts.get((stage, w), {}) for w in ("w1", "w2", "w3")}
        if not any(parts.values()):
            continue
        ids = sorted(parts["w1"])
        if any(sorted(p) != ids for p in parts.values()) or ids != list(range(len(ids))):
            raise CheckpointError(f"mtp.{stage}.ffn.experts.*: w1/w2/w3 are not present for the same experts 0..N-1.")
        try:
            gate_up = torch.stack([torch.cat([parts["w1"][e], parts["w3"][e]], dim=0) for e in ids])
            down = torch.stack([parts["w2"][e] for e in ids])
        except RuntimeError:
            raise CheckpointError(f"mtp.{stage}.ffn.experts.*: the experts' w1/w2/w3 shapes differ.") from None
        state[f"layers.{stage}.mlp.experts.gate_up_proj"] = gate_up
        source[f"layers.{stage}.mlp.experts.gate_up_proj"] = f"mtp.{stage}.ffn.experts.*.w1/w3.weight"
        state[f"layers.{stage}.mlp.experts.down_proj"] = down
        source[f"layers.{stage}.mlp.experts.down_proj"] = f"mtp.{stage}.ffn.experts.*.w2.weight"
    return state, source


def _split(name: str) -> tuple[int, str]:
    match = _STAGE.match(name)
    if match is None:
        raise CheckpointError(f"Unexpected drafter tensor {name}: expected mtp.<stage>.<name>.")
    return int(match.group(1)), match.group(2)


def _stages(names: list[str], folder: Path) -> int:
    stages = sorted({_split(n)[0] for n in names})
    if stages != list(range(len(stages))):
        raise CheckpointError(f"{folder}: the drafter's stages are {stages}; expected mtp.0 .. mtp.{len(stages) - 1}.")
    return len(stages)


def load_v4_drafter_from_folder(folder: str | os.PathLike, *, dtype: torch.dtype | None = None, device: Any = None):
    """``DSparkV4Draft`` from a local V4 repo folder (``config.json``, the weight index, the mtp shards).

    Args:
        dtype: dtype of the drafter's weights (default float32); transformers' V4 fp32-kept modules
            (mHC mixes, sinks, norms, router bias) stay float32 as in the target.
        device: where to put the drafter (default CPU).

    Every problem (not a V4 folder, no drafter, missing or unexpected tensors, a tensor whose shape
    does not match the config) raises one :class:`CheckpointError` line.
    """
    folder = Path(folder).expanduser()
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; it is not a DeepSeek-V4 checkpoint folder.")
    raw = load_config_json(config_path)
    if not is_v4_config(raw):
        raise CheckpointError(f"{folder} is not a DeepSeek-V4 checkpoint: model_type={raw.get('model_type')!r}.")
    weight_map = drafter_weight_map(folder)
    num_stages = _stages(list(weight_map), folder)
    rests = {_split(n)[1] for n in weight_map}
    config = from_v4_repo_config(
        raw, num_stages,
        confidence_head="confidence_head.proj.weight" in rests,
        confidence_head_bias="confidence_head.proj.bias" in rests,
        source=str(config_path),
    )
    state, source = to_module_names(read_tensors(folder, weight_map), num_stages)
    with torch.device("meta"):
        model = DSparkV4Draft(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{folder}: the drafter lacks {len(missing)} tensors, e.g. {missing[0]} (mtp.* names of stage 0..{num_stages - 1}).")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{folder}: unexpected drafter tensor {source[unexpected[0]]}.")
    for key, want in expected.items():
        if tuple(state[key].shape) != tuple(want.shape):
            raise CheckpointError(
                f"{folder}: {source[key]} has shape {tuple(state[key].shape)}, but config.json "
                f"(hidden_size={config.hidden_size}, head_dim={config.head_dim}, vocab_size={config.vocab_size}) "
                f"needs {tuple(want.shape)}."
            )
    dtype = dtype or torch.float32
    keep_fp32 = tuple(DSparkV4Draft._keep_in_fp32_modules_strict or ())
    for key, tensor in state.items():
        if tensor.is_floating_point() and expected[key].is_floating_point():
            state[key] = tensor.to(torch.float32 if any(part in keep_fp32 for part in key.split(".")) else dtype)
    model.load_state_dict(state, strict=True, assign=True)
    model.rotary_emb = DeepseekV4RotaryEmbedding(config)  # non-persistent buffers: computed, not loaded
    model.config.dtype = dtype
    model.name_or_path = str(folder)
    return model.to(device or "cpu").eval()


_HUB_KEYWORDS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


def load_v4_drafter(path_or_repo_id: str | os.PathLike, *model_args: Any, **kwargs: Any):
    """``DSparkV4Draft`` from a local V4 repo folder or a Hub id (``DSparkDraft.from_pretrained`` calls this).

    From the Hub, only ``config.json``, the weight index and the shards holding ``mtp.*`` are downloaded
    (:func:`dspark_hf.checkpoints.fetch.resolve_draft`). Keywords: ``dtype`` (a torch dtype, or ``"auto"`` for
    the checkpoint's ``torch_dtype``), ``device``, and the Hub keywords ``revision``, ``token``,
    ``cache_dir``, ``local_files_only``, ``force_download``.
    """
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
    device = kwargs.pop("device", None)
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KEYWORDS if k in kwargs}
    kwargs.pop("use_safetensors", None)
    if model_args or kwargs:
        raise UnsupportedUsageError(
            f"A DeepSeek-V4 drafter takes dtype=, device= and Hub keywords; got {sorted(kwargs) or list(model_args)}."
        )
    if is_local_path(path_or_repo_id):
        folder = Path(path_or_repo_id).expanduser()
    else:
        folder = resolve_draft(str(path_or_repo_id), **hub_kwargs).folder
    if dtype == "auto":
        raw = load_config_json(folder / CONFIG_NAME)
        dtype = getattr(torch, str(raw.get("dtype") or raw.get("torch_dtype") or "float32"))
    model = load_v4_drafter_from_folder(folder, dtype=dtype, device=device)
    model.name_or_path = str(path_or_repo_id)
    return model


def load_v4_drafter_state_dict(repo_id: str, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """The released ``mtp.*`` tensors of a DeepSeek-V4 Hub repo, read from the only shards that hold
    them (``config.json``, the weight index and those shards are downloaded; nothing else is read)."""
    resolved = resolve_draft(repo_id, **hub_kwargs)
    if resolved.kind != DEEPSEEK_V4:
        raise CheckpointError(f"{repo_id} is not a DeepSeek-V4 repo (model_type {resolved.config.get('model_type')!r}).")
    return read_tensors(resolved.folder, drafter_weight_map(resolved.folder))
