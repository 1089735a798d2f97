"""What the demo page's buttons do, one method each; the page (:mod:`.app`) only wires them.

:meth:`DemoHandlers.generate` is a generator: it checks the prompt, streams the speculative run
(and, if asked, plain decoding of the same prompt) and yields the page's outputs as it goes,
``(status, answer, plain answer, statistics, chart, Generate button)``. The Stop event of each browser
session lives in a :class:`StopBoard`.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Callable, Iterator

import gradio as gr
from transformers import GenerationConfig

from dspark_hf.errors import DSparkError
from dspark_hf.demo.models import ModelRegistry, resolve_names
from dspark_hf.demo.prompts import DEFAULT_MAX_PROMPT_TOKENS, PromptError, context_window, prompt_ids
from dspark_hf.demo.provenance import Transcript
from dspark_hf.demo.render import answer_html, stats_html, step_chart
from dspark_hf.demo.streaming import Finished, StreamingGeneration

YIELD_EVERY = 0.1  # seconds between page updates while streaming
CHART_EVERY = 1.5  # seconds between chart redraws while streaming (a redraw costs about 0.1-0.5 s of CPU)
ANSWER_PLACEHOLDER = "The answer streams here."
COMPARE_HINT = "Tick \u201calso run plain decoding\u201d to compare."
LOAD_ERRORS = (DSparkError, OSError, ValueError)


def policy_spec(name: str, threshold: float, fixed_length: int) -> str:
    """The :func:`~dspark_hf.verification.policies.resolve_policy` spec string for the page's choice."""
    if name in ("threshold", "survival"):
        return f"{name}:{float(threshold):g}"
    if name == "fixed":
        return f"fixed:{int(fixed_length)}"
    return name


def generation_config(max_new_tokens: int, temperature: float, policy: str | None = None) -> GenerationConfig:
    """Greedy at temperature 0, else pure temperature sampling (no top-k / top-p), as ``dspark generate``."""
    sampling = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
    extra = {"dspark_policy": policy} if policy is not None else {}
    return GenerationConfig(max_new_tokens=int(max_new_tokens), **sampling, **extra)


def status_html(state: str, message: str) -> str:
    """The status line; ``data-state`` (idle, running, done, stopped, error) is for scripts and tests."""
    return f'<div id="dspark-status-line" class="dsp-status {state}" data-state="{state}">{html.escape(message)}</div>'


