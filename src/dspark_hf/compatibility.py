"""Checks that a draft fits its target, run on first use inside ``generate``.

Each mismatch raises one :class:`CompatibilityError` naming both values: hidden size, vocabulary,
number of decoder layers, and ``target_layer_ids`` outside the target's layers.
:func:`check_target_can_roll_back` refuses, in one line, targets whose cache cannot be cut back after a
rejected draft token.
"""

from __future__ import annotations

from torch import nn

from .errors import CompatibilityError, UnsupportedUsageError
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


def target_can_roll_back(target: nn.Module) -> bool:
    """Whether assisted decoding can cut the target's cache back after a rejection.

    transformers marks such targets ``_is_stateful``. DeepSeek-V4 is marked as a whole because of its
    compressed-attention layers (their compressor state is not rewindable); a V4 whose layers are all
    ``sliding_attention`` keeps only sliding-window caches, which transformers rolls back.
    """
    if not getattr(target, "_is_stateful", False):
        return True
    tcfg = target.config.get_text_config()
    return tcfg.model_type == "deepseek_v4" and set(tcfg.layer_types) == {"sliding_attention"}


def check_target_can_roll_back(target: nn.Module) -> None:
    if not target_can_roll_back(target):
        tcfg = target.config.get_text_config()
        kinds = sorted(set(getattr(tcfg, "layer_types", None) or [])) or [type(target).__name__]
        raise UnsupportedUsageError(
            f"Speculative decoding needs to cut the target's cache back after a rejected token, and transformers "
            f"cannot do that for {type(target).__name__} with {', '.join(kinds)} layers; only sliding-window-only "
            "DeepSeek-V4 targets are supported."
        )
