"""Loading a target and a draft by name, as the command line, the demo, the benchmarks and training do.

- :func:`load_target`: a local folder or Hub id through transformers' ``AutoModelForCausalLM``, or,
  with no name, the bundled SmolLM2-135M-Instruct target (:mod:`dspark_hf.bundled.target`).
- :func:`load_draft`: a draft folder or Hub id through :meth:`DSparkDraft.from_pretrained` (DSpark,
  DFlash, EAGLE-3 and DeepSeek-V4 drafters), ``"random"`` for an untrained draft shaped for the target, or, with
  no name, the draft bundled for the default target. A draft published on the Hub gets the registry's
  recommended verification policy (:mod:`dspark_hf.hub.registry`) unless it has one already.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dspark_hf.checkpoints.files import is_local_path
from dspark_hf.errors import CheckpointError, UnsupportedUsageError


def load_target(name: str | None, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` for a path or Hub id, or the bundled default target (eval mode)."""
    if name is None:
        from dspark_hf.bundled.target import load_default_target

        return load_default_target(dtype=dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if is_local_path(name, bare_names_are_local=False) and not Path(name).expanduser().is_dir():
        raise CheckpointError(f"No target model at {name}: the folder does not exist.")
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype).eval()
    return model, AutoTokenizer.from_pretrained(name)


def load_target_with_precision(name: str | None, spec: str = "auto", device: str | torch.device = "cpu"):
    """``(target, tokenizer, precision)``: the target called ``name`` (:func:`dspark_hf.loading.load_target`)
    on ``device``, in the target dtype ``--dtype spec`` resolves to for it. ``auto`` on a CPU with native bf16
    loads it in float32 first and times it (:func:`dspark_hf.precision.resolve_precision`)."""
    from dspark_hf.precision import bf16_is_fast, resolve_precision

    device = str(torch.device(device))
    if spec == "auto" and device.startswith("cpu") and bf16_is_fast(device):
        target, tokenizer = load_target(name)
        target = target.to(device)
        precision = resolve_precision(spec, device, target)
        return target.to(precision.target_dtype), tokenizer, precision
    precision = resolve_precision(spec, device)
    target, tokenizer = load_target(name, dtype=precision.target_dtype)
    return target.to(device), tokenizer, precision


def load_draft(name: str | None, target=None, dtype: torch.dtype | None = torch.float32, *, target_config=None,
               draft_vocab: int | None = None, token_counts: str | Path | None = None, **hub_kwargs):
    """The draft called ``name`` (see the module docstring), in eval mode.

    ``target`` (a model) or ``target_config``: a Hub draft that does not fit it fails in one line before
    its weights are downloaded. ``draft_vocab=K``: restrict the draft's output vocabulary to the ``K`` most
    frequent tokens of ``token_counts`` (a token-count file; default: ``token_counts.json`` in the draft's
    folder), the target's end-of-turn ids always kept. ``hub_kwargs``: ``revision``, ``token``,
    ``cache_dir``, ... for Hub ids.
    """
    draft = _load_draft(name, target, dtype, target_config, hub_kwargs)
    if draft_vocab is not None:
        restrict_draft_vocabulary(draft, draft_vocab, token_counts, target)
    return draft


def restrict_draft_vocabulary(draft, k: int, token_counts: str | Path | None, target=None):
    """Restrict ``draft`` (in place) to the ``k`` most frequent tokens of ``token_counts``."""
    from dspark_hf.models.dspark.draft_vocab import TOKEN_COUNTS_NAME, end_of_turn_ids, read_token_counts, top_tokens

    if not hasattr(draft, "restrict_vocabulary"):
        raise UnsupportedUsageError(f"{type(draft).__name__} drafts have no reduced-vocabulary support (--draft-vocab).")
    if token_counts is None:
        folder = getattr(draft, "_dspark_folder", None)
        token_counts = Path(folder or ".") / TOKEN_COUNTS_NAME
        if not token_counts.is_file():
            raise UnsupportedUsageError(
                f"--draft-vocab {k}: this draft has no {TOKEN_COUNTS_NAME}; pass a token-count file with --token-counts."
            )
    counts = read_token_counts(token_counts, vocab_size=draft.config.vocab_size)
    required = end_of_turn_ids(target) if target is not None else []
    return draft.restrict_vocabulary(top_tokens(counts, k, required))


def _load_draft(name, target, dtype, target_config, hub_kwargs):
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

    if target_config is None and target is not None:
        target_config = target.config
    if name == "random":
        from dspark_hf.models.dspark.config_for_target import draft_config_for_target

        if target_config is None:
            raise UnsupportedUsageError("--draft random needs a target to shape the draft for.")
        print("note: --draft random is an untrained draft; the text is exact, speculation gains nothing.")
        return DSparkDraft(draft_config_for_target(target_config)).to(dtype or torch.float32).eval()
    if name is None:
        from dspark_hf.bundled.draft import default_draft_dir, load_default_draft

        draft = load_default_draft(dtype=dtype or torch.float32)
        draft._dspark_folder = Path(default_draft_dir())
        return draft
    source = name
    if not is_local_path(name):
        from dspark_hf.hub.download import resolve_draft

        source = resolve_draft(name, target_config=target_config, **hub_kwargs).folder
    draft = DSparkDraft.from_pretrained(source, dtype=dtype).eval()
    draft.name_or_path = str(name)
    draft._dspark_folder = Path(source)  # where a token_counts.json would be
    if not is_local_path(name) and getattr(draft, "verification_policy", None) is None:
        from dspark_hf.hub.registry import lookup
        from dspark_hf.verification.policies import resolve_policy

        entry = lookup(name)
        if entry is not None:
            draft.verification_policy = resolve_policy(entry.recommended_policy)
    return draft
