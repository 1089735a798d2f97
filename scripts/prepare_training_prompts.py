"""Training prompts for the default draft: chat, maths, code and explanations, from PyPI packages and from
files every machine here has (none of them is a benchmark prompt of ``shared/eval_datasets``).

Sources (nothing is imported from a wheel except mathgenerator, whose generators have to run):

- chat: questions from ``chitchat-dataset`` 0.9.0 (MIT; BYU PCC lab's Chit-Chat Challenge): messages
  ending in "?" with 6 to 40 words, deduplicated;
- maths: problems drawn from the 125 generators of ``mathgenerator`` 1.5.0 (MIT; arithmetic, algebra,
  geometry, statistics, calculus, number bases), each wrapped in one of a few instructions;
- code: programming tasks written from the public functions of ``more-itertools`` (MIT), ``toolz``
  (BSD-3-Clause) and ``boltons`` (BSD-3-Clause): the signature and the first paragraph of the docstring
  turned into "write this function" / "explain this" / "write a test" requests;
- stdlib code (``--stdlib-code``): the same requests from the public functions and methods with docstrings of
  the running Python's standard library (PSF licence; tests, IDLE, tkinter and lib2to3 left out);
- Python topics (``--python-topics``): "explain this part of the language" requests from the help topics of
  the standard library's ``pydoc_data`` (the keywords and statements of the language reference);
- software (``--software``): "what is this and how would I use it" requests from the package descriptions of
  the machine's Debian package database (``/var/lib/dpkg/status``; the descriptions' own licences are the
  packages');
- writing (``--writing``): writing, role-play, advice and rewriting requests (the kinds of task chat benchmarks
  ask for) built around statements of ``chitchat-dataset`` (messages not ending in "?", 12 to 60 words).

``--exclude earlier.jsonl`` leaves out every prompt of an earlier prompt file, so that a second round of
self-distillation answers new prompts only (the default draft's 2026-12-06 round: ``--seed 1 --exclude`` the
2026-12-02 file).

    pip download --no-deps -d wheels chitchat-dataset==0.9.0 mathgenerator==1.5.0 \
        more-itertools==11.2.1 toolz==1.2.0 boltons==26.2.0
    pip install scipy sympy   # mathgenerator's generators import them
    python scripts/prepare_training_prompts.py --wheels wheels --chat 600 --maths 500 --code 500 \
        --out prompts.jsonl
    # the default draft's 2026-12-02 data: every source, many more prompts
    python scripts/prepare_training_prompts.py --wheels wheels --chat 3000 --maths 3000 --code 1500 \
        --stdlib-code 3000 --python-topics 79 --software 700 --out prompts.jsonl

Writes ``{"prompt": ..., "source": ...}`` JSON lines, the three sources interleaved after a seeded shuffle.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
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
TOPIC_TEMPLATES = (
    "Explain {topic} in Python, with a short example.",
    "How does {topic} work in Python? Give an example and a common mistake.",
    "I am learning Python. What is {topic} and when should I use it?",
)
SOFTWARE_TEMPLATES = (
    "What is {name}? It is described as \"{summary}\". Explain what it is for and how someone would use it.",
    "Explain to a beginner what this software does and give one example of using it: {name}, {summary}. {details}",
    "My colleague suggested installing {name} ({summary}). What problem does it solve, and what are the alternatives?",
)
WRITING_TEMPLATES = (
    "Write a short blog post inspired by this remark from a friend: \"{text}\"",
    "Someone wrote to you: \"{text}\" Write a warm, helpful reply.",
    "Rewrite this message so it sounds more formal and polite: \"{text}\"",
    "Pretend you are a friendly travel agent. A customer says: \"{text}\" How do you respond?",
    "Summarise the following in one sentence, then give one piece of advice: \"{text}\"",
    "Write a short story of about 150 words that begins with this line: \"{text}\"",
    "Give three thoughtful follow-up questions you could ask someone who said: \"{text}\"",
    "Act as a career coach. Your client tells you: \"{text}\" What do you suggest?",
    "Write a persuasive paragraph that agrees or disagrees with this opinion: \"{text}\"",
    "Turn this into a cheerful social media post: \"{text}\"",
)
STDLIB_SKIP = ("test/", "idlelib/", "lib2to3/", "tkinter/", "turtledemo/", "site-packages/", "ensurepip/")


def _wheel(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        raise SystemExit(f"no {prefix}-*.whl in {folder}: run the pip download command of this script's docstring")
    return found[-1]


def _chitchat_messages(wheel: Path, keep) -> list[str]:
    """The messages of ``chitchat-dataset`` (whitespace collapsed) that ``keep(text)`` accepts, each once
    (case-insensitive), in the dataset's order."""
    with zipfile.ZipFile(wheel) as archive:
        dataset = json.loads(archive.read("chitchat_dataset/dataset.json"))
    seen, found = set(), []
    for conversation in dataset.values():
        for group in conversation["messages"]:
            for message in group:
                text = " ".join(message["text"].split())
                if keep(text) and text.lower() not in seen:
                    seen.add(text.lower())
                    found.append(text)
    return found


