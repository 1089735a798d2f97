"""The Gradio page of ``dspark demo``: DSpark speculative decoding, token by token, round by round.

:func:`build_demo` lays out the page and wires its events; :func:`launch_demo` serves it (theme and
CSS are ``launch`` arguments in Gradio 6). ``demo/app.py`` at the repository root and the ``dspark
demo`` command both use these two functions.

Serving rules: one generation (or model load) runs at a time, whoever asked (Gradio queue,
``concurrency_limit=1`` on a shared ``concurrency_id``); others wait in the queue and see their
position. Each browser session has its own model choice (``gr.State``) and its own Stop event, so
sessions never see each other's answers or stop each other's runs.
"""

from __future__ import annotations

import threading
import time

import gradio as gr
from transformers import GenerationConfig

from ..errors import DSparkError
from .models import ModelRegistry, resolve_names
from .prompts import DEFAULT_MAX_PROMPT_TOKENS, PromptError, context_window, prompt_ids
from .provenance import StepTokens, Transcript
from .render import CSS, answer_html, legend_html, stats_html, step_chart
from .streaming import Finished, StreamingGeneration

POLICIES = [
    ("whole block", "whole"),
    ("confidence threshold (per slot)", "threshold"),
    ("survival threshold (cumulative)", "survival"),
    ("fixed length L", "fixed"),
    ("hardware-aware scheduler", "hardware"),
    ("online acceptance estimates", "online"),
]
EXAMPLES = [
    "Explain in three sentences why the sky is blue.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train travels 120 km in 1.5 hours. What is its average speed?",
]
GENERATION_GROUP = "dspark-generation"  # one generation or model load at a time, across all sessions
YIELD_EVERY = 0.1  # seconds between page updates while streaming
CHART_EVERY = 1.5  # seconds between chart redraws while streaming (a redraw costs about 0.1-0.5 s of CPU)


def policy_spec(name: str, threshold: float, fixed_length: int) -> str:
    """The :func:`~dspark_hf.verification_policy.resolve_policy` spec string for the page's choice."""
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
    import html

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


