"""What the trace scripts share: the load bench's workload as scripts/engine_workload.py loads it (the bundled
target in float32, the shipped draft in bf16 where bf16 is fast, the 18 prompts 40-45 of mt-bench, gsm8k and
humaneval, one thread). Run from the repository root."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts"))
from engine_workload import load_workload  # noqa: E402

PROMPTS = 18  # 6 each of the three sets


def load():
    return load_workload(PROMPTS)
