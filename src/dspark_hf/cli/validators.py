"""Checks of the flags several sub-commands share (``--threads``, ``--temperature``, ``--top-p``,
``--top-k``, ``--max-new-tokens``, ``--policy``, ...), run first thing in each ``run()`` so that a bad
value is one :class:`~dspark_hf.errors.UnsupportedUsageError` line naming the flag and what it
accepts, before any model is loaded; and :func:`check_draft_folder`, which reads a local draft
folder's config.json (no weights) so that a bad config value is reported before the target loads.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

from dspark_hf.errors import UnsupportedUsageError

# attribute -> least value, for whole-number flags (None: the flag was not given / has no default)
_AT_LEAST = {
    "threads": 1,
    "max_new_tokens": 1,
    "max_new_tokens_limit": 1,
    "max_prompt_tokens": 1,
    "draft_vocab": 1,
}


def flag_name(attribute: str) -> str:
    """``top_p`` -> ``--top-p``."""
    return "--" + attribute.replace("_", "-")


def at_least(flag: str, value: int | None, least: int, note: str = "") -> None:
    """``flag`` is unset or a whole number >= ``least``."""
    if value is not None and value < least:
        raise UnsupportedUsageError(f"{flag} must be at least {least}{note}, got {value}.")


def temperature(flag: str, value: float | None) -> None:
    """A finite number >= 0 (0 = greedy)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise UnsupportedUsageError(f"{flag} must be a finite number >= 0 (0 = greedy), got {value}.")


def top_p(flag: str, value: float | None) -> None:
    """A number in (0, 1] (1 = no nucleus cut)."""
    if value is not None and not (0 < value <= 1):  # False for nan
        raise UnsupportedUsageError(f"{flag} must be a number in (0, 1], got {value}.")


def policy(flag: str, spec: str | None) -> None:
    """A verification policy spec :func:`~dspark_hf.verification.policies.resolve_policy` accepts."""
    if spec is None:
        return
    from dspark_hf.verification.policies import resolve_policy

    try:
        resolve_policy(spec)
    except UnsupportedUsageError as err:
        raise UnsupportedUsageError(f"{flag}: {err}") from None


def policy_list(flag: str, specs: Iterable[str], keep: Iterable[str] = ()) -> None:
    """Each spec of a comma-separated list (``keep``: words the command expands itself, e.g. ``all``)."""
    keep = set(keep)
    for spec in specs:
        if spec not in keep:
            policy(flag, spec)


def check_shared_flags(args: argparse.Namespace) -> None:
    """Check every shared flag ``args`` has: ``--threads``, ``--max-new-tokens`` (and the demo's
    ``--max-new-tokens-limit`` / ``--max-prompt-tokens``) at least 1, ``--temperature`` a finite
    number >= 0, ``--top-p`` in (0, 1], ``--top-k`` >= 0 (0 = no top-k), ``--policy`` a valid spec."""
    values = vars(args)
    for name, least in _AT_LEAST.items():
        if name in values:
            at_least(flag_name(name), values[name], least)
    if "temperature" in values:
        temperature("--temperature", values["temperature"])
    if "top_p" in values:
        top_p("--top-p", values["top_p"])
    if "top_k" in values:
        at_least("--top-k", values["top_k"], 0, " (0 = no top-k)")
    if "policy" in values:
        policy("--policy", values["policy"])
    if values.get("token_counts") and values.get("draft_vocab") is None:
        raise UnsupportedUsageError("--token-counts needs --draft-vocab K (how many of its tokens to keep).")


def check_draft_folder(name: str | None) -> None:
    """For a local draft folder (not ``None`` / ``"random"`` / a Hub id): the folder checks of
    :func:`~dspark_hf.checkpoints.files.check_local_folder` and the values of its config.json, without
    reading any weights. Other formats (DeepSeek-V4 repos, non-drafts) are left to the loader."""
    if name in (None, "random"):
        return
    from dspark_hf.checkpoints.files import CONFIG_NAME, check_local_folder, is_local_path, load_config_json
    from dspark_hf.checkpoints.formats import DSPARK, EAGLE3, RELEASED, checkpoint_format

    if not is_local_path(name):
        return
    folder = Path(name).expanduser()
    check_local_folder(folder)
    raw = load_config_json(folder / CONFIG_NAME)
    if checkpoint_format(raw) in (DSPARK, RELEASED):
        from dspark_hf.models.dspark.released_format import dspark_config_from_dict

        dspark_config_from_dict(raw, source=f"{name}/{CONFIG_NAME}")
    elif checkpoint_format(raw) == EAGLE3:
        from dspark_hf.models.eagle3.configuration_eagle3 import eagle3_config_from_dict

        eagle3_config_from_dict(raw, source=f"{name}/{CONFIG_NAME}")


def add_dtype_flag(parser: argparse.ArgumentParser) -> None:
    """``--dtype auto|float32|bfloat16|bfloat16-batched`` (see :mod:`dspark_hf.precision`)."""
    from dspark_hf.precision import DTYPE_CHOICES

    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="auto",
        help="target/draft dtypes: auto (default: the fastest that keeps the output identical to plain generate "
        "on this machine, printed), float32 (target f32, draft bf16 where bf16 is native), bfloat16 (both bf16, "
        "verification rows computed as one-token steps), bfloat16-batched (opt-in: fastest, not always identical)",
    )


def add_draft_vocab_flags(parser: argparse.ArgumentParser) -> None:
    """``--draft-vocab K`` and ``--token-counts FILE``: restrict a draft's output vocabulary at load time."""
    parser.add_argument("--draft-vocab", type=int, default=None, metavar="K",
                        help="restrict the draft to the K most frequent tokens of a token-count file (FR-Spec)")
    parser.add_argument("--token-counts", default=None, metavar="FILE",
                        help="JSON token counts {\"id\": count} for --draft-vocab (default: token_counts.json in the draft folder)")
