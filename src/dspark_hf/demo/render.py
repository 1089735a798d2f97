"""What the demo page shows, as plain HTML strings and a matplotlib figure (no Gradio here).

- :func:`answer_html`: the answer as one ``<span class="tok KIND">`` per token inside one
  ``<span class="dsp-step">`` per drafting round (alternate rounds shaded), with a tooltip per token,
  plus a hidden ``<div id=...-data>`` whose ``data-json`` attribute holds
  :meth:`~.provenance.Transcript.to_dict` (the per-round counts, for tests and scripts).
- :func:`stats_html`: tokens, rounds, tau, acceptance and tokens/s cards (and plain decoding's when
  compared).
- :func:`step_chart`: proposed / verified / accepted per round as grouped bars.
"""

from __future__ import annotations

import html
import json

from matplotlib.figure import Figure

from dspark_hf.demo.provenance import BONUS, CORRECTION, DRAFT, LOOKUP, PLAIN, TARGET, Transcript

KIND_LABELS = {
    DRAFT: "draft token, accepted by the target",
    LOOKUP: "prompt-lookup token (copied from earlier text instead of drafting), accepted by the target",
    CORRECTION: "target's correction (a draft token was rejected here)",
    BONUS: "target's bonus token (every verified draft token was accepted)",
    TARGET: "target's token (no draft token verified)",
    PLAIN: "plain decoding",
}
LEGEND_LABELS = {DRAFT: "accepted draft token", LOOKUP: "accepted prompt-lookup token", CORRECTION: "target correction", BONUS: "target bonus token",
                 TARGET: "target only (nothing verified)"}
COLORS = {"proposed": "#cbd5e1", "verified": "#60a5fa", "accepted": "#16a34a"}

CSS = """
.dsp-answer { white-space: pre-wrap; line-height: 1.9; font-size: 15px; padding: 10px 12px; min-height: 120px;
  border: 1px solid var(--border-color-primary); border-radius: 8px; background: var(--block-background-fill); }
.dsp-answer.empty { color: var(--body-text-color-subdued); font-style: italic; }
.dsp-step { border-radius: 3px; padding: 2px 0; }
.dsp-step.odd { background: rgba(148, 163, 184, 0.18); }
.dsp-step + .dsp-step { box-shadow: inset 1px 0 0 rgba(100, 116, 139, 0.45); }
.tok { border-bottom: 3px solid transparent; }
.tok.draft { border-bottom-color: #16a34a; background: rgba(22, 163, 74, 0.10); }
.tok.lookup { border-bottom-color: #0d9488; background: rgba(13, 148, 136, 0.10); }
.tok.correction { border-bottom-color: #ea580c; background: rgba(234, 88, 12, 0.10); }
.tok.bonus { border-bottom-color: #2563eb; background: rgba(37, 99, 235, 0.10); }
.tok.target { border-bottom-color: #94a3b8; }
.tok.special { font-size: 11px; color: var(--body-text-color-subdued); font-family: var(--font-mono); }
.dsp-legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 13px; margin: 2px 0 6px 0; }
.dsp-legend .tok { padding: 0 4px; }
.dsp-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 8px; }
.dsp-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
  background: var(--block-background-fill); }
.dsp-card .v { font-size: 22px; font-weight: 600; }
.dsp-card .k { font-size: 12px; color: var(--body-text-color-subdued); }
.dsp-card.hl .v { color: #16a34a; }
.dsp-panel-title { font-weight: 600; margin: 4px 0; }
.dsp-status { padding: 8px 12px; border-radius: 8px; border-left: 4px solid #94a3b8; font-size: 14px;
  background: rgba(148, 163, 184, 0.12); }
.dsp-status.running { border-left-color: #6366f1; background: rgba(99, 102, 241, 0.10); }
.dsp-status.done { border-left-color: #16a34a; background: rgba(22, 163, 74, 0.10); }
.dsp-status.stopped { border-left-color: #d97706; background: rgba(217, 119, 6, 0.10); }
.dsp-status.error { border-left-color: #dc2626; background: rgba(220, 38, 38, 0.10); color: #991b1b; }
"""


def legend_html() -> str:
    items = "".join(f'<span><span class="tok {kind}">{html.escape(label)}</span></span>' for kind, label in LEGEND_LABELS.items())
    return (f'<div class="dsp-legend">{items}<span><span class="dsp-step odd">&nbsp;shading&nbsp;</span>'
            " alternates per drafting round</span></div>")