def build_demo(registry: ModelRegistry | None = None, *, target: str | None = None, draft: str | None = None,
               max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS, max_new_tokens_limit: int = 512) -> gr.Blocks:
    """The demo page for ``registry``'s models (default: a new registry), starting with ``target`` and
    ``draft`` (names as :func:`~.models.resolve_names` takes them)."""
    registry = registry or ModelRegistry()
    board = StopBoard()
    default_names = list(resolve_names(target, draft))
    first = registry.get(*default_names)

    def run_generation(prompt, policy_name, threshold, fixed_length, temperature, max_tokens, compare, names,
                       request: gr.Request):
        cancel = board.current(request.session_hash)
        button_on = gr.update(interactive=True)
        spec_t: Transcript | None = None
        plain_t: Transcript | None = None

        def page(state, message, chart=True, plain_placeholder=""):
            return (
                status_html(state, message),
                answer_html(spec_t, "dspark-answer", "The answer streams here."),
                answer_html(plain_t, "dspark-plain", plain_placeholder),
                stats_html(spec_t, plain_t),
                step_chart(spec_t) if chart else gr.skip(),
                button_on if state != "running" else gr.skip(),
            )

        plain_hint = "Tick \u201calso run plain decoding\u201d to compare." if not compare else "Runs after the DSpark answer."
        try:
            models = registry.get(*names)
        except (DSparkError, OSError, ValueError) as err:
            yield page("error", f"Could not load the models: {one_line(err)}", plain_placeholder=plain_hint)
            return
        try:
            ids = prompt_ids(models.tokenizer, prompt, max_prompt_tokens=max_prompt_tokens,
                             max_new_tokens=int(max_tokens), window=context_window(models.target))
        except PromptError as err:
            yield page("error", str(err), plain_placeholder=plain_hint)
            return
        if cancel.is_set():
            yield page("stopped", "Stopped before it started.", plain_placeholder=plain_hint)
            return
        spec = policy_spec(policy_name, threshold, fixed_length)
        mode = "greedy" if float(temperature) <= 0 else f"sampling at temperature {float(temperature):g}"
        spec_t = Transcript(models.tokenizer)
        profiling = " (a first run with this policy may profile the target's cost first)" if policy_name in (
            "hardware", "online") else ""
        yield page("running", f"Generating with DSpark ({spec}, {mode}){profiling}...", plain_placeholder=plain_hint)
        run = StreamingGeneration(models.target, ids, generation_config(max_tokens, temperature, spec),
                                  draft=models.draft, cancel=cancel)
        finished = None
        last_yield = last_chart = 0.0
        try:
            for item in run:
                if isinstance(item, Finished):
                    finished = item
                    break
                spec_t.add(item)
                now = time.perf_counter()
                if now - last_yield >= YIELD_EVERY:
                    redraw = now - last_chart >= CHART_EVERY
                    last_yield, last_chart = now, (now if redraw else last_chart)
                    rounds = len(spec_t.records)
                    yield page("running", f"Generating with DSpark ({spec}, {mode}): {spec_t.num_tokens} tokens, "
                                          f"{rounds} rounds", chart=redraw, plain_placeholder=plain_hint)
        finally:
            if finished is None:  # the page went away mid-run: stop generate too
                run.stop()
        if finished.error is not None:
            err = finished.error
            text = one_line(err) if isinstance(err, DSparkError) else f"{type(err).__name__}: {one_line(err)}"
            yield page("error", "Generation failed: " + text, plain_placeholder=plain_hint)
            return
        spec_t.elapsed = finished.seconds
        summary = (f"{spec_t.num_tokens} tokens in {finished.seconds:.2f} s with DSpark ({spec}, {mode}): "
                   f"tau {spec_t.tau:.2f} tokens per round.")
        if finished.stopped:
            yield page("stopped", f"Stopped. {summary}", plain_placeholder=plain_hint)
            return
        if not compare:
            yield page("done", summary, plain_placeholder=plain_hint)
            return
        yield page("running", summary + " Now plain decoding, for comparison...")
        plain_t = Transcript(models.tokenizer)
        plain_run = StreamingGeneration(models.target, ids, generation_config(max_tokens, temperature),
                                        draft=None, cancel=cancel)
        plain_done = None
        last_yield = 0.0
        try:
            for item in plain_run:
                if isinstance(item, Finished):
                    plain_done = item
                    break
                plain_t.add(item)
                now = time.perf_counter()
                if now - last_yield >= YIELD_EVERY:
                    last_yield = now
                    yield page("running", summary + f" Plain decoding: {plain_t.num_tokens} tokens...", chart=False)
        finally:
            if plain_done is None:
                plain_run.stop()
        if plain_done.error is not None:
            yield page("error", f"{summary} Plain decoding failed: {one_line(plain_done.error)}")
            return
        plain_t.elapsed = plain_done.seconds
        if plain_done.stopped:
            yield page("stopped", f"{summary} Plain decoding stopped.")
            return
        same = plain_t.token_ids == spec_t.token_ids
        verdict = ("Same tokens as plain decoding." if same else
                   "Different tokens from plain decoding (expected when sampling)." if float(temperature) > 0 else
                   "Different tokens from plain decoding.")
        yield page("done", f"{summary} Plain decoding: {plain_done.seconds:.2f} s. {verdict}")

    def arm_run(request: gr.Request):
        board.arm(request.session_hash)
        return gr.update(interactive=False), status_html("running", "Waiting for the model...")

    def stop_run(request: gr.Request):
        board.stop(request.session_hash)

    def load_models(target_name, draft_name, request: gr.Request):
        names = list(resolve_names(target_name, draft_name))
        try:
            models = registry.get(*names)
        except (DSparkError, OSError, ValueError) as err:
            return gr.skip(), gr.skip(), status_html("error", f"Could not load the models: {one_line(err)}")
        line = models_line(models.target_name, models.draft_name, models.draft.config.block_size)
        return names, line, status_html("idle", "Models loaded.")

    with gr.Blocks(title="DSpark demo") as demo:
        names_state = gr.State(default_names)
        gr.Markdown("## DSpark speculative decoding: tokens accepted per step\n"
                    "The draft proposes a block of tokens from the target's own hidden states; the target verifies "
                    "the tokens the policy picks in one forward and keeps the longest correct prefix, plus one token "
                    "of its own. The text is the target's, exactly.")
        models_md = gr.Markdown(models_line(first.target_name, first.draft_name, first.draft.config.block_size),
                                elem_id="dspark-models")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                prompt = gr.Textbox(label="Prompt (the chat template is applied)", lines=3, elem_id="dspark-prompt",
                                    placeholder="Ask something...")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="dspark-generate", scale=2)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="dspark-stop", scale=1)
                    compare = gr.Checkbox(label="also run plain decoding (speed comparison)", value=False,
                                          elem_id="dspark-compare", scale=3)
                gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")
                status = gr.HTML(status_html("idle", "Ready."), elem_id="dspark-status")
            with gr.Column(scale=3):
                policy = gr.Dropdown(POLICIES, value="whole", label="Verification policy", elem_id="dspark-policy",
                                     info="how many drafted tokens the target verifies each round")
                threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Confidence threshold",
                                      info="for the threshold and survival policies", elem_id="dspark-threshold")
                fixed_length = gr.Slider(0, 16, value=3, step=1, label="Fixed length L", info="for the fixed policy")
                temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature", info="0 = greedy",
                                        elem_id="dspark-temperature")
                max_tokens = gr.Slider(1, max_new_tokens_limit, value=min(128, max_new_tokens_limit), step=1,
                                       label="Max new tokens", elem_id="dspark-max-tokens")
                with gr.Accordion("Models", open=False):
                    target_box = gr.Textbox(label="Target (folder or Hub id; empty = embedded SmolLM2-135M-Instruct)",
                                            value=default_names[0] or "")
                    draft_box = gr.Textbox(label='Draft (folder or Hub id, or "random"; empty = the default)',
                                           value=default_names[1] or "")
                    load_btn = gr.Button("Load models")
        gr.HTML(legend_html())
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.HTML('<div class="dsp-panel-title">DSpark (draft + target)</div>')
                answer = gr.HTML(answer_html(None, "dspark-answer", "The answer streams here."), elem_id="dspark-answer-box")
            with gr.Column():
                gr.HTML('<div class="dsp-panel-title">Plain decoding (target alone)</div>')
                plain = gr.HTML(answer_html(None, "dspark-plain", "Tick \u201calso run plain decoding\u201d to compare."),
                                elem_id="dspark-plain-box")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                stats = gr.HTML(stats_html(None), elem_id="dspark-stats")
            with gr.Column(scale=3):
                chart = gr.Plot(step_chart(None), label="Per drafting round", elem_id="dspark-chart", format="png")

        inputs = [prompt, policy, threshold, fixed_length, temperature, max_tokens, compare, names_state]
        outputs = [status, answer, plain, stats, chart, run_btn]
        # Only the button starts a run: it is disabled until the run ends, so a session has at most one
        # run queued or running, and its Stop event is that run's.
        run_btn.click(arm_run, None, [run_btn, status], queue=False).then(
            run_generation, inputs, outputs, concurrency_limit=1, concurrency_id=GENERATION_GROUP,
            show_progress="hidden",
        )
        stop_btn.click(stop_run, None, None, queue=False)
        load_btn.click(load_models, [target_box, draft_box], [names_state, models_md, status],
                       concurrency_limit=1, concurrency_id=GENERATION_GROUP)
    return demo


def launch_demo(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True,
                quiet: bool = False):
    """Serve ``demo`` with the queue enabled, the demo's theme and CSS; ``block=False`` returns at once
    (call ``demo.close()`` to stop). Returns Gradio's ``(app, local_url, share_url)``."""
    demo.queue(default_concurrency_limit=1)
    return demo.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet, share=False,
        theme=gr.themes.Soft(primary_hue="indigo"), css=CSS, footer_links=[], show_error=True,
    )
