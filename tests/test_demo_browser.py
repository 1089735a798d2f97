"""The demo page in a real browser: Debian's chromium driven by Playwright against the demo served on
127.0.0.1 (a free port; started here, closed at the end).

On the real embedded SmolLM2-135M-Instruct target, greedy, float32, 24 new tokens: the untrained draft
is steered towards the target's own greedy answer (as in test_generate_greedy_tiny) so that the page
has accepted draft tokens and corrections to show. Checked: the answer streams to the end; the
per-round counts in the page (the machine-readable element and the token spans of each round) equal
``draft.last_telemetry`` of the same run; the answer text and the plain-decoding panel equal plain
greedy generation; the tau card equals the telemetry's; Stop ends a long run early; an empty prompt gets
its message. A screenshot goes to the test's tmp dir (and to ``$DSPARK_DEMO_SCREENSHOT`` if set).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from test_generate_greedy_tiny import force_towards

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROMPT = "Explain in three sentences why the sky is blue."
LONG_PROMPT = "Write a long story about a lighthouse keeper and a storm."
NEW_TOKENS = 24
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_demo():
    """The demo with the embedded target and a steered random draft, served on 127.0.0.1."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from dspark_hf.demo.app import build_demo, launch_demo
    from dspark_hf.demo.handlers import generation_config
    from dspark_hf.demo.models import LoadedModels, ModelRegistry, random_draft
    from dspark_hf.demo.prompts import prompt_ids
    from dspark_hf.bundled.target import load_default_target

    torch.set_num_threads(1)
    target, tokenizer = load_default_target()
    ids = prompt_ids(tokenizer, PROMPT)
    plain = target.generate(ids, generation_config=generation_config(NEW_TOKENS, 0.0), attention_mask=torch.ones_like(ids))
    draft = random_draft(target.config)
    force_towards(draft, plain[0])
    registry = ModelRegistry()
    registry.put(None, "random", LoadedModels(target, tokenizer, draft, "embedded SmolLM2-135M-Instruct",
                                              "random, steered towards the target's greedy answer (test)"))
    demo = build_demo(registry, draft="random")
    _, url, _ = launch_demo(demo, port=free_port(), block=False, quiet=True)
    try:
        yield {"url": url, "draft": draft, "tokenizer": tokenizer, "target": target,
               "plain_ids": plain[0, ids.shape[1]:].tolist()}
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url):
    """A page in a fresh browser context: its own Gradio session."""
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#dspark-prompt textarea")
    return page


@pytest.fixture(scope="module")
def page(browser, served_demo):
    return open_page(browser, served_demo["url"])


