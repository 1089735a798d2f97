"""Measure a draft's tau (greedy, policy "whole") on the first turns of benchmark prompts.

    python scripts/measure_tau.py --draft runs/dspark/draft --num-prompts 20 --max-new-tokens 128 --json tau.json

See :mod:`dspark_hf.training.evaluate_acceptance` for the options.
"""

from dspark_hf.training.evaluate_acceptance import main

if __name__ == "__main__":
    raise SystemExit(main())
