"""The Gradio page of ``dspark demo``: DSpark speculative decoding, token by token, round by round.

:func:`build_demo` lays out the page and wires its events to :class:`~.handlers.DemoHandlers`;
:func:`launch_demo` serves it (theme and CSS are ``launch`` arguments in Gradio 6). ``demo/app.py`` at
the repository root and the ``dspark demo`` command both use these two functions.

Serving rules: one generation (or model load) runs at a time, whoever asked (Gradio queue,
``concurrency_limit=1`` on a shared ``concurrency_id``); others wait in the queue and see their
position. Each browser session has its own model choice (``gr.State``) and its own Stop event, so
sessions never see each other's answers or stop each other's runs.
"""

from __future__ import annotations

import gradio as gr

from dspark_hf.demo.handlers import ANSWER_PLACEHOLDER, COMPARE_HINT, DemoHandlers, models_line, status_html
from dspark_hf.demo.models import ModelRegistry, resolve_names
from dspark_hf.verification.policies import FASTEST_MEASURED_POLICY
from dspark_hf.demo.prompts import DEFAULT_MAX_PROMPT_TOKENS
from dspark_hf.demo.render import CSS, answer_html, legend_html, stats_html, step_chart

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


def build_demo(registry: ModelRegistry | None = None, *, target: str | None = None, draft: str | None = None,
               max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS, max_new_tokens_limit: int = 512) -> gr.Blocks:
    """The demo page for ``registry``'s models (default: a new registry), starting with ``target`` and
    ``draft`` (names as :func:`~.models.resolve_names` takes them; loaded now, so errors surface here)."""
    registry = registry or ModelRegistry()
    handlers = DemoHandlers(registry, max_prompt_tokens)
    default_names = list(resolve_names(target, draft))
    first = registry.get(*default_names)

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
                policy = gr.Dropdown(POLICIES, value=FASTEST_MEASURED_POLICY, label="Verification policy", elem_id="dspark-policy",
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
                answer = gr.HTML(answer_html(None, "dspark-answer", ANSWER_PLACEHOLDER), elem_id="dspark-answer-box")
            with gr.Column():
                gr.HTML('<div class="dsp-panel-title">Plain decoding (target alone)</div>')
                plain = gr.HTML(answer_html(None, "dspark-plain", COMPARE_HINT), elem_id="dspark-plain-box")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                stats = gr.HTML(stats_html(None), elem_id="dspark-stats")
            with gr.Column(scale=3):
                chart = gr.Plot(step_chart(None), label="Per drafting round", elem_id="dspark-chart", format="png")

        inputs = [prompt, policy, threshold, fixed_length, temperature, max_tokens, compare, names_state]
        outputs = [status, answer, plain, stats, chart, run_btn]
        # Only the button starts a run: it is disabled until the run ends, so a session has at most one
        # run queued or running, and its Stop event is that run's.
        run_btn.click(handlers.arm, None, [run_btn, status], queue=False).then(
            handlers.generate, inputs, outputs, concurrency_limit=1, concurrency_id=GENERATION_GROUP,
            show_progress="hidden",
        )
        stop_btn.click(handlers.stop, None, None, queue=False)
        load_btn.click(handlers.load, [target_box, draft_box], [names_state, models_md, status],
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
