"""Benchmark prompt files (``{"turns": [...]}`` JSON lines) and the splits this package uses.

Prompt indices count lines of the file from 0. The measurement split is the first ``MEASURE_COUNT``
prompts, 0-19 (``dspark bench`` measures prompts ``--start`` .. ``--start + --limit - 1``, by default
0-9; the policy comparison, ``dspark bench --policies all --limit 20``, 0-19). Calibration
(``dspark calibrate``) uses the disjoint held-out split from ``HELD_OUT_START``: prompts 40-59 by
default, so STS is never fitted on prompts it is then measured on. A bench run whose ``--start`` and
``--limit`` reach index 40 measures calibration prompts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dspark_hf.errors import DSparkError

MEASURE_COUNT = 20
HELD_OUT_START = 40


def datasets_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$DSPARK_EVAL_DATASETS_DIR``, else the nearest ``shared/eval_datasets`` beside a
    folder above this file (the checkout's sibling ``shared/``)."""
    if path is None:
        path = os.environ.get("DSPARK_EVAL_DATASETS_DIR")
    if path is None:
        here = Path(__file__).resolve()
        found = [p / "shared" / "eval_datasets" for p in here.parents if (p / "shared" / "eval_datasets").is_dir()]
        path = found[0] if found else here.parents[3] / "shared" / "eval_datasets"
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DSparkError(f"No benchmark prompt folder at {path}; pass --datasets-dir or set DSPARK_EVAL_DATASETS_DIR.")
    return path


def load_prompts(name: str, start: int = 0, count: int | None = None, folder: str | os.PathLike | None = None) -> list[str]:
    """First turns of prompts ``start .. start + count - 1`` of ``<folder>/<name>.jsonl``."""
    path = datasets_dir(folder) / f"{name}.jsonl"
    if not path.is_file():
        raise DSparkError(f"No prompt file {path}.")
    prompts = []
    with path.open() as handle:
        for index, line in enumerate(handle):
            if index < start or not line.strip():
                continue
            if count is not None and len(prompts) >= count:
                break
            prompts.append(json.loads(line)["turns"][0])
    return prompts


def encode(tokenizer, prompt: str):
    """``[1, n]`` input ids of ``prompt`` as a single user turn (chat template when there is one)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    return tokenizer(prompt, return_tensors="pt").input_ids
