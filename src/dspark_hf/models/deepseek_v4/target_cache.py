"""Cutting a DeepSeek-V4 target's cache back after a rejected draft token.

transformers' V4 compressed-attention layers (CSA / HCA) keep, besides their sliding-window keys, a
compressor state: a buffer of the token rows of the window not yet closed, the compressed entries
emitted so far and (CSA) the previous window's overlap slice. Their cache layers cannot ``crop``, so
transformers marks the whole model stateful and refuses assisted generation.

:func:`make_rewindable` replaces those layers of a target's cache by :class:`RewindableHCACache` /
:class:`RewindableCSACache`, which behave exactly as transformers' while past recording is off, and
while it is on (assisted generation) remember, per compressor, the state before the latest forward and
that forward's new rows, so that ``crop(-n)`` can undo its last ``n`` tokens exactly:

- sliding keys: all rows are kept until ``crop``, then cut to ``n`` fewer and back to the window;
- compressor ``name``: with ``b`` rows buffered before the forward and ``m`` of its new rows kept, the
  kept rows close ``k = (b + m) // rate`` windows: those ``k`` entries (emitted first, in order) stay,
  the later ones go; the buffer becomes the rows after the ``k`` windows; the overlap slice becomes
  that of window ``k`` (or the one before the forward when ``k = 0``).

A compressed entry depends only on the rows of its own window (and, for CSA, of the window before), so
the entries that stay are exactly those a forward over the kept tokens alone would have emitted.
"""

from __future__ import annotations

import torch
from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4CSACache, DeepseekV4HCACache


class _RewindableCompressedLayer:
    """The rollback logic shared by the HCA and CSA layers (mixed in before transformers' class)."""

    def _undo_log(self) -> dict:
        log = getattr(self, "_dspark_undo", None)
        if log is None:
            log = self._dspark_undo = {}
        return log

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.record_past:
            return super().update(key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.values = self.keys
        visible = min(self.cumulative_length, self.sliding_window - 1) + key_states.shape[-2]
        self.cumulative_length += key_states.shape[-2]
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = self.keys
        return self.keys[:, :, -visible:], self.keys[:, :, -visible:]

    def store_compression_weights(self, name: str, kv: torch.Tensor, gate: torch.Tensor):
        if self.record_past:
            compressed = self.compressed_kv[name]
            self._undo_log()[name] = {
                "buffer": (self.buffer_kv[name], self.buffer_gate[name]),
                "entry_count": self.entry_count[name],
                "entries": 0 if compressed is None else compressed.shape[1],
                "overlap": (getattr(self, "overlap_kv", {}).get(name), getattr(self, "overlap_gate", {}).get(name)),
                "new": (kv, gate),
                "windows": None,
            }
        return super().store_compression_weights(name, kv, gate)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise RuntimeError("A DeepSeek-V4 compressed-attention cache can only drop its last tokens (crop(-n)).")
        if not self.is_initialized:
            return
        drop = -tokens_to_remove
        if drop:
            self.keys = self.keys[:, :, :-drop]
            self.cumulative_length -= drop
            for name in list(self._undo_log()):
                self._rewind(name, drop)
        self._undo_log().clear()
        self.keys = self.keys[:, :, -(self.sliding_window - 1) :] if self.sliding_window > 1 else self.keys[:, :, :0]
        self.values = self.keys

    def _rewind(self, name: str, drop: int) -> None:
        undo = self._undo_log()[name]
        new_kv, new_gate = undo["new"]
        if drop > new_kv.shape[1]:
            raise RuntimeError(f"Cannot undo {drop} tokens of the {name}: its latest forward added {new_kv.shape[1]}.")
        keep = new_kv.shape[1] - drop
        old_kv, old_gate = undo["buffer"]
        rows_kv, rows_gate = new_kv[:, :keep], new_gate[:, :keep]
        if old_kv is not None and old_kv.shape[1]:
            rows_kv, rows_gate = torch.cat([old_kv, rows_kv], dim=1), torch.cat([old_gate, rows_gate], dim=1)
        closed = rows_kv.shape[1] // self.compress_rate
        self.entry_count[name] = undo["entry_count"] + closed
        if self.compressed_kv[name] is not None:
            self.compressed_kv[name] = self.compressed_kv[name][:, : undo["entries"] + closed]
        self.buffer_kv[name] = rows_kv[:, closed * self.compress_rate :]
        self.buffer_gate[name] = rows_gate[:, closed * self.compress_rate :]
        if hasattr(self, "overlap_kv"):
            if closed:
                window_kv, window_gate = undo["windows"]
                self.overlap_kv[name], self.overlap_gate[name] = window_kv[:, closed - 1].clone(), window_gate[:, closed - 1].clone()
            else:
                self.overlap_kv[name], self.overlap_gate[name] = undo["overlap"]


class RewindableHCACache(_RewindableCompressedLayer, DeepseekV4HCACache):
    """transformers' HCA cache layer that ``crop(-n)`` can roll back (see the module docstring)."""

    _layer_type = None  # do not replace transformers' registered class


class RewindableCSACache(_RewindableCompressedLayer, DeepseekV4CSACache):
    """transformers' CSA cache layer that ``crop(-n)`` can roll back (see the module docstring)."""

    _layer_type = None

    def update_overlap_state(self, name, chunk_kv, chunk_gate, head_dim):
        undo = self._undo_log().get(name)
        if self.record_past and undo is not None:
            undo["windows"] = (chunk_kv[..., :head_dim], chunk_gate[..., :head_dim])
        return super().update_overlap_state(name, chunk_kv, chunk_gate, head_dim)


_REWINDABLE = {DeepseekV4HCACache: RewindableHCACache, DeepseekV4CSACache: RewindableCSACache}


def make_rewindable(cache) -> int:
    """Replace the V4 compressed-attention layers of ``cache`` (a ``DynamicCache``) by rewindable ones
    holding the same state (same behaviour without past recording); return how many."""
    swapped = 0
    layers = getattr(cache, "layers", [])
    for i, layer in enumerate(layers):
        rewindable = _REWINDABLE.get(type(layer))
        if rewindable is not None:
            replacement = rewindable.__new__(rewindable)
            replacement.__dict__.update(layer.__dict__)
            layers[i] = replacement
            swapped += 1
    return swapped
