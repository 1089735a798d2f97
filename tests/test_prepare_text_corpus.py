"""scripts/prepare_text_corpus.py: written answers (code, documentation) for training without self-distillation.
Built on a small package folder and benchmark file made in the test, so it runs offline."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_text_corpus.py"

MODULE = '''
def chunked(iterable, n):
    """Break the iterable into lists of length n, the last one shorter if needed.

    More text.
    """
    out = []
    for item in iterable:
        out.append(item)
    return out


def _private(x):
    """A private helper that must be skipped even with a long docstring here."""
    return x


def has_close_elements(numbers, threshold):
    """Check if in given list of numbers, are any two numbers closer to each other than given threshold."""
    return False


class Box:
    def size(self):
        """The number of items in the box, counted every time it is asked for."""
        return 0
'''


def _module():
    spec = importlib.util.spec_from_file_location("prepare_text_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_answers_are_the_functions_own_source(tmp_path):
    """Public functions and methods with a docstring become "write this function" requests answered with
    their source, dedented, in a fenced block; private ones and functions over the line limit are left out."""
    corpus = _module()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "things.py").write_text(MODULE)
    records = corpus.code_records([tmp_path], max_lines=20, rng=random.Random(0))
    by_name = {r["response"].splitlines()[1].split("(")[0].replace("def ", ""): r for r in records}
    assert set(by_name) == {"chunked", "has_close_elements", "size"}
    assert by_name["size"]["response"] == (
        '```python\ndef size(self):\n    """The number of items in the box, counted every time it is asked for."""\n'
        "    return 0\n```"
    )
    assert "chunked(iterable, n)" in by_name["chunked"]["prompt"] and "More text" not in by_name["chunked"]["prompt"]
    assert {r["source"] for r in records} == {"code"}
    assert corpus.code_records([tmp_path], max_lines=6, rng=random.Random(0)) != records  # chunked is 9 lines


def test_paragraph_chunks_keep_paragraphs_whole_up_to_the_limit():
    corpus = _module()
    text = "a" * 40 + "\n\n" + "b" * 40 + "\n\n" + "c" * 40
    assert corpus._paragraph_chunks(text, 90) == ["a" * 40 + "\n\n" + "b" * 40, "c" * 40]
    assert corpus._paragraph_chunks(text, 30) == ["a" * 30, "b" * 30, "c" * 30]


def test_records_quoting_a_benchmark_prompt_are_dropped(tmp_path):
    """The whole script on a package folder and a benchmark set: the function whose docstring opens like a
    benchmark prompt (its first eight words) is dropped and counted; the others are written. Mutation run
    once: the filter's shingle test negated (``not any(...)``): fails (the quoting record kept, the others
    dropped)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "things.py").write_text(MODULE)
    evals = tmp_path / "evals"
    evals.mkdir()
    prompt = "Check if in given list of numbers, are any two numbers closer to each other than threshold.\n>>> x"
    (evals / "humaneval.jsonl").write_text(json.dumps({"prompt": prompt}) + "\n")
    out = tmp_path / "corpus.jsonl"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--site-packages", str(tmp_path / "pkg"),
                           "--eval-datasets", str(evals), "--no-stdlib"], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [r for r in records if r["source"] == "code"]
    assert sorted(r["response"].splitlines()[1][:12] for r in mine) == ["def chunked(", "def size(sel"]
    assert "; 1 dropped as quoting a benchmark prompt" in done.stdout
    assert not any("closer to each other" in r["prompt"] + r["response"] for r in records)
