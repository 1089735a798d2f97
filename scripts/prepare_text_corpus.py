"""Written answers for training a draft without self-distillation: requests paired with text that already
exists on the machine (code, documentation, package descriptions), for `dspark train --data` as
``{"prompt": ..., "response": ..., "source": ...}`` JSON lines (the response tokens are trained).

Why: self-distillation (the target writes every answer) runs at about 290 generated tokens/s on this
project's 2-core CPU, so 1.5M answer tokens take about 1.5 hours of both cores, while a forward over text
that already exists (the target's features, and its distribution at every position as the teacher) costs
a fraction of that. The draft still learns the target's next-token distribution (the loss compares the
draft with the target at every trained position); what it loses is that the answers are not the target's
own. The learning curve of a run on this corpus says whether that trade pays (docs/training.md).

Sources (all on every machine here; none is a benchmark prompt of ``shared/eval_datasets``, and a record
that quotes the first eight words of one is dropped):

- ``code``: the public functions with docstrings of the running Python's standard library and of the
  pure-Python packages installed beside it (``--site-packages``): "write this function" requests answered
  with the function's own source in a fenced block (at most ``--max-code-lines`` lines);
- ``topics``: the language-reference help topics of the standard library's ``pydoc_data``, answered with
  the topic's text in paragraphs of at most ``--max-chars`` characters ("explain ..." requests);
- ``packages``: "what is this package and how do I use it" answered with the start of each installed
  distribution's own description (its README);
- ``debian``: the same for the machine's Debian packages, answered with the package's long description.

    python scripts/prepare_text_corpus.py --out corpus.jsonl [--site-packages .venv/lib/python3.12/site-packages]
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_training_prompts import DPKG_STATUS, _first_paragraph, debian_packages  # noqa: E402

STDLIB_SKIP = ("test", "idlelib", "tkinter", "lib2to3", "turtledemo", "ensurepip", "site-packages", "dist-packages")
CODE_REQUESTS = (
    "Write a Python function `{name}({args})`. {doc}",
    "Implement `{name}({args})` in Python. Specification: {doc}",
    "Show me how `{name}` could be written in Python. {doc}",
)
TOPIC_REQUESTS = ("Explain {topic} in Python.", "How does {topic} work in Python?", "Tell me about {topic} in Python.")
PACKAGE_REQUESTS = ("What is the Python package `{name}`, and how do I use it?", "Tell me about `{name}`. {summary}")
DEBIAN_REQUESTS = ("What is the Debian package `{name}` ({summary})?", "What does `{name}` do?")


def code_records(roots: list[Path], max_lines: int, rng: random.Random) -> list[dict]:
    """A request per public function with a docstring, answered with its source."""
    records = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(STDLIB_SKIP) or "/test" in relative or "/_vendor/" in relative:
                continue
            try:
                source = path.read_text(encoding="utf-8")
                tree = ast.parse(source)
            except (UnicodeDecodeError, OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                if not doc or node.end_lineno - node.lineno + 1 > max_lines:
                    continue
                text = _first_paragraph(doc)
                if not 30 <= len(text) <= 400:
                    continue
                body = ast.get_source_segment(source, node)
                if body is None:
                    continue
                lines = body.splitlines()
                indent = min((len(x) - len(x.lstrip()) for x in lines[1:] if x.strip()), default=0)
                body = "\n".join([lines[0]] + [x[indent - 4:] if indent >= 4 else x for x in lines[1:]])
                args = ast.unparse(node.args)
                request = rng.choice(CODE_REQUESTS).format(name=node.name, args=args, doc=text)
                records.append({"prompt": request, "response": f"```python\n{body}\n```", "source": "code"})
    return records


def _paragraph_chunks(text: str, max_chars: int) -> list[str]:
    chunks, current = [], ""
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph[:max_chars]
    if current:
        chunks.append(current)
    return chunks


def topic_records(max_chars: int, rng: random.Random) -> list[dict]:
    from pydoc_data.topics import topics  # noqa: PLC0415

    records = []
    for name in sorted(topics):
        topic = f"`{name.replace('-', ' ')}`"
        for index, chunk in enumerate(_paragraph_chunks(topics[name], max_chars)):
            request = rng.choice(TOPIC_REQUESTS).format(topic=topic)
            if index:
                request += f" (part {index + 1})"
            records.append({"prompt": request, "response": chunk, "source": "topics"})
    return records


def package_records(max_chars: int, rng: random.Random) -> list[dict]:
    records, seen = [], set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        description = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        chunks = _paragraph_chunks(description, max_chars)
        if not chunks or len(chunks[0]) < 200:
            continue
        summary = dist.metadata.get("Summary") or ""
        for index, chunk in enumerate(chunks[:6]):
            request = rng.choice(PACKAGE_REQUESTS).format(name=name, summary=summary)
            if index:
                request += f" (part {index + 1})"
            records.append({"prompt": request, "response": chunk, "source": "packages"})
    return records


def debian_records(rng: random.Random, status: Path = DPKG_STATUS) -> list[dict]:
    records = []
    for fields in debian_packages(status):
        summary, _, details = fields["Description"].partition("\n")
        text = "\n".join("" if x == "." else x for x in details.splitlines()).strip()
        if len(text) < 150:
            continue
        request = rng.choice(DEBIAN_REQUESTS).format(name=fields["Package"], summary=summary)
        records.append({"prompt": request, "response": text, "source": "debian"})
    return records


SHINGLE = 8  # words


def benchmark_openings(folder: Path) -> set[tuple[str, ...]]:
    """The first eight words of every benchmark prompt (of eight words or more) under ``folder``."""
    openings = set()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            for value in record.values():
                texts = value if isinstance(value, list) else [value]
                for text in texts:
                    words = tuple(text.split()[:SHINGLE]) if isinstance(text, str) else ()
                    if len(words) == SHINGLE:
                        openings.add(words)
    return openings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--site-packages", action="append", default=[], help="also take code from this folder")
    parser.add_argument("--no-stdlib", action="store_true", help="no code from the standard library")
    parser.add_argument("--eval-datasets", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "eval_datasets"))
    parser.add_argument("--max-code-lines", type=int, default=60)
    parser.add_argument("--max-chars", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    roots = ([] if args.no_stdlib else [Path(sysconfig.get_paths()["stdlib"])]) + [Path(p) for p in args.site_packages]
    sources = {
        "code": code_records(roots, args.max_code_lines, rng),
        "topics": topic_records(args.max_chars, rng),
        "packages": package_records(args.max_chars, rng),
        "debian": debian_records(rng),
    }
    records = [r for rs in sources.values() for r in rs]
    openings = benchmark_openings(Path(args.eval_datasets))
    if not openings:
        raise SystemExit(f"no benchmark prompts found under {args.eval_datasets} (needed to keep them out)")
    kept, dropped, seen = [], 0, set()
    for record in records:
        words = (record["prompt"] + " " + record["response"]).split()
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        if any(tuple(words[i:i + SHINGLE]) in openings for i in range(len(words) - SHINGLE + 1)):
            dropped += 1
            continue
        kept.append(record)
    rng.shuffle(kept)
    with open(args.out, "w", encoding="utf-8") as f:
        for record in kept:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    counts = {s: sum(r["source"] == s for r in kept) for s in sources}
    chars = sum(len(r["response"]) for r in kept)
    print(f"{len(kept)} records ({counts}), {chars / 1e6:.1f}M response characters; {dropped} dropped as quoting a benchmark prompt")


if __name__ == "__main__":
    main()
