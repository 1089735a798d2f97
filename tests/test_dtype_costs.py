"""``--dtype auto`` on a CPU with native bf16 times the real target in float32 and in exact bfloat16 and
picks the faster (:mod:`dspark_hf.integration.dtype_costs`, :func:`dspark_hf.precision.resolve_precision`)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_qwen3_target
from dspark_hf import precision as precision_module
from dspark_hf.integration import dtype_costs
from dspark_hf.integration.dtype_costs import SCORED_TOKENS, ConfigurationCosts


@pytest.fixture
def fast_bf16_cpu(monkeypatch, tmp_path):
    """A CPU that reports native bf16, and an empty dspark_hf cache."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision_module, "bf16_is_fast", lambda device="cpu": True)


def _fake_measure(float32_ms, bfloat16_ms, calls):
    def measure(target):
        calls.append(next(target.parameters()).dtype)  # the dtype it was timed in
        seconds = {"float32": [ms / 1000 for ms in float32_ms], "bfloat16": [ms / 1000 for ms in bfloat16_ms]}
        return ConfigurationCosts(SCORED_TOKENS, seconds, dtype_costs.costs_key(target))

    return measure


@pytest.mark.parametrize(
    "float32_ms,bfloat16_ms,expected",
    [
        ((69, 90, 95, 101), (99, 130, 145, 159), torch.float32),  # bf16 slower at every count (as on the AMD EPYC)
        ((40, 48, 55, 60), (34, 35, 35, 36), torch.bfloat16),  # bf16 faster at every count (the AMX Xeon)
        ((50, 60, 70, 80), (40, 50, 60, 70), torch.bfloat16),
        # run w's Intel Xeon without AMX (docs/measurements/2026-12-07b/forward_costs.log, rounded; 3 rows
        # interpolated): float32 cheaper at 2-3 rows, bf16 row by row level at 1 and 4. The old score (1, 4 and
        # 8 tokens: 58.4 + 91.7 + 124.5 against 57.0 + 89.6 + 122.9 ms) took bf16, where the default policy
        # ran 18 % slower than in float32 (run x, docs/measurements/2026-12-07c/)
        ((58, 61, 76, 92), (57, 69, 79, 90), torch.float32),
    ],
)
def test_auto_picks_the_configuration_measured_faster(fast_bf16_cpu, monkeypatch, float32_ms, bfloat16_ms, expected):
    """The summed time of the 1- to 4-token forwards (the rows the default policy verifies on a CPU) decides;
    the line printed names the figures. Mutation runs: ``fastest`` taking ``max`` instead of ``min`` fails
    every case; scoring the 1- and 4-token forwards only (``self.seconds[name][0] + self.seconds[name][-1]``,
    the old score without its 8-token term) fails the last case (149 < 150 ms: bf16)."""
    calls = []
    monkeypatch.setattr(dtype_costs, "measure_configuration_costs", _fake_measure(float32_ms, bfloat16_ms, calls))
    chosen = precision_module.resolve_precision("auto", "cpu", tiny_qwen3_target())
    assert chosen.target_dtype == expected and chosen.identical
    assert chosen.single_step_rows == (expected == torch.bfloat16)  # exact bf16 needs the row-by-row verification
    assert chosen.draft_dtype == torch.bfloat16
    line = chosen.describe()
    assert "auto: measured faster" in line and f"float32 {'/'.join(f'{ms:.0f}' for ms in float32_ms)} ms" in line and len(calls) == 1


