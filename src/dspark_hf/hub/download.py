"""``dspark hub download``'s engine: a published draft's files into the Hub cache, with the draft's
config checked against a target (when one is named) before any weight is downloaded.

Fetching itself is :mod:`dspark_hf.checkpoints.fetch` (the only module that talks to the Hub);
this module adds the fit check, which needs the draft's config class.
"""

from __future__ import annotations

from typing import Any

from dspark_hf.checkpoints.fetch import ResolvedDraft
from dspark_hf.checkpoints.fetch import resolve_draft as fetch_draft
from dspark_hf.checkpoints.formats import DEEPSEEK_V4, checkpoint_format
from dspark_hf.integration.fit_checks import check_config_fits_target
from dspark_hf.models.dspark.released_format import dspark_config_from_dict


def resolve_draft(repo_id: str, *, target_config: Any = None, **hub_kwargs: Any) -> ResolvedDraft:
    """The files of the draft in ``repo_id`` in the Hub cache (see
    :func:`dspark_hf.checkpoints.fetch.resolve_draft`); with ``target_config``, a draft that does not
    fit that target fails in one line before its weights are fetched."""
    check = None
    if target_config is not None:

        def check(config: dict[str, Any]) -> None:
            if checkpoint_format(config) != DEEPSEEK_V4:
                check_config_fits_target(dspark_config_from_dict(config, f"{repo_id}/config.json"), target_config, repo_id)

    return fetch_draft(repo_id, check_config=check, **hub_kwargs)
