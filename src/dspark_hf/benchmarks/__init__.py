"""``dspark bench``: acceptance, speed and calibration of DSpark drafts next to baselines.

One small module per job:

- :mod:`.prompt_sets`: the prompt files (JSON Lines with a ``turns`` list; first turn, chat template);
- :mod:`.methods`: what is measured (plain ``generate``, prompt lookup, a separate assistant model,
  DSpark with a draft and a policy), each one ``generate`` call;
- :mod:`.timing`: one timed call (wall time, time to first token, target forwards, rounds);
- :mod:`.rounds`: per-round counts of transformers' own candidate generators (baselines);
- :mod:`.session`: the interleaved measurement loop (warm-up, per-prompt A/B alternation);
- :mod:`.metrics`: tau, per-slot acceptance, verified/drafted ratio, medians and spread, speed-up,
  calibration (through :mod:`dspark_hf.verification.calibration.metrics`);
- :mod:`.identity`: the greedy identity check against plain generation;
- :mod:`.report`: the JSON file (schema in ``docs/benchmarks.md``) and the markdown table;
- :mod:`.policy_comparison`: the report's verification policies against the best fixed length;
- :mod:`.plots`: the PNG figures;
- :mod:`.cost_mode`: loop overhead apart from draft quality, on random-weight targets with forced
  acceptance patterns;
- :mod:`.baseline_pair`: the opt-in Qwen2.5-Coder 1.5B / 0.5B pair for transformers' assisted generation;
- :mod:`.settings`: puts thread count and draft policies back as they were.
"""