def test_costs_are_stored_per_thread_count_and_a_damaged_file_is_measured_again(fast_bf16_cpu, monkeypatch):
    """The second resolve reads the stored figures; another thread count is another key; a damaged file is
    measured again and rewritten. Mutation run once: ``configuration_costs`` skipping the stored file makes
    the first count 2 instead of 1."""
    calls = []
    monkeypatch.setattr(dtype_costs, "measure_configuration_costs", _fake_measure((1, 2, 3, 4), (4, 5, 6, 7), calls))
    target = tiny_qwen3_target()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        precision_module.resolve_precision("auto", "cpu", target)
        precision_module.resolve_precision("auto", "cpu", target)
        assert len(calls) == 1
        path = dtype_costs.costs_path(dtype_costs.costs_key(target))
        assert json.loads(path.read_text())["seconds"]["bfloat16"] == [0.004, 0.005, 0.006, 0.007]
        torch.set_num_threads(2)
        precision_module.resolve_precision("auto", "cpu", target)
        assert len(calls) == 2
        torch.set_num_threads(1)
        path.write_text("{not json")
        precision_module.resolve_precision("auto", "cpu", target)
        assert len(calls) == 3 and json.loads(path.read_text())["key"] == dtype_costs.costs_key(target)
    finally:
        torch.set_num_threads(saved)


