"""Training prompts for the default draft: chat, maths and code, all from PyPI packages (none of them is a
benchmark prompt of ``shared/eval_datasets``).

Three sources, each read from a downloaded wheel (nothing is imported from it except mathgenerator,
whose generators have to run):

- chat: questions from ``chitchat-dataset`` 0.9.0 (MIT; BYU PCC lab's Chit-Chat Challenge): messages
  ending in "?" with 6 to 40 words, deduplicated;
- maths: problems drawn from the 125 generators of ``mathgenerator`` 1.5.0 (MIT; arithmetic, algebra,
  geometry, statistics, calculus, number bases), each wrapped in one of a few instructions;
- code: programming tasks written from the public functions of ``more-itertools`` (MIT), ``toolz``
  (BSD-3-Clause) and ``boltons`` (BSD-3-Clause): the signature and the first paragraph of the docstring
  turned into "write this function" / "explain this" / "write a test" requests.

    pip download --no-deps -d wheels chitchat-dataset==0.9.0 mathgenerator==1.5.0 \
        more-itertools==11.2.1 toolz==1.2.0 boltons==26.2.0
    pip install scipy sympy   # mathgenerator's generators import them
    python scripts/prepare_training_prompts.py --wheels wheels --chat 600 --maths 500 --code 500 \
        --out prompts.jsonl

Writes ``{"prompt": ..., "source": ...}`` JSON lines, the three sources interleaved after a seeded shuffle.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import tempfile
import zipfile
from pathlib import Path

MATHS_TEMPLATES = (
    "Solve this step by step: {problem}",
    "{problem} Show your work.",
    "Please work out the following and explain each step.\n{problem}",
    "Can you help me with this maths problem? {problem}",
    "Compute the answer and explain how you got it: {problem}",
)
CODE_TEMPLATES = (
    "Write a Python function `{name}({args})`. {doc}",
    "Implement `{name}({args})` in Python. Specification: {doc}",
    "Explain what this Python function does and show an example of calling it.\n"
    "def {name}({args}):\n    \"\"\"{doc}\"\"\"",
    "Write a short Python implementation of `{name}` with a docstring and one usage example. {doc}",
    "Write unit tests with pytest for a function `{name}({args})`. {doc}",
)
CODE_WHEELS = ("more_itertools", "toolz", "boltons")


def _wheel(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        raise SystemExit(f"no {prefix}-*.whl in {folder}: run the pip download command of this script's docstring")
    return found[-1]


def chat_prompts(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        dataset = json.loads(archive.read("chitchat_dataset/dataset.json"))
    seen, found = set(), []
    for conversation in dataset.values():
        for group in conversation["messages"]:
            for message in group:
                text = " ".join(message["text"].split())
                if text.endswith("?") and 6 <= len(text.split()) <= 40 and text.lower() not in seen:
                    seen.add(text.lower())
                    found.append(text)
    return found


def maths_prompts(wheel: Path, count: int, rng: random.Random) -> list[str]:
    """``count`` problems, cycling over every generator that runs, each seeded from ``rng``."""
    unpacked = tempfile.mkdtemp(prefix="mathgenerator-")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    sys.path.insert(0, unpacked)
    import mathgenerator  # noqa: PLC0415  (only importable after unpacking)
    import random as global_random  # mathgenerator draws from the global generator

    generators = [entry[2] for entry in mathgenerator.getGenList()]
    found, seen = [], set()
    attempts = 0
    while len(found) < count and attempts < 50 * count:
        generator = generators[attempts % len(generators)]
        attempts += 1
        global_random.seed(rng.getrandbits(32))
        try:
            problem, _solution = generator()
        except Exception:  # a few generators fail on some draws; skip the draw
            continue
        problem = " ".join(str(problem).split())
        if not problem or len(problem) > 400 or problem in seen:
            continue
        seen.add(problem)
        found.append(rng.choice(MATHS_TEMPLATES).format(problem=problem))
    return found


def _first_paragraph(doc: str) -> str:
    paragraph = doc.strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def code_tasks(wheel: Path) -> list[tuple[str, str, str]]:
    """(name, arguments, first docstring paragraph) for each public top-level function of the wheel."""
    tasks = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(archive.namelist()):
            if not member.endswith(".py") or "/tests/" in member or member.split("/")[-1].startswith("test"):
                continue
            try:
                tree = ast.parse(archive.read(member).decode("utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in tree.body:
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                text = _first_paragraph(doc)
                if 30 <= len(text) <= 500 and ">>>" not in text:
                    tasks.append((node.name, ast.unparse(node.args), text))
    return tasks


def code_prompts(folder: Path, count: int, rng: random.Random) -> list[str]:
    tasks = []
    for prefix in CODE_WHEELS:
        tasks.extend(code_tasks(_wheel(folder, prefix)))
    rng.shuffle(tasks)
    found = []
    for index in range(min(count, len(tasks) * len(CODE_TEMPLATES))):
        name, args, doc = tasks[index % len(tasks)]
        template = CODE_TEMPLATES[(index // len(tasks) + rng.randrange(len(CODE_TEMPLATES))) % len(CODE_TEMPLATES)]
        found.append(template.format(name=name, args=args, doc=doc))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", required=True, help="folder with the downloaded wheels")
    parser.add_argument("--chat", type=int, default=600)
    parser.add_argument("--maths", type=int, default=500)
    parser.add_argument("--code", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    folder = Path(args.wheels)
    rng = random.Random(args.seed)
    chat = chat_prompts(_wheel(folder, "chitchat_dataset"))
    rng.shuffle(chat)
    rows = [("chat", text) for text in chat[: args.chat]]
    rows += [("maths", text) for text in maths_prompts(_wheel(folder, "mathgenerator"), args.maths, rng)]
    rows += [("code", text) for text in code_prompts(folder, args.code, rng)]
    rng.shuffle(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for source, text in rows:
            handle.write(json.dumps({"prompt": text, "source": source}, ensure_ascii=False) + "\n")
    counts = {name: sum(1 for source, _ in rows if source == name) for name in ("chat", "maths", "code")}
    print(f"{len(rows)} prompts written to {out}: {counts}")


if __name__ == "__main__":
    main()
