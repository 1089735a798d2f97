"""scripts/prepare_training_prompts.py: the default draft's training prompts from PyPI wheels (chat, maths,
code). Built here on small wheels made in the test, so it runs offline without the real packages."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_training_prompts.py"

CODE_MODULE = '''
def chunked(iterable, n, strict=False):
    """Break *iterable* into lists of length *n*, the last one shorter if needed.

    More text that must not appear in the prompt.
    """


def _private(x):
    """A private helper that must be skipped even with a long docstring here."""


def short(x):
    """Too short."""


def with_example(x):
    """Return x.
    >>> with_example(1)
    """
'''

MATHS_MODULE = '''
import random


def _add():
    a, b = random.randint(0, 999), random.randint(0, 999)
    return f"${a}+{b}=$", f"${a + b}$"


def _broken():
    raise IndexError("string index out of range")


def getGenList():
    return [[0, "Addition", _add, "addition", "basic_math", []], [1, "Broken", _broken, "broken", "misc", []]]
'''


def _wheel(folder: Path, name: str, files: dict[str, str]) -> None:
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)


@pytest.fixture()
def wheels(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    messages = [[{"text": f"What is your favourite thing number {i} of all?"} for i in range(30)],
                [{"text": "What is your favourite thing number 3 of all?"}, {"text": "Too short?"}, {"text": "No question mark here at all"}],
                [{"text": f"I spent weekend number {i} walking by the river with my dog and my old friends"} for i in range(12)]]
    _wheel(folder, "chitchat_dataset", {"chitchat_dataset/dataset.json": json.dumps({"c1": {"messages": messages}})})
    _wheel(folder, "mathgenerator", {"mathgenerator/__init__.py": MATHS_MODULE})
    for name in ("more_itertools", "toolz", "boltons"):
        _wheel(folder, name, {f"{name}/recipes.py": CODE_MODULE.replace("chunked", f"chunked_{name}"),
                              f"{name}/tests/test_x.py": CODE_MODULE.replace("chunked", "from_tests")})
    return folder


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_training_prompts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(wheels, out, *extra):
    script = _load_script()
    argv = sys.argv
    sys.argv = [str(SCRIPT), "--wheels", str(wheels), "--out", str(out), *extra]
    try:
        script.main()
    finally:
        sys.argv = argv
        sys.modules.pop("mathgenerator", None)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_mixture_has_the_asked_counts_and_only_wanted_texts(wheels, tmp_path):
    rows = _run(wheels, tmp_path / "p.jsonl", "--chat", "10", "--maths", "7", "--code", "6")
    by = {s: [r["prompt"] for r in rows if r["source"] == s] for s in ("chat", "maths", "code")}
    assert {s: len(v) for s, v in by.items()} == {"chat": 10, "maths": 7, "code": 6}
    assert all(p.endswith("?") and len(p.split()) >= 6 for p in by["chat"])
    assert len(set(p.lower() for p in by["chat"])) == 10  # the repeated question counts once
    assert all("+" in p for p in by["maths"]) and len(set(by["maths"])) == 7  # the broken generator is skipped
    # only the public, documented functions outside tests/, first paragraph only
    for prompt in by["code"]:
        assert "chunked_" in prompt and "Break *iterable*" in prompt
        assert "More text" not in prompt and "_private" not in prompt and "from_tests" not in prompt and ">>>" not in prompt
    assert {p.split("chunked_")[1].split("(")[0].split("`")[0] for p in by["code"]} == {"more_itertools", "toolz", "boltons"}


def test_same_seed_same_file_other_seed_other_order(wheels, tmp_path):
    first = _run(wheels, tmp_path / "a.jsonl", "--chat", "8", "--maths", "5", "--code", "3")
    again = _run(wheels, tmp_path / "b.jsonl", "--chat", "8", "--maths", "5", "--code", "3")
    other = _run(wheels, tmp_path / "c.jsonl", "--chat", "8", "--maths", "5", "--code", "3", "--seed", "1")
    assert first == again
    assert first != other


def test_missing_wheel_is_one_clear_message(wheels, tmp_path):
    (next(wheels.glob("toolz-*.whl"))).unlink()
    with pytest.raises(SystemExit, match="no toolz-\\*.whl"):
        _run(wheels, tmp_path / "p.jsonl")


def test_writing_requests_wrap_chat_statements_and_exclude_leaves_out_earlier_prompts(wheels, tmp_path):
    """Writing requests are templates around the chat *statements* (12-60 words, no question mark), and
    ``--exclude`` drops every prompt of an earlier file from every source. Mutation run once: reading the
    exclusions but not filtering the chat questions by them (``if text not in excluded`` removed from the chat
    list) fails: the earlier questions are drawn again, dropped at the end, and fewer than 10 are left."""
    rows = _run(wheels, tmp_path / "w.jsonl", "--chat", "5", "--writing", "6", "--maths", "0", "--code", "0")
    writing = [r["prompt"] for r in rows if r["source"] == "writing"]
    assert len(writing) == 6 and len(set(writing)) == 6
    assert all("walking by the river" in p and "?" not in p.split('"')[1] for p in writing)
    first = _run(wheels, tmp_path / "first.jsonl", "--chat", "10", "--maths", "3", "--code", "0")
    second = _run(wheels, tmp_path / "second.jsonl", "--chat", "10", "--maths", "3", "--code", "0",
                  "--seed", "1", "--exclude", str(tmp_path / "first.jsonl"))
    earlier = {r["prompt"] for r in first}
    assert not earlier & {r["prompt"] for r in second}
    # 31 distinct questions: 10 taken before, 10 of the 21 others now
    assert sum(r["source"] == "chat" for r in second) == 10