def test_no_measurement_without_native_bf16_or_for_explicit_choices(monkeypatch, tmp_path):
    """Without native bf16 auto is float32 at once; ``float32`` / ``bfloat16`` are taken as asked."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(dtype_costs, "measure_configuration_costs", _fake_measure((9, 9, 9, 9), (1, 1, 1, 1), calls))
    target = tiny_qwen3_target()
    monkeypatch.setattr(precision_module, "bf16_is_fast", lambda device="cpu": False)
    assert precision_module.resolve_precision("auto", "cpu", target).target_dtype == torch.float32
    monkeypatch.setattr(precision_module, "bf16_is_fast", lambda device="cpu": True)
    assert precision_module.resolve_precision("float32", "cpu", target).target_dtype == torch.float32
    assert precision_module.resolve_precision("bfloat16", "cpu", target).target_dtype == torch.bfloat16
    assert calls == []


class _RecordingSequence:
    """Stands in for :class:`~dspark_hf.verification.scheduling.profiler.PrefilledSequence`: records the dtype
    and verification mode of every forward, and times each from ``costs_ms`` (per dtype, per token count) times
    ``machine_speed(i)`` for the i-th timed forward of the whole measurement (a shared machine's slow spells)."""

    log: list = []
    costs_ms: dict = {}
    machine_speed = staticmethod(lambda i: 1.0)

    def __init__(self, model, counts, *, context_length, seed=0):
        self.dtype = next(model.parameters()).dtype
        self.log.append(("prefill", self.dtype, _mode()))

    def fresh_cache(self):
        return None

    def forward(self, n, past):
        self.log.append(("warm-up", self.dtype, _mode(), n))

    def timed(self, n):
        index = sum(1 for entry in self.log if entry[0] == "timed")
        self.log.append(("timed", self.dtype, _mode(), n))
        return self.costs_ms[self.dtype][SCORED_TOKENS.index(n)] / 1000 * type(self).machine_speed(index)


def _mode():
    from dspark_hf.verification.row_mode import verification_mode

    return verification_mode()


@pytest.fixture
def recording_sequences(monkeypatch):
    """``PrefilledSequence`` recorded, and float32's weight-major rows made 2 and 3 (no measurement)."""
    from dspark_hf.integration import weight_major
    from dspark_hf.verification.scheduling import profiler

    monkeypatch.setattr(profiler, "PrefilledSequence", _RecordingSequence)
    monkeypatch.setattr(_RecordingSequence, "log", [])
    monkeypatch.setattr(_RecordingSequence, "costs_ms", {torch.float32: (1, 2, 3, 4), torch.bfloat16: (1, 2, 3, 4)})
    monkeypatch.setattr(weight_major, "_MEMORY", {})
    monkeypatch.setattr(weight_major, "weight_major_rows_for", lambda t: weight_major.WeightMajorRows("k", torch.__version__, (2, 3), (2, 3), (1.0, 1.0), (0.5, 0.5)))
    return _RecordingSequence


def test_measurement_times_float32_as_is_and_bfloat16_row_by_row(recording_sequences):
    """The float32 forwards run on the target itself as ``generate`` verifies in float32 (weight-major
    linears at the row counts measured faster, here made 2 and 3); the bfloat16 ones on a bf16 copy inside
    the row-by-row scope with its exact weight-major layers (as ``generate`` runs exact bf16); the target is
    left as it was.
    Mutation runs: measuring the copy outside ``single_step_rows`` fails the row-mode assertion; timing
    float32 outside ``weight_major_verification`` fails the weight-major one; timing the copy in
    ``single_step_rows`` alone (no exact weight-major layers, as before 2026-12-07) fails with ``"rows"``."""
    target = tiny_qwen3_target()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    costs = dtype_costs.measure_configuration_costs(target)
    modes = {(entry[1], entry[2]) for entry in recording_sequences.log}
    assert modes == {(torch.float32, "weight-major"), (torch.bfloat16, "rows-weight-major")}
    timed = [entry for entry in recording_sequences.log if entry[0] == "timed"]
    assert sorted({entry[3] for entry in timed}) == list(SCORED_TOKENS)
    assert set(costs.seconds) == {"float32", "bfloat16"} and costs.seconds["float32"] == [0.001, 0.002, 0.003, 0.004]
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    assert next(target.parameters()).dtype == torch.float32


def test_a_slow_spell_of_the_machine_does_not_decide_the_dtype(recording_sequences, monkeypatch):
    """The two configurations are timed interleaved (one forward of each per token count and repeat), so a
    slow spell falls on both. Here float32 is the faster (run w's figures, 287 against 295 ms) and the machine
    runs 1.5x slower for the first 3 of the 7 repeats: the medians come from the other 4 and float32 wins.
    Mutation run once: timing all of float32's forwards before bf16's (the order before version 6) puts
    24 of float32's 28 forwards in the spell, its medians 1.5x, and bf16 wins: the test fails."""
    monkeypatch.setattr(recording_sequences, "costs_ms", {torch.float32: (58, 61, 76, 92), torch.bfloat16: (57, 69, 79, 90)})
    forwards_per_repeat = 2 * len(SCORED_TOKENS)
    monkeypatch.setattr(recording_sequences, "machine_speed", staticmethod(lambda i: 1.5 if i < 3 * forwards_per_repeat else 1.0))
    costs = dtype_costs.measure_configuration_costs(tiny_qwen3_target(), repeats=7)
    assert [round(1000 * s) for s in costs.seconds["float32"]] == [58, 61, 76, 92]
    assert costs.fastest() == "float32"
    timed = [(entry[1], entry[3]) for entry in recording_sequences.log if entry[0] == "timed"]
    assert len(timed) == 7 * forwards_per_repeat
    assert all(timed[i][1] == timed[i + 1][1] and timed[i][0] != timed[i + 1][0] for i in range(0, len(timed), 2))


def test_measurement_on_a_real_forward_gives_positive_medians():
    """The real timing path (no stand-ins) on a tiny target: a positive median per scored token count and
    configuration."""
    costs = dtype_costs.measure_configuration_costs(tiny_qwen3_target(), context_length=16, warmup=1, repeats=1)
    assert costs.tokens == SCORED_TOKENS
    assert all(len(v) == len(SCORED_TOKENS) and all(s > 0 for s in v) for v in costs.seconds.values())
    assert costs.fastest() in ("float32", "bfloat16")


def test_load_target_with_precision_converts_to_the_choice(fast_bf16_cpu, monkeypatch):
    """``load_target_with_precision``: auto loads float32, times it, and returns the target in the chosen dtype."""
    from dspark_hf import loading

    calls = []
    monkeypatch.setattr(dtype_costs, "measure_configuration_costs", _fake_measure((9, 9, 9, 9), (1, 1, 1, 1), calls))
    monkeypatch.setattr(loading, "load_target", lambda name, dtype=torch.float32: (tiny_qwen3_target().to(dtype), "tok"))
    target, tokenizer, chosen = loading.load_target_with_precision("some/target", "auto", "cpu")
    assert tokenizer == "tok" and chosen.name == "bfloat16" and next(target.parameters()).dtype == torch.bfloat16
    assert calls == [torch.float32]  # timed while still float32, then converted
    target, _, chosen = loading.load_target_with_precision("some/target", "float32", "cpu")
    assert chosen.name == "float32" and next(target.parameters()).dtype == torch.float32 and len(calls) == 1
