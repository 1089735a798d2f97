"""Per-round counts for transformers' own candidate generators (prompt lookup, assistant models).

DSpark drafts report their rounds in ``draft.last_telemetry``; the other assisted-generation paths do
not, so :func:`recording_rounds` wraps, for one call, the candidate generator the target builds: each
``get_candidates`` notes how many tokens were proposed, each ``update_candidate_strategy`` how many
the target accepted and how many tokens the round added. The records are
:class:`~dspark_hf.telemetry.StepRecord` (``proposed == verified``: these paths verify everything they
propose; no confidences). The wrapper lives on the target instance only and is removed on exit.
"""

from __future__ import annotations

import contextlib
import time

from dspark_hf.telemetry import StepRecord


@contextlib.contextmanager
def recording_rounds(target):
    """Yield a list that fills with one :class:`StepRecord` per verification round of the calls made
    inside the block."""
    records: list[StepRecord] = []
    cls_method = type(target)._get_candidate_generator
    had_own = "_get_candidate_generator" in vars(target)
    own = vars(target).get("_get_candidate_generator")

    def build(*args, **kwargs):
        generator = cls_method(target, *args, **kwargs)
        _instrument(generator, records)
        return generator

    target._get_candidate_generator = build
    try:
        yield records
    finally:
        if had_own:
            target._get_candidate_generator = own
        else:
            del target._get_candidate_generator


def _instrument(generator, records: list[StepRecord]) -> None:
    get, update = generator.get_candidates, generator.update_candidate_strategy
    pending: dict = {}

    def get_candidates(input_ids, *args, **kwargs):
        t0 = time.perf_counter()
        candidates, logits = get(input_ids, *args, **kwargs)
        pending.update(cur_len=input_ids.shape[1], proposed=candidates.shape[1] - input_ids.shape[1], t0=t0,
                       draft_seconds=time.perf_counter() - t0)
        return candidates, logits

    def update_candidate_strategy(input_ids, scores, num_matches):
        update(input_ids, scores, num_matches)
        if not pending:
            return
        proposed = int(pending["proposed"])
        records.append(StepRecord(
            step=len(records), proposed=proposed, verified=proposed, accepted=min(int(num_matches), proposed),
            emitted=int(input_ids.shape[1] - pending["cur_len"]), confidences=None,
            draft_seconds=pending["draft_seconds"], step_seconds=time.perf_counter() - pending["t0"],
        ))
        pending.clear()

    generator.get_candidates = get_candidates
    generator.update_candidate_strategy = update_candidate_strategy