def one_line(err: BaseException) -> str:
    """The first line of an error's message (library errors can span many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def models_line(target_name: str, draft_name: str, block_size: int | None = None) -> str:
    block = f" - block of {block_size} tokens" if block_size else ""
    return f"**Target:** {target_name} &nbsp;&nbsp; **Draft:** {draft_name}{block}"


class StopBoard:
    """One Stop event per browser session: set by the Stop button, checked by that session's run."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, session: str) -> threading.Event:
        """A fresh event for the session's next run (called when Generate is clicked)."""
        with self._lock:
            event = self._events[session] = threading.Event()
            return event

    def current(self, session: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(session, threading.Event())

    def stop(self, session: str) -> None:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()


def stream_pages(run: StreamingGeneration, transcript: Transcript, render: Callable[[], tuple],
                 every: float = YIELD_EVERY) -> Iterator[tuple]:
    """Add each round of ``run`` to ``transcript``, yielding ``render()`` at most every ``every`` seconds;
    returns the run's :class:`Finished`. Closing this generator early (the page went away) stops the run."""
    finished = None
    last = 0.0
    try:
        for item in run:
            if isinstance(item, Finished):
                finished = item
                break
            transcript.add(item)
            now = time.perf_counter()
            if now - last >= every:
                last = now
                yield render()
    finally:
        if finished is None:
            run.stop()
    return finished


class DemoHandlers:
    """The page's event handlers over a shared :class:`ModelRegistry` and per-session Stop events."""

    def __init__(self, registry: ModelRegistry, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS) -> None:
        self.registry = registry
        self.max_prompt_tokens = max_prompt_tokens
        self.board = StopBoard()

    def arm(self, request: gr.Request):
        """Generate was clicked: a fresh Stop event for this session, the button off until the run ends."""
        self.board.arm(request.session_hash)
        return gr.update(interactive=False), status_html("running", "Waiting for the model...")

    def stop(self, request: gr.Request) -> None:
        self.board.stop(request.session_hash)

    def load(self, target_name, draft_name, request: gr.Request):
        """Load (or reuse) the named pair for this session: ``(names, models line, status)``."""
        names = list(resolve_names(target_name, draft_name))
        try:
            models = self.registry.get(*names)
        except LOAD_ERRORS as err:
            return gr.skip(), gr.skip(), status_html("error", f"Could not load the models: {one_line(err)}")
        line = models_line(models.target_name, models.draft_name, models.draft.config.block_size)
        return names, line, status_html("idle", "Models loaded.")

    def generate(self, prompt, policy_name, threshold, fixed_length, temperature, max_tokens, compare, names,
                 request: gr.Request):
        cancel = self.board.current(request.session_hash)
        spec_t: Transcript | None = None
        plain_t: Transcript | None = None
        plain_hint = COMPARE_HINT if not compare else "Runs after the DSpark answer."
        chart_clock = [0.0]

        def page(state, message, chart=None):
            """The outputs; the chart is redrawn at the end and at most every CHART_EVERY seconds."""
            now = time.perf_counter()
            redraw = chart if chart is not None else (state != "running" or now - chart_clock[0] >= CHART_EVERY)
            if redraw:
                chart_clock[0] = now
            return (
                status_html(state, message),
                answer_html(spec_t, "dspark-answer", ANSWER_PLACEHOLDER),
                answer_html(plain_t, "dspark-plain", plain_hint),
                stats_html(spec_t, plain_t),
                step_chart(spec_t) if redraw else gr.skip(),
                gr.update(interactive=True) if state != "running" else gr.skip(),
            )

        try:
            models = self.registry.get(*names)
        except LOAD_ERRORS as err:
            yield page("error", f"Could not load the models: {one_line(err)}")
            return
        try:
            ids = prompt_ids(models.tokenizer, prompt, max_prompt_tokens=self.max_prompt_tokens,
                             max_new_tokens=int(max_tokens), window=context_window(models.target))
        except PromptError as err:
            yield page("error", str(err))
            return
        if cancel.is_set():
            yield page("stopped", "Stopped before it started.")
            return

        spec = policy_spec(policy_name, threshold, fixed_length)
        mode = "greedy" if float(temperature) <= 0 else f"sampling at temperature {float(temperature):g}"
        label = f"DSpark ({spec}, {mode})"
        spec_t = Transcript(models.tokenizer)
        profiling = " (a first run with this policy may profile the target's cost first)" if policy_name in (
            "hardware", "online") else ""
        yield page("running", f"Generating with {label}{profiling}...", chart=True)
        run = StreamingGeneration(models.target, ids, generation_config(max_tokens, temperature, spec),
                                  draft=models.draft, cancel=cancel)
        finished = yield from stream_pages(run, spec_t, lambda: page(
            "running", f"Generating with {label}: {spec_t.num_tokens} tokens, {len(spec_t.records)} rounds"))
        if finished.error is not None:
            err = finished.error
            text = one_line(err) if isinstance(err, DSparkError) else f"{type(err).__name__}: {one_line(err)}"
            yield page("error", "Generation failed: " + text)
            return
        spec_t.elapsed = finished.seconds
        summary = f"{spec_t.num_tokens} tokens in {finished.seconds:.2f} s with {label}: tau {spec_t.tau:.2f} tokens per round."
        if finished.stopped:
            yield page("stopped", f"Stopped. {summary}")
            return
        if not compare:
            yield page("done", summary)
            return

        plain_t = Transcript(models.tokenizer)
        yield page("running", summary + " Now plain decoding, for comparison...", chart=False)
        plain_run = StreamingGeneration(models.target, ids, generation_config(max_tokens, temperature), cancel=cancel)
        plain_done = yield from stream_pages(plain_run, plain_t, lambda: page(
            "running", summary + f" Plain decoding: {plain_t.num_tokens} tokens...", chart=False))
        if plain_done.error is not None:
            yield page("error", f"{summary} Plain decoding failed: {one_line(plain_done.error)}")
            return
        plain_t.elapsed = plain_done.seconds
        if plain_done.stopped:
            yield page("stopped", f"{summary} Plain decoding stopped.")
            return
        if plain_t.token_ids == spec_t.token_ids:
            verdict = "Same tokens as plain decoding."
        elif float(temperature) > 0:
            verdict = "Different tokens from plain decoding (expected when sampling)."
        else:
            verdict = "Different tokens from plain decoding."
        yield page("done", f"{summary} Plain decoding: {plain_done.seconds:.2f} s. {verdict}")