def chat_prompts(wheel: Path) -> list[str]:
    return _chitchat_messages(wheel, lambda text: text.endswith("?") and 6 <= len(text.split()) <= 40)


def writing_prompts(wheel: Path, count: int, rng: random.Random) -> list[str]:
    """``count`` writing requests, each a template of ``WRITING_TEMPLATES`` around a chitchat statement."""
    statements = _chitchat_messages(wheel, lambda text: not text.endswith("?") and 12 <= len(text.split()) <= 60)
    rng.shuffle(statements)
    return [rng.choice(WRITING_TEMPLATES).format(text=text) for text in statements[:count]]


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


def _function_tasks(source: str, nodes_of) -> list[tuple[str, str, str]]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    tasks = []
    for node in nodes_of(tree):
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        text = _first_paragraph(doc)
        if 30 <= len(text) <= 500 and ">>>" not in text:
            args = node.args
            if args.args and args.args[0].arg in ("self", "cls"):
                args.args = args.args[1:]
            tasks.append((node.name, ast.unparse(args), text))
    return tasks


def code_tasks(wheel: Path) -> list[tuple[str, str, str]]:
    """(name, arguments, first docstring paragraph) for each public top-level function of the wheel."""
    tasks = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(archive.namelist()):
            if not member.endswith(".py") or "/tests/" in member or member.split("/")[-1].startswith("test"):
                continue
            try:
                source = archive.read(member).decode("utf-8")
            except UnicodeDecodeError:
                continue
            tasks.extend(_function_tasks(source, lambda tree: tree.body))
    return tasks


