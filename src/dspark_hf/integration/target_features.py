"""Target features: the raw outputs of the target's decoder layers that a DSpark draft reads.

:class:`TargetFeatureTap` hooks only the layers named by ``target_layer_ids`` (``-1``: the embedding
output) on any decoder-only transformers model whose decoder layers can be reached, and keeps the
output of each hooked layer from the target's latest forward pass. These are the layers' own outputs,
``hidden_states[l + 1]`` in transformers' terms, never a normed final state, even for the last layer.
A draft whose target's layers output something else than ``[B, S, H]`` (DeepSeek-V4: one row per
hyper-connection stream) gives the tap its ``target_feature`` function to turn an output into ``[B, S, H]``.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from dspark_hf.errors import CompatibilityError


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The target's list of decoder layers (``model.get_decoder().layers`` or the ModuleList with
    ``num_hidden_layers`` entries)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    num_layers = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module
    raise CompatibilityError(f"Cannot find the decoder layers of {type(model).__name__}; DSpark needs a decoder-only model.")


class TargetFeatureTap:
    """Forward hooks on the target's ``layer_ids``; :meth:`features` concatenates their latest outputs.

    Only the most recent output of each layer is kept, so the tap never grows. The tap belongs to the
    thread that made it (the thread running this ``generate`` call): forwards of the same target in
    other threads (another ``generate`` call, speculative or plain) pass through its hooks unrecorded,
    so concurrent calls on one target each see their own features. Call :meth:`close` to remove the
    hooks (the candidate generator does this when it is released).
    """

    def __init__(self, target: nn.Module, layer_ids: list[int], reduce=None) -> None:
        self.layer_ids = list(layer_ids)
        self._reduce = reduce
        self._latest: dict[int, torch.Tensor] = {}
        self._owner = threading.get_ident()
        layers = find_decoder_layers(target)
        self._handles = []
        for layer_id in self.layer_ids:
            module = target.get_input_embeddings() if layer_id == -1 else layers[layer_id]
            self._handles.append(module.register_forward_hook(self._recorder(layer_id)))

    def _recorder(self, layer_id: int):
        latest = self._latest
        reduce = self._reduce
        owner = self._owner

        def record(module, args, output):
            if threading.get_ident() != owner:
                return
            output = (output[0] if isinstance(output, (tuple, list)) else output).detach()
            latest[layer_id] = output if reduce is None else reduce(output)

        return record

    def features(self) -> torch.Tensor:
        """``[B, S, len(layer_ids) * H]`` for the ``S`` positions of the target's last forward pass."""
        missing = [i for i in self.layer_ids if i not in self._latest]
        if missing:
            raise RuntimeError(f"The target has not run a forward pass through layers {missing} yet.")
        return torch.cat([self._latest[i] for i in self.layer_ids], dim=-1)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._latest.clear()
