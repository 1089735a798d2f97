"""Model cards for drafts trained with this library, carrying the figures measured on them.

:func:`render_draft_card` returns README.md text: YAML metadata (``library_name: dspark_hf``,
``base_model`` = the target, ``pipeline_tag: text-generation``, tags, license), what the draft is (from
its config), a usage snippet, and a table of the measured figures with the command and machine that
produced them. No figure is invented: sections without figures say none were measured.
:func:`figures_from_telemetry` turns a ``GenerationTelemetry`` into one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig

LIBRARY_NAME = "dspark_hf"
BASE_TAGS = ("dspark", "speculative-decoding", "draft-model")


@dataclass(frozen=True)
class MeasuredFigure:
    """One measured row: a benchmark (or prompt set), mean accepted tokens per round (``tau``, bonus
    included), acceptance rate, and optionally a speed-up, with where it was measured."""

    benchmark: str
    tau: float
    acceptance_rate: float | None = None
    speedup: float | None = None
    rounds: int | None = None
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MeasuredFigure":
        return cls(**{k: data[k] for k in ("benchmark", "tau", "acceptance_rate", "speedup", "rounds", "source") if k in data})


def figures_from_telemetry(benchmark: str, telemetry: Any, source: str = "") -> MeasuredFigure:
    """A :class:`MeasuredFigure` from a ``GenerationTelemetry`` (``.tau``, ``.acceptance_rate``, ``.steps``)."""
    return MeasuredFigure(benchmark, float(telemetry.tau), float(telemetry.acceptance_rate), None, len(telemetry.steps), source)


def _describe(config: DSparkConfig) -> str:
    kind = "DFlash baseline (no sequential head)" if config.markov_rank == 0 else (
        f"DSpark draft with a {config.markov_head_type} sequential (Markov) head of rank {config.markov_rank}")
    parts = [
        f"- {kind}",
        f"- backbone {config.backbone}, {config.num_hidden_layers} layers, hidden size {config.hidden_size}",
        f"- block size {config.block_size}; reads target layers {list(config.target_layer_ids)} of {config.num_target_layers}",
        f"- confidence head: {'yes' if config.enable_confidence_head else 'no'}",
        f"- embedding and LM head: {'taken from the target at load time' if config.embeddings_from_target else 'stored in this repo'}",
    ]
    return "\n".join(parts)


def _figures_table(figures: list[MeasuredFigure]) -> str:
    if not figures:
        return "No figures were measured for this draft yet."
    rows = ["| benchmark | tau (accepted tokens / round) | acceptance rate | speed-up | rounds | measured with |",
            "| --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        def fmt(value, spec):
            return "-" if value is None else format(value, spec)
        rows.append(f"| {f.benchmark} | {f.tau:.2f} | {fmt(f.acceptance_rate, '.3f')} | {fmt(f.speedup, '.2f')}"
                    f" | {fmt(f.rounds, 'd')} | {f.source or '-'} |")
    return "\n".join(rows)


def render_draft_card(
    config: DSparkConfig,
    *,
    repo_id: str,
    base_model: str | None,
    figures: list[MeasuredFigure | dict[str, Any]] | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the Hub's metadata key
    datasets: list[str] | None = None,
    extra_tags: list[str] | None = None,
) -> str:
    """README.md text for a draft trained with this library (see module docstring)."""
    rows = [f if isinstance(f, MeasuredFigure) else MeasuredFigure.from_dict(f) for f in figures or []]
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        base_model=base_model,
        pipeline_tag="text-generation",
        tags=list(BASE_TAGS) + ([] if config.markov_rank else ["dflash"]) + list(extra_tags or []),
        license=license,
        datasets=datasets,
    )
    target = base_model or "its target model"
    body = f"""
# {repo_id.split('/')[-1]}

A speculative-decoding draft for {target} trained with the `dspark_hf` library (the DSpark method and
DeepSpec training recipe). It proposes a block of {config.block_size} tokens
per round from the target's own hidden states; the target verifies them, so the output is exactly what
the target alone would produce.

{_describe(config)}

## Usage

```python
import dspark_hf
from transformers import AutoModelForCausalLM, AutoTokenizer

target = AutoModelForCausalLM.from_pretrained("{base_model or '<target>'}")
tokenizer = AutoTokenizer.from_pretrained("{base_model or '<target>'}")
draft = dspark_hf.DSparkDraft.from_pretrained("{repo_id}")
ids = tokenizer("Explain speculative decoding.", return_tensors="pt").input_ids
out = target.generate(ids, assistant_model=draft, max_new_tokens=128)
print(tokenizer.decode(out[0]))
```

## Measured figures

{_figures_table(rows)}
"""
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body))
