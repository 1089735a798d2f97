"""The drafts DeepSeek published for DSpark, by Hub id.

Each :class:`PublishedDraft` names its paired target, block size (an EAGLE-3 draft's: its chain length
``ttt_length``), licence and the verification policy we recommend with it (a spec string for
:func:`dspark_hf.verification.policies.resolve_policy`). Sources: the DeepSpec README ("Released
Checkpoints" table, which also lists the EAGLE-3 baselines; MIT licence) and the DSpark paper (Table 1
acceptance lengths; production figures for DeepSeek-V4). The V4 drafters live inside the
V4 target repos as ``mtp.*`` tensors (see :mod:`dspark_hf.checkpoints.fetch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dspark_hf.errors import DSparkError


@dataclass(frozen=True)
class PublishedDraft:
    """One published draft repo.

    ``kind``: ``"dspark"`` (Markov + confidence heads), ``"dflash"`` (the DFlash baseline: no Markov
    head), ``"eagle3"`` (the EAGLE-3 baseline, DeepSpec's ``Qwen3Eagle3Model``: one layer, a chain of
    ``ttt_length`` steps, no confidence head) or ``"deepseek_v4"`` (the drafter is the ``mtp.*`` part of
    a full V4 target repo). ``block_size``: tokens drafted per round (EAGLE-3: ``ttt_length``).
    ``card``: the file under ``hub_cards/`` that documents the family.
    ``tau``: published mean accepted tokens per round (bonus included), benchmark -> value.
    """

    repo_id: str
    kind: str
    target: str
    block_size: int
    license: str
    recommended_policy: str
    card: str
    tau: dict[str, float] = field(default_factory=dict)
    tau_source: str = ""

    @property
    def family(self) -> str:
        return self.card.removesuffix(".md")


_TABLE1 = "DSpark paper, Table 1 (temperature 1, batch 1, whole block of 7, tau counts the bonus token)"
_BENCHES = ("GSM8K", "MATH500", "AIME25", "MBPP", "HumanEval", "LCB", "MT-Bench", "Alpaca", "Arena-Hard")


def _tau(*values: float) -> dict[str, float]:
    return dict(zip(_BENCHES, values, strict=True))


# DSpark drafts carry a confidence head: a per-slot threshold trims verification of doubtful tails
# (the paper's Table 1 verifies the whole block; "whole" reproduces that setting).
_DSPARK_POLICY = "threshold:0.5"

PUBLISHED_DRAFTS: tuple[PublishedDraft, ...] = (
    PublishedDraft("deepseek-ai/dspark_qwen3_4b_block7", "dspark", "Qwen/Qwen3-4B", 7, "mit", _DSPARK_POLICY,
                   "dspark_qwen3.md", _tau(6.11, 5.70, 4.89, 5.13, 5.38, 4.86, 3.64, 3.54, 3.29), _TABLE1),
    PublishedDraft("deepseek-ai/dspark_qwen3_8b_block7", "dspark", "Qwen/Qwen3-8B", 7, "mit", _DSPARK_POLICY,
                   "dspark_qwen3.md", _tau(6.17, 5.78, 5.01, 5.16, 5.52, 5.17, 3.72, 3.58, 3.21), _TABLE1),
    PublishedDraft("deepseek-ai/dspark_qwen3_14b_block7", "dspark", "Qwen/Qwen3-14B", 7, "mit", _DSPARK_POLICY,
                   "dspark_qwen3.md"),
    PublishedDraft("deepseek-ai/dspark_gemma4_12b_block7", "dspark", "google/gemma-4-12B-it", 7, "mit", _DSPARK_POLICY,
                   "dspark_gemma4.md", _tau(6.05, 5.78, 5.12, 5.11, 5.64, 4.51, 3.49, 3.35, 2.92), _TABLE1),
    # DFlash baselines have no confidence head: nothing to schedule on, verify the whole block.
    PublishedDraft("deepseek-ai/dflash_qwen3_4b_block7", "dflash", "Qwen/Qwen3-4B", 7, "mit", "whole",
                   "dflash.md", _tau(5.40, 4.85, 4.15, 4.40, 4.74, 4.18, 3.07, 2.96, 2.83), _TABLE1),
    PublishedDraft("deepseek-ai/dflash_qwen3_8b_block7", "dflash", "Qwen/Qwen3-8B", 7, "mit", "whole", "dflash.md"),
    PublishedDraft("deepseek-ai/dflash_qwen3_14b_block7", "dflash", "Qwen/Qwen3-14B", 7, "mit", "whole", "dflash.md"),
    PublishedDraft("deepseek-ai/dflash_gemma4_12b_block7", "dflash", "google/gemma-4-12B-it", 7, "mit", "whole",
                   "dflash.md"),
    # EAGLE-3 baselines (Qwen3Eagle3Model, ttt_length 7): no confidence head either, verify the whole chain.
    # (DeepSpec also lists deepseek-ai/eagle3_gemma4_12b_ttt7, a Gemma4 EAGLE-3 model this library does not load.)
    PublishedDraft("deepseek-ai/eagle3_qwen3_4b_ttt7", "eagle3", "Qwen/Qwen3-4B", 7, "mit", "whole",
                   "eagle3_qwen3.md", _tau(5.14, 4.62, 3.92, 3.69, 4.16, 3.77, 2.39, 2.26, 2.55), _TABLE1),
    PublishedDraft("deepseek-ai/eagle3_qwen3_8b_ttt7", "eagle3", "Qwen/Qwen3-8B", 7, "mit", "whole", "eagle3_qwen3.md"),
    PublishedDraft("deepseek-ai/eagle3_qwen3_14b_ttt7", "eagle3", "Qwen/Qwen3-14B", 7, "mit", "whole", "eagle3_qwen3.md"),
    # DeepSeek-V4 production drafters (gamma = 5): the target is the same repo.
    PublishedDraft("deepseek-ai/DeepSeek-V4-Flash-DSpark", "deepseek_v4", "deepseek-ai/DeepSeek-V4-Flash-DSpark", 5,
                   "mit", _DSPARK_POLICY, "deepseek_v4_dspark.md"),
    PublishedDraft("deepseek-ai/DeepSeek-V4-Pro-DSpark", "deepseek_v4", "deepseek-ai/DeepSeek-V4-Pro-DSpark", 5,
                   "mit", _DSPARK_POLICY, "deepseek_v4_dspark.md"),
)

_BY_ID = {d.repo_id.lower(): d for d in PUBLISHED_DRAFTS}


def lookup(repo_id: str) -> PublishedDraft | None:
    """The registry entry for ``repo_id`` (case-insensitive), or None for drafts not in the registry."""
    return _BY_ID.get(str(repo_id).lower())


def get(repo_id: str) -> PublishedDraft:
    """The registry entry for ``repo_id``; a one-line :class:`DSparkError` naming the known ids otherwise."""
    entry = lookup(repo_id)
    if entry is None:
        raise DSparkError(f"{repo_id} is not a published DSpark draft; `dspark hub list` shows the published ones.")
    return entry


def format_table(drafts: tuple[PublishedDraft, ...] = PUBLISHED_DRAFTS) -> str:
    """The registry as a plain-text table (what ``dspark hub list`` prints)."""
    header = ("repo", "kind", "target", "block", "license", "policy")
    rows = [header] + [(d.repo_id, d.kind, d.target, str(d.block_size), d.license, d.recommended_policy) for d in drafts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
