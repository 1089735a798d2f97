"""Self-distillation: the target answers the training prompts itself, as the reference recipe does.

Prompts are rendered with the target's chat template (generation prompt added), sorted by length and
generated in left-padded batches (greedy by default, or sampled with the given temperature / top-p /
top-k). Each answer is written as one JSON line holding the chat (``messages``), the exact token ids
(``input_ids``: prompt then generated tokens up to and including the end-of-turn token) and the
``assistant_mask``, so training sees precisely the tokens the target produced. Lines already in the
output file (matched by ``index``) are skipped, so an interrupted run continues where it stopped.

Several processes can share the work: ``shard=(i, n)`` answers only the prompts whose index is ``i``
modulo ``n`` and writes ``<out>.part-i-of-n.jsonl`` beside ``out_path``. Every run skips the prompts
answered in ``out_path`` or in any of its part files; a run without a shard first moves the parts'
lines into ``out_path`` (so the shards' work ends in one file) and then answers whatever is left.

With a :class:`~.target_outputs.FeatureCache`, the target's layer outputs from these very generation
forwards are stored too, so training needs no target forward at all for these sequences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dspark_hf.training.data import DataError, read_numbered_records, record_messages
from dspark_hf.training.target_outputs import FeatureCache, GenerationRecorder, sequence_key


@dataclass
class SamplingConfig:
    """How the target answers: greedy when ``do_sample`` is False; ``max_new_tokens`` per answer."""

    max_new_tokens: int = 192
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    batch_size: int = 16
    max_prompt_tokens: int = 192


def part_path(out_path: str | Path, shard: tuple[int, int]) -> Path:
    """Where shard ``(i, n)`` of the answers for ``out_path`` is written."""
    out_path = Path(out_path)
    i, n = shard
    return out_path.with_name(f"{out_path.stem}.part-{i}-of-{n}{out_path.suffix}")


def _part_files(out_path: Path) -> list[Path]:
    return sorted(out_path.parent.glob(f"{out_path.stem}.part-*-of-*{out_path.suffix}"))


def _lines_by_index(path: Path) -> dict[int, str]:
    """``{index: line}`` of a JSON Lines answer file; a line cut short by a kill is dropped."""
    lines = {}
    if not path.is_file():
        return lines
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            lines[int(json.loads(line)["index"])] = line
        except (json.JSONDecodeError, KeyError, ValueError):
            continue  # the last line of a killed writer; its prompt is answered again
    return lines


def _done_indices(out_path: Path) -> set[int]:
    done = set(_lines_by_index(out_path))
    for part in _part_files(out_path):
        done |= set(_lines_by_index(part))
    return done


def merge_parts(out_path: str | Path) -> int:
    """Move the answers of ``out_path``'s part files into ``out_path`` (indices already there are kept
    once) and delete the parts; returns how many lines were added."""
    out_path = Path(out_path)
    parts = _part_files(out_path)
    if not parts:
        return 0
    have = _lines_by_index(out_path)
    added = {}
    for part in parts:
        for index, line in _lines_by_index(part).items():
            if index not in have and index not in added:
                added[index] = line
    tmp = out_path.with_name(f".{out_path.name}.merge")
    tmp.write_text("".join(line + "\n" for line in [*have.values(), *added.values()]), encoding="utf-8")
    tmp.replace(out_path)
    for part in parts:
        part.unlink()
    return len(added)


@torch.no_grad()
def self_distill(
    target, tokenizer, prompts_path: str | Path, out_path: str | Path, sampling: SamplingConfig, seed: int = 0,
    feature_cache: FeatureCache | None = None, layer_ids: list[int] | None = None,
    shard: tuple[int, int] | None = None,
) -> Path:
    """Answer every prompt of ``prompts_path`` with ``target`` and write ``out_path`` (JSON Lines).

    Records keep their earlier turns; the last turn must be a user turn. Prompts longer than
    ``sampling.max_prompt_tokens`` are skipped. With ``feature_cache`` (and the draft's ``layer_ids``)
    the generation forwards' features are cached. With ``shard=(i, n)`` only the prompts whose index
    is ``i`` modulo ``n`` are answered, into :func:`part_path`. Returns the file written.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    else:
        merge_parts(out_path)
    records = read_numbered_records(prompts_path)
    done = _done_indices(out_path)
    write_path = part_path(out_path, shard) if shard is not None else out_path
    todo = []
    for index, (where, record) in enumerate(records):
        messages = record_messages(record)
        if messages is None:
            raise DataError(f"{where}: self-distillation needs prompt or messages records (this one has {sorted(record)}).")
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if index in done or not messages or (shard is not None and index % shard[1] != shard[0]):
            continue
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        if len(ids) <= sampling.max_prompt_tokens:
            todo.append((index, messages, ids))
    todo.sort(key=lambda item: len(item[2]))
    eos_ids = target.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    device = next(target.parameters()).device
    torch.manual_seed(seed)
    target.eval()
    generated_total, start = 0, time.perf_counter()
    recorder = GenerationRecorder(target, layer_ids) if feature_cache is not None else None
    bar = tqdm(total=len(todo), desc="self-distill", unit="prompt", dynamic_ncols=True)
    with write_path.open("a", encoding="utf-8") as out:
        for b in range(0, len(todo), sampling.batch_size):
            batch = todo[b : b + sampling.batch_size]
            width = max(len(ids) for _, _, ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (_, _, ids) in enumerate(batch):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.do_sample, pad_token_id=pad_id)
            if sampling.do_sample:
                kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if recorder is not None:
                recorder.reset()
            output = target.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            lines, entries = [], {}
            for row, (index, messages, ids) in enumerate(batch):
                answer = []
                for token in output[row, width:].tolist():
                    answer.append(token)
                    if token in eos_ids:
                        break
                generated_total += len(answer)
                text = tokenizer.decode([t for t in answer if t not in eos_ids], skip_special_tokens=False)
                line = {
                    "index": index,
                    "messages": messages + [{"role": "assistant", "content": text}],
                    "input_ids": ids + answer,
                    "assistant_mask": [0] * len(ids) + [1] * len(answer),
                }
                lines.append(json.dumps(line, ensure_ascii=False) + "\n")
                if recorder is not None:
                    # every fed position: the prompt and all generated tokens but the last
                    length = len(ids) + len(answer) - 1
                    entries[sequence_key(line["input_ids"])] = recorder.outputs(row, width - len(ids), length)
            if feature_cache is not None:
                feature_cache.write_shard(f"distill-{next(iter(entries))}", entries)
            out.writelines(lines)
            out.flush()
            bar.update(len(batch))
            bar.set_postfix(gen_tok_per_s=f"{generated_total / (time.perf_counter() - start):.1f}")
    bar.close()
    if recorder is not None:
        recorder.close()
    return write_path
