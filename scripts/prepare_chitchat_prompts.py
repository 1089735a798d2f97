"""Training prompts for the default draft from the PyPI package ``chitchat-dataset`` (0.9.0, MIT licence,
BYU PCC lab's Chit-Chat Challenge conversations; none of them are benchmark prompts).

Keeps the questions people asked each other (messages ending in "?", 6 to 40 words), deduplicated,
shuffled with a fixed seed, and writes ``{"prompt": ...}`` JSON lines.

    pip download --no-deps -d /tmp/cc chitchat-dataset==0.9.0
    python scripts/prepare_chitchat_prompts.py --wheel /tmp/cc/chitchat_dataset-0.9.0-py3-none-any.whl \
        --count 1200 --out data/chitchat_prompts.jsonl

Without ``--wheel`` the installed package (``pip install chitchat-dataset``) is read.
"""

from __future__ import annotations

import argparse
import json
import random
import zipfile
from pathlib import Path


def load_dataset(wheel: str | None) -> dict:
    if wheel:
        with zipfile.ZipFile(wheel) as archive:
            return json.loads(archive.read("chitchat_dataset/dataset.json"))
    from importlib.resources import files

    return json.loads(files("chitchat_dataset").joinpath("dataset.json").read_text(encoding="utf-8"))


def questions(dataset: dict) -> list[str]:
    seen, found = set(), []
    for conversation in dataset.values():
        for group in conversation["messages"]:
            for message in group:
                text = " ".join(message["text"].split())
                words = text.split()
                if text.endswith("?") and 6 <= len(words) <= 40 and text.lower() not in seen:
                    seen.add(text.lower())
                    found.append(text)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", help="path of the chitchat-dataset wheel (default: the installed package)")
    parser.add_argument("--count", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    found = questions(load_dataset(args.wheel))
    random.Random(args.seed).shuffle(found)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for text in found[: args.count]:
            handle.write(json.dumps({"prompt": text}, ensure_ascii=False) + "\n")
    print(f"{min(args.count, len(found))} of {len(found)} questions written to {out}")


if __name__ == "__main__":
    main()