def stdlib_code_tasks() -> list[tuple[str, str, str]]:
    """The same triples for the public functions and methods of the running Python's standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    tasks = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(STDLIB_SKIP) or "/test" in relative:
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        tasks.extend(_function_tasks(source, ast.walk))
    return tasks


def _fill_code_templates(tasks: list[tuple[str, str, str]], count: int, rng: random.Random) -> list[str]:
    rng.shuffle(tasks)
    found = []
    for index in range(min(count, len(tasks) * len(CODE_TEMPLATES))):
        name, args, doc = tasks[index % len(tasks)]
        template = CODE_TEMPLATES[(index // len(tasks) + rng.randrange(len(CODE_TEMPLATES))) % len(CODE_TEMPLATES)]
        found.append(template.format(name=name, args=args, doc=doc))
    return found


def python_topic_prompts(count: int, rng: random.Random) -> list[str]:
    """Requests about the language reference topics of ``pydoc_data`` (their names, e.g. "the with statement")."""
    from pydoc_data.topics import topics  # noqa: PLC0415

    names = sorted(topics)
    rng.shuffle(names)
    found = []
    for name in names[:count]:
        topic = {"atom-identifiers": "identifiers", "typesseq-mutable": "mutable sequence types"}.get(name, name)
        topic = topic.replace("-", " ")
        found.append(rng.choice(TOPIC_TEMPLATES).format(topic=f"`{topic}`"))
    return found


DPKG_STATUS = Path("/var/lib/dpkg/status")


def debian_packages(status: Path = DPKG_STATUS) -> list[dict[str, str]]:
    """The fields of every package with a description in a Debian package database (continuation lines
    joined to their field with newlines, stripped); none when the file is missing."""
    if not status.is_file():
        return []
    packages = []
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields and "Description" in fields:
            packages.append(fields)
    return packages


def software_prompts(count: int, rng: random.Random, status: Path = DPKG_STATUS) -> list[str]:
    """Requests built from the Debian package database: each package's name, summary and first sentence."""
    found = []
    for fields in debian_packages(status):
        summary, _, details = fields["Description"].partition("\n")
        details = " ".join(w for w in details.replace("\n.", " ").split() if w != ".")
        details = details.split(". ")[0][:300]
        found.append(rng.choice(SOFTWARE_TEMPLATES).format(name=fields["Package"], summary=summary, details=details))
    rng.shuffle(found)
    return found[:count]


def code_prompts(folder: Path, count: int, rng: random.Random) -> list[str]:
    tasks = []
    for prefix in CODE_WHEELS:
        tasks.extend(code_tasks(_wheel(folder, prefix)))
    return _fill_code_templates(tasks, count, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", required=True, help="folder with the downloaded wheels")
    parser.add_argument("--chat", type=int, default=600)
    parser.add_argument("--maths", type=int, default=500)
    parser.add_argument("--code", type=int, default=500)
    parser.add_argument("--stdlib-code", type=int, default=0, help="code requests from the standard library")
    parser.add_argument("--python-topics", type=int, default=0, help="language-reference topics (at most 79)")
    parser.add_argument("--software", type=int, default=0, help="requests from the Debian package database")
    parser.add_argument("--writing", type=int, default=0, help="writing and role-play requests around chat statements")
    parser.add_argument("--exclude", help="a prompt file (JSON lines) whose prompts are left out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    folder = Path(args.wheels)
    rng = random.Random(args.seed)
    excluded = set()
    if args.exclude:
        with open(args.exclude, encoding="utf-8") as handle:
            excluded = {json.loads(line)["prompt"] for line in handle if line.strip()}
    chat = [text for text in chat_prompts(_wheel(folder, "chitchat_dataset")) if text not in excluded]
    rng.shuffle(chat)
    rows = [("chat", text) for text in chat[: args.chat]]
    if args.writing:
        rows += [("writing", text) for text in writing_prompts(_wheel(folder, "chitchat_dataset"), args.writing, rng)]
    rows += [("maths", text) for text in maths_prompts(_wheel(folder, "mathgenerator"), args.maths, rng)]
    rows += [("code", text) for text in code_prompts(folder, args.code, rng)]
    if args.stdlib_code:
        rows += [("stdlib-code", text) for text in _fill_code_templates(stdlib_code_tasks(), args.stdlib_code, rng)]
    if args.python_topics:
        rows += [("python-topics", text) for text in python_topic_prompts(args.python_topics, rng)]
    if args.software:
        rows += [("software", text) for text in software_prompts(args.software, rng)]
    before = len(rows)
    rows = [(source, text) for source, text in rows if text not in excluded]
    if excluded:
        print(f"left out {before - len(rows)} prompts already in {args.exclude}")
    rng.shuffle(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for source, text in rows:
            handle.write(json.dumps({"prompt": text, "source": source}, ensure_ascii=False) + "\n")
    counts = {name: sum(1 for source, _ in rows if source == name) for name in dict.fromkeys(s for s, _ in rows)}
    print(f"{len(rows)} prompts written to {out}: {counts}")


if __name__ == "__main__":
    main()
