"""What training needs from the target for one sequence, computed online or read from a feature cache.

- ``features`` ``[S, len(layer_ids) * H]``: the chosen decoder layers' raw outputs (the draft's context,
  through :class:`~dspark_hf.integration.target_features.TargetFeatureTap`, exactly as at inference);
- ``final_hidden`` ``[S, H]``: the target's final normed hidden state, from which
  :func:`target_logits` rebuilds the target distribution of any position with its LM head.

:class:`FeatureCache` stores both in sharded safetensors files, keyed by a hash of the sequence's token
ids, so epochs after the first skip the target forward and several trainings on the same data (e.g.
DSpark and DFlash) share one cache. Self-distillation can fill it for free: :class:`GenerationRecorder`
keeps the layer outputs of the target's own generation forwards (every position but the last, which
training never needs: no anchor or target distribution sits on a sequence's last token).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dspark_hf.errors import DSparkError
from dspark_hf.integration.target_features import TargetFeatureTap, find_decoder_layers


@dataclass
class TargetOutputs:
    features: torch.Tensor
    final_hidden: torch.Tensor


def sequence_key(input_ids: list[int]) -> str:
    """Cache key of a token sequence."""
    return hashlib.sha1(json.dumps(list(map(int, input_ids))).encode()).hexdigest()[:20]


def _decoder(target):
    decoder = target.get_decoder() if hasattr(target, "get_decoder") else None
    if decoder is None:
        from dspark_hf.errors import CompatibilityError

        raise CompatibilityError(f"{type(target).__name__} has no get_decoder(); training needs the target's decoder.")
    return decoder


class OnlineTargetOutputs:
    """Runs the target (no grad) on one sequence and returns its :class:`TargetOutputs`."""

    def __init__(self, target, layer_ids: list[int]) -> None:
        self.target = target
        self.tap = TargetFeatureTap(target, layer_ids)
        self.decoder = _decoder(target)

    @torch.no_grad()
    def __call__(self, input_ids: list[int]) -> TargetOutputs:
        device = next(self.target.parameters()).device
        ids = torch.tensor([input_ids], dtype=torch.long, device=device)
        final = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
        return TargetOutputs(features=self.tap.features()[0], final_hidden=final[0])

    def close(self) -> None:
        self.tap.close()


class GenerationRecorder:
    """Hooks that keep every forward's chosen-layer outputs and final normed hidden state during a
    ``generate`` call; :meth:`outputs` stitches one row's positions together."""

    def __init__(self, target, layer_ids: list[int]) -> None:
        self.layer_ids = list(layer_ids)
        self.steps: dict[object, list[torch.Tensor]] = {i: [] for i in self.layer_ids}
        self.steps["final"] = []
        layers = find_decoder_layers(target)
        self.handles = []
        for layer_id in self.layer_ids:
            module = target.get_input_embeddings() if layer_id == -1 else layers[layer_id]
            self.handles.append(module.register_forward_hook(self._keep(layer_id)))
        self.handles.append(_decoder(target).register_forward_hook(self._keep("final")))

    def _keep(self, key):
        def hook(module, args, output):
            if key == "final":
                output = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            elif isinstance(output, (tuple, list)):
                output = output[0]
            self.steps[key].append(output.detach().cpu())

        return hook

    def outputs(self, row: int, start: int, length: int) -> TargetOutputs:
        """Positions ``start .. start + length - 1`` of batch row ``row`` over all recorded forwards."""
        def stitch(key):
            return torch.cat([t[row] for t in self.steps[key]], dim=0)[start : start + length]

        features = torch.cat([stitch(i) for i in self.layer_ids], dim=-1)
        return TargetOutputs(features=features, final_hidden=stitch("final"))

    def reset(self) -> None:
        for key in self.steps:
            self.steps[key] = []

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def target_logits(target, final_hidden: torch.Tensor) -> torch.Tensor:
    """The target's logits from its final normed hidden state (LM head, then Gemma-style soft-capping
    and Granite-style scaling where the config has them), in float32."""
    head = target.get_output_embeddings()
    logits = head(final_hidden.to(head.weight.dtype)).float()
    config = target.config.get_text_config()
    scaling = getattr(config, "logits_scaling", None)
    if scaling:
        logits = logits / scaling
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class FeatureCache:
    """Sharded safetensors cache of :class:`TargetOutputs` keyed by :func:`sequence_key`.

    ``cache.json`` records the layer ids it was built for (a cache built for other layers is refused).
    Shards are written atomically; :meth:`refresh` picks up shards written by other processes.
    """

    def __init__(self, directory: str | Path, layer_ids: list[int], dtype: torch.dtype = torch.bfloat16) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        meta = self.directory / "cache.json"
        if meta.is_file():
            stored = json.loads(meta.read_text())
            if stored["layer_ids"] != list(layer_ids):
                raise DSparkError(
                    f"Feature cache {self.directory} holds layers {stored['layer_ids']}, not {list(layer_ids)}; use another folder."
                )
            self.dtype = getattr(torch, stored["dtype"])
        else:
            meta.write_text(json.dumps({"layer_ids": list(layer_ids), "dtype": str(dtype).removeprefix("torch.")}))
        self._where: dict[str, Path] = {}
        self._open: dict[Path, object] = {}
        self.refresh()

    def refresh(self) -> None:
        for shard in sorted(self.directory.glob("*.safetensors")):
            if shard in self._open or shard in set(self._where.values()):
                continue
            with safe_open(str(shard), framework="pt") as handle:
                for name in handle.keys():
                    if name.endswith(".features"):
                        self._where[name.removesuffix(".features")] = shard

    def has(self, input_ids: list[int]) -> bool:
        return sequence_key(input_ids) in self._where

    def get(self, input_ids: list[int]) -> TargetOutputs:
        """The stored outputs, zero-padded to the sequence's length (the last position is never stored
        by self-distillation and never needed by training)."""
        key = sequence_key(input_ids)
        shard = self._where[key]
        handle = self._open.get(shard)
        if handle is None:
            handle = self._open[shard] = safe_open(str(shard), framework="pt")
        features = handle.get_tensor(f"{key}.features").float()
        final = handle.get_tensor(f"{key}.final_hidden").float()
        missing = len(input_ids) - features.shape[0]
        if missing > 0:
            features = torch.cat([features, features.new_zeros(missing, features.shape[1])])
            final = torch.cat([final, final.new_zeros(missing, final.shape[1])])
        return TargetOutputs(features=features, final_hidden=final)

    def write_shard(self, name: str, entries: dict[str, TargetOutputs]) -> None:
        """Store ``{key: outputs}`` as shard ``name`` (atomic)."""
        tensors = {}
        for key, out in entries.items():
            tensors[f"{key}.features"] = out.features.to("cpu", self.dtype).contiguous()
            tensors[f"{key}.final_hidden"] = out.final_hidden.to("cpu", self.dtype).contiguous()
        path = self.directory / f"{name}.safetensors"
        tmp = self.directory / f".{name}.tmp{os.getpid()}"
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
        for key in entries:
            self._where[key] = path

    def fill(self, compute, sequences: list[list[int]], shard_size: int = 32, progress: bool = True) -> None:
        """Compute and store the outputs of every sequence not cached yet; ``compute(ids) -> TargetOutputs``."""
        from tqdm.auto import tqdm

        missing = [ids for ids in sequences if not self.has(ids)]
        bar = tqdm(total=sum(map(len, missing)), desc="feature cache", unit="tok", unit_scale=True,
                   disable=not progress or not missing, dynamic_ncols=True)
        for b in range(0, len(missing), shard_size):
            entries = {}
            for ids in missing[b : b + shard_size]:
                entries[sequence_key(ids)] = compute(ids)
                bar.update(len(ids))
            self.write_shard(f"fill-{sequence_key(missing[b])}", entries)
        bar.close()
