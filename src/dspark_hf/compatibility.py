"""Checks that a draft fits its target, run on first use inside ``generate``.

Each mismatch raises one :class:`CompatibilityError` naming both values: hidden size, vocabulary,
number of decoder layers, and ``target_layer_ids`` outside the target's layers.
"""

from __future__ import annotations

from torch import nn

from .errors import CompatibilityError
from .target_features import find_decoder_layers


def check_draft_fits_target(draft: nn.Module, target: nn.Module) -> None:
    dcfg = draft.config
    tcfg = target.config.get_text_config()
    name = getattr(target.config, "_name_or_path", "") or type(target).__name__

    def mismatch(what: str, draft_value, target_value) -> CompatibilityError:
        return CompatibilityError(
            f"Draft does not fit target {name}: draft {what} is {draft_value}, target {what} is {target_value}."
        )

    if dcfg.target_hidden_size != tcfg.hidden_size:
        raise mismatch("hidden size", dcfg.target_hidden_size, tcfg.hidden_size)
    target_vocab = target.get_output_embeddings().weight.shape[0] if target.get_output_embeddings() is not None else tcfg.vocab_size
    if dcfg.vocab_size not in (tcfg.vocab_size, target_vocab):
        raise mismatch("vocabulary size", dcfg.vocab_size, tcfg.vocab_size)
    num_layers = len(find_decoder_layers(target))
    if dcfg.num_target_layers != num_layers:
        raise mismatch("target layer count (num_target_layers)", dcfg.num_target_layers, num_layers)
    bad = [i for i in dcfg.target_layer_ids if not -1 <= i < num_layers]
    if bad:
        raise mismatch("target_layer_ids", list(dcfg.target_layer_ids), f"layers -1..{num_layers - 1} (out of range: {bad})")
