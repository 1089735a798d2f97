"""Collecting calibration data: confidences and acceptance outcomes of real drafting rounds.

Each prompt is generated with whole-block verification (so every slot's outcome is observed), and
every round gives one row: the raw pre-sigmoid confidences of its slots, how many slots were verified
and how many accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from dspark_hf.errors import DSparkError
from dspark_hf.verification.calibration.temperatures import logit


@dataclass
class CalibrationData:
    """``logits [N, gamma]`` float64, ``verified [N]`` / ``accepted [N]`` long."""

    logits: torch.Tensor
    verified: torch.Tensor
    accepted: torch.Tensor

    def __len__(self) -> int:
        return self.logits.shape[0]


@torch.no_grad()
def collect_rounds(target, draft, prompt_ids: list[torch.Tensor], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0, progress=None) -> CalibrationData:
    """Generate every prompt under whole-block verification and gather its rounds."""
    if draft.confidence_head is None:
        raise DSparkError("This draft has no confidence head; there is nothing to calibrate.")
    sample = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_k=None, top_p=None, dspark_policy="whole",
    )
    logits, verified, accepted = [], [], []
    torch.manual_seed(seed)
    for index, ids in enumerate(prompt_ids):
        target.generate(ids, assistant_model=draft, generation_config=config)
        for step in draft.last_telemetry.steps:
            if step.confidences is None:
                continue
            logits.append(logit(torch.tensor(step.confidences, dtype=torch.float64)))
            verified.append(step.verified)
            accepted.append(step.accepted)
        if progress is not None:
            progress(index + 1, len(prompt_ids))
    if not logits:
        raise DSparkError("No drafting rounds were recorded; use longer generations or more prompts.")
    return CalibrationData(torch.stack(logits), torch.tensor(verified), torch.tensor(accepted))
