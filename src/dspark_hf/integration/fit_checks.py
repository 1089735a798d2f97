"""Checks that a draft fits its target, run on first use inside ``generate``.

Each mismatch raises one :class:`CompatibilityError` naming both values: hidden size, vocabulary,
number of decoder layers, and ``target_layer_ids`` outside the target's layers.
:func:`check_target_can_roll_back` refuses, in one line, targets whose cache cannot be cut back after a
rejected draft token.
"""

from __future__ import annotations

from torch import nn

from dspark_hf.errors import CompatibilityError, UnsupportedUsageError
from dspark_hf.integration.target_features import find_decoder_layers
from dspark_hf.models.deepseek_v4 import target_cache


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


def check_config_fits_target(draft, target_config, name: str) -> None:
    """Raise :class:`CompatibilityError` when a draft with config ``draft`` (a ``DSparkConfig``) cannot
    serve a target with ``target_config``: the checks of :func:`check_draft_fits_target` on the configs
    alone, so that they run before any weight is downloaded."""
    tcfg = target_config.get_text_config() if hasattr(target_config, "get_text_config") else target_config
    target_name = getattr(target_config, "_name_or_path", "") or type(target_config).__name__

    def mismatch(what: str, mine, theirs) -> CompatibilityError:
        return CompatibilityError(f"Draft {name} does not fit target {target_name}: draft {what} is {mine}, target {what} is {theirs}.")

    if draft.target_hidden_size != tcfg.hidden_size:
        raise mismatch("hidden size", draft.target_hidden_size, tcfg.hidden_size)
    if draft.vocab_size != tcfg.vocab_size:
        raise mismatch("vocabulary size", draft.vocab_size, tcfg.vocab_size)
    if draft.num_target_layers != tcfg.num_hidden_layers:
        raise mismatch("target layer count", draft.num_target_layers, tcfg.num_hidden_layers)
    bad = [i for i in draft.target_layer_ids if not -1 <= i < tcfg.num_hidden_layers]
    if bad:
        raise mismatch("target_layer_ids", list(draft.target_layer_ids), f"layers -1..{tcfg.num_hidden_layers - 1}")


def target_can_roll_back(target: nn.Module) -> bool:
    """Whether assisted decoding can cut the target's cache back after a rejection.

    transformers marks such targets ``_is_stateful``. DeepSeek-V4 is marked as a whole because the
    compressor state of its compressed-attention layers cannot be cropped; :func:`prepare_target_cache`
    gives those layers a rewindable cache (:mod:`dspark_hf.models.deepseek_v4.target_cache`), so V4 targets qualify.
    """
    if not getattr(target, "_is_stateful", False):
        return True
    return target.config.get_text_config().model_type == "deepseek_v4"


def check_target_can_roll_back(target: nn.Module) -> None:
    if not target_can_roll_back(target):
        raise UnsupportedUsageError(
            f"Speculative decoding needs to cut the target's cache back after a rejected token, and transformers "
            f"cannot do that for {type(target).__name__} (a stateful model)."
        )


def prepare_target_cache(target: nn.Module, cache) -> None:
    """Make the target's generation cache rewindable where transformers' is not (DeepSeek-V4's
    compressed-attention layers); other targets' caches are left as they are."""
    if cache is not None and target.config.get_text_config().model_type == "deepseek_v4":
        target_cache.make_rewindable(cache)