def _token_span(transcript: Transcript, step_index: int, token_index: int) -> str:
    step = transcript.steps[step_index]
    token = step.token_ids[token_index]
    kind = step.kinds[token_index]
    piece = transcript.pieces[step_index][token_index]
    classes = f"tok {kind}"
    if not piece and transcript.is_special(token):
        piece = transcript.tokenizer.convert_ids_to_tokens(token)
        classes += " special"
    if step.record is not None:
        r = step.record
        if r.source == "lookup":
            where = f"round {r.step + 1}: {r.accepted} of {r.verified} prompt-lookup tokens accepted (no drafting)"
        else:
            where = f"round {r.step + 1}: {r.accepted} of {r.verified} verified draft tokens accepted"
    else:
        where = "plain decoding" if kind == PLAIN else "prefill: the target's first token"
    title = f"{KIND_LABELS[kind]} - {where} (token id {token})"
    return f'<span class="{classes}" title="{html.escape(title)}">{html.escape(piece)}</span>'


def answer_html(transcript: Transcript | None, element_id: str, placeholder: str = "") -> str:
    """The answer with per-token provenance and the hidden machine-readable data element."""
    if transcript is None or not transcript.steps:
        return f'<div class="dsp-answer empty" id="{element_id}">{html.escape(placeholder)}</div>'
    parts = []
    for i, step in enumerate(transcript.steps):
        tokens = "".join(_token_span(transcript, i, j) for j in range(len(step.token_ids)))
        if step.kinds and step.kinds[0] == PLAIN:
            parts.append(tokens)
            continue
        shade = "odd" if i % 2 else "even"
        label = f"round {step.record.step + 1}" if step.record is not None else "prefill"
        data_step = step.record.step if step.record is not None else "prefill"
        parts.append(f'<span class="dsp-step {shade}" data-step="{data_step}" aria-label="{label}">{tokens}</span>')
    data = html.escape(json.dumps(transcript.to_dict()), quote=True)
    return (f'<div class="dsp-answer" id="{element_id}">{"".join(parts)}</div>'
            f'<div id="{element_id}-data" hidden data-json="{data}"></div>')


def _card(value: str, key: str, highlight: bool = False) -> str:
    return f'<div class="dsp-card{" hl" if highlight else ""}"><div class="v">{value}</div><div class="k">{key}</div></div>'


def stats_html(spec: Transcript | None, plain: Transcript | None = None) -> str:
    """Cards with the running totals of the speculative run (and plain decoding's speed if compared)."""
    if spec is None:
        return '<div class="dsp-cards"></div>'
    records = spec.records
    counts = spec.kind_counts()
    cards = [
        _card(f"{spec.tau:.2f}", "tau: tokens per round", highlight=True),
        _card(f"{spec.tokens_per_second:.1f}", "tokens/s, DSpark"),
        _card(str(spec.num_tokens), "new tokens"),
        _card(str(len(records)), "rounds"),
        _card(f"{spec.acceptance_rate:.0%}", "verified tokens accepted"),
        _card(str(counts[DRAFT]), "tokens from the draft"),
    ]
    if counts[LOOKUP]:
        cards.append(_card(str(counts[LOOKUP]), "tokens from prompt lookup"))
    if plain is not None and plain.steps:
        cards.append(_card(f"{plain.tokens_per_second:.1f}", "tokens/s, plain decoding"))
        if plain.tokens_per_second > 0 and spec.tokens_per_second > 0:
            cards.append(_card(f"{spec.tokens_per_second / plain.tokens_per_second:.2f}x", "speed ratio DSpark / plain"))
    return f'<div class="dsp-cards">{"".join(cards)}</div>'


def step_chart(transcript: Transcript | None) -> Figure:
    """Grouped bars per drafting round: tokens the draft proposed, the policy sent for verification, and
    the target accepted."""
    fig = Figure(figsize=(8, 2.7), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    records = transcript.records if transcript is not None else []
    rounds = [r.step + 1 for r in records]
    width = 0.28
    for offset, name in zip((-width, 0.0, width), ("proposed", "verified", "accepted"), strict=True):
        ax.bar([x + offset for x in rounds], [getattr(r, name) for r in records], width=width,
               color=COLORS[name], label=name)
    block = max((r.proposed for r in records), default=7)
    ax.set_ylim(0, block + 0.6)
    ax.set_xlim(0.4, max(len(rounds), 8) + 0.6)
    ax.set_xlabel("round")
    ax.set_ylabel("tokens")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.xaxis.get_major_locator().set_params(integer=True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.2), ncol=3, frameon=False, fontsize=9)
    if not records:
        ax.text(0.5, 0.5, "per-round counts appear here while the answer streams", transform=ax.transAxes,
                ha="center", va="center", color="#64748b")
    return fig