def set_number(page, slider_id: str, value: int) -> None:
    box = page.locator(f"#{slider_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def generate(page, prompt: str) -> None:
    page.locator("#dspark-prompt textarea").fill(prompt)
    page.locator("#dspark-generate").click()


def page_data(page, element_id: str) -> dict:
    return json.loads(page.locator(f"#{element_id}-data").get_attribute("data-json"))


def test_streamed_answer_and_per_round_counts_equal_the_run(page, served_demo, tmp_path):
    draft, tokenizer, plain_ids = served_demo["draft"], served_demo["tokenizer"], served_demo["plain_ids"]
    set_number(page, "dspark-max-tokens", NEW_TOKENS)
    page.locator("#dspark-compare input").check()
    generate(page, PROMPT)
    page.wait_for_selector("#dspark-status-line[data-state=running]")
    page.wait_for_selector("#dspark-status-line[data-state=done]")
    assert "Same tokens as plain decoding" in page.locator("#dspark-status-line").inner_text()

    telemetry = draft.last_telemetry
    data = page_data(page, "dspark-answer")
    shown = [(s["step"], s["proposed"], s["verified"], s["accepted"], s["emitted"], s["source"]) for s in data["steps"]]
    assert shown == [(s.step, s.proposed, s.verified, s.accepted, s.emitted, s.source) for s in telemetry.steps]
    assert data["prefill_tokens"] == telemetry.prefill_tokens
    assert data["token_ids"] == plain_ids and len(plain_ids) == NEW_TOKENS
    plain_text = tokenizer.decode(plain_ids, skip_special_tokens=True)
    assert data["text"] == plain_text

    # What is drawn: one shaded span per round holding its tokens; accepted draft tokens marked as such, and
    # accepted tokens of lookup rounds (a prompt-lookup guess verified instead of drafting) as lookup tokens.
    for s in telemetry.steps:
        spans = page.locator(f'#dspark-answer .dsp-step[data-step="{s.step}"] .tok')
        assert spans.count() == s.emitted
        kind = "lookup" if s.source == "lookup" else "draft"
        assert page.locator(f'#dspark-answer .dsp-step[data-step="{s.step}"] .tok.{kind}').count() == s.accepted
    assert page.locator("#dspark-answer .tok.draft").count() == sum(s.accepted for s in telemetry.steps if s.source != "lookup") > 0
    assert page.locator("#dspark-answer .tok.lookup").count() == sum(s.accepted for s in telemetry.steps if s.source == "lookup")
    assert page.locator("#dspark-answer .tok.correction").count() > 0
    visible = "".join(page.locator("#dspark-answer .tok:not(.special)").all_text_contents())
    assert visible == plain_text
    assert "".join(page.locator("#dspark-plain .tok:not(.special)").all_text_contents()) == plain_text
    assert page_data(page, "dspark-plain")["token_ids"] == plain_ids
    assert page.locator("#dspark-stats .dsp-card.hl .v").inner_text() == f"{telemetry.tau:.2f}"
    assert page.locator("#dspark-chart img").count() == 1

    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    if os.environ.get("DSPARK_DEMO_SCREENSHOT"):
        shutil.copy(tmp_path / "demo.png", os.environ["DSPARK_DEMO_SCREENSHOT"])


def test_stop_ends_a_long_run_early(page, served_demo):
    draft = served_demo["draft"]
    set_number(page, "dspark-max-tokens", 400)
    page.locator("#dspark-compare input").uncheck()
    generate(page, LONG_PROMPT)
    # The page is shared by the module's tests: the previous answer (many rounds, state "done") is still
    # shown until this run's first update, so wait for this run to be running before reading its rounds;
    # otherwise a loaded machine lets Stop land before the run starts ("Stopped before it started").
    page.wait_for_selector("#dspark-status-line[data-state=running]")
    page.wait_for_function(
        "() => { const d = document.querySelector('#dspark-answer-data');"
        " return d && JSON.parse(d.dataset.json).steps.length >= 2 }"
    )
    page.locator("#dspark-stop").click()
    page.wait_for_selector("#dspark-status-line[data-state=stopped]")
    data = page_data(page, "dspark-answer")
    telemetry = draft.last_telemetry
    assert [s["emitted"] for s in data["steps"]] == [s.emitted for s in telemetry.steps]
    assert telemetry.new_tokens == data["tokens"] < 400
    assert page.locator("#dspark-generate").is_enabled()


def test_empty_prompt_gets_a_message(page):
    from playwright.sync_api import expect

    generate(page, "   ")
    # The page is shared by this module's tests: wait for this message, not just for any error state.
    expect(page.locator("#dspark-status-line[data-state=error]")).to_contain_text("The prompt is empty", timeout=60_000)


def fill_and_confirm(box, value: str, attempts: int = 20) -> None:
    """Fill ``box`` until the page holds ``value``: an accordion that has just opened may re-mount its
    textboxes once and put back their previous value (seen on a loaded CI machine)."""
    for _ in range(attempts):
        box.fill(value)
        box.page.wait_for_timeout(250)
        if box.input_value() == value:
            return
    raise AssertionError(f"the textbox kept {box.input_value()!r} instead of {value!r}")


def test_a_model_that_cannot_be_loaded_gets_a_one_line_message(page):
    draft_box = page.get_by_label('Draft (folder or Hub id, or "random"; empty = the default)')
    if not draft_box.is_visible():
        page.get_by_text("Models", exact=True).click()
    draft_box.wait_for(state="visible")
    fill_and_confirm(draft_box, "/nonexistent/draft")
    page.get_by_role("button", name="Load models").click()
    from playwright.sync_api import expect

    # The previous test may have left an error state on the shared page: wait for this message.
    status = page.locator("#dspark-status-line[data-state=error]")
    expect(status).to_contain_text("No draft checkpoint at /nonexistent/draft", timeout=60_000)
    assert "\n" not in status.inner_text().strip()


def test_two_sessions_are_queued_not_mixed(page, browser, served_demo, monkeypatch):
    """Two browser sessions ask at once: generate() never runs twice at the same time and each page
    gets the answer to its own prompt."""
    target, tokenizer = served_demo["target"], served_demo["tokenizer"]
    from dspark_hf.demo.handlers import generation_config
    from dspark_hf.demo.prompts import prompt_ids

    prompts = ["Name three colours.", "What is the capital of France?"]
    expected = []
    for prompt in prompts:
        ids = prompt_ids(tokenizer, prompt)
        out = target.generate(ids, generation_config=generation_config(6, 0.0), attention_mask=torch.ones_like(ids))
        expected.append(out[0, ids.shape[1]:].tolist())
    active, peak = [0], [0]
    original = target.generate

    def counting_generate(*args, **kwargs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            return original(*args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(target, "generate", counting_generate)
    pages = [page, open_page(browser, served_demo["url"])]  # two contexts: two Gradio sessions
    for each, prompt in zip(pages, prompts, strict=True):
        set_number(each, "dspark-max-tokens", 6)
        each.locator("#dspark-compare input").uncheck()
        each.locator("#dspark-prompt textarea").fill(prompt)
    for each in pages:
        each.locator("#dspark-generate").click()
    for each, want in zip(pages, expected, strict=True):
        each.wait_for_selector("#dspark-status-line[data-state=done]")
        assert page_data(each, "dspark-answer")["token_ids"] == want
    assert peak[0] == 1
