"""`dspark generate` on the embedded SmolLM2 target: text, per-step summary, one-line errors."""

import pytest

from dspark_hf.cli import main


def test_generate_prints_text_and_step_summary(capsys):
    code = main(["generate", "--prompt", "What is the capital of France?", "--draft", "random",
                 "--max-new-tokens", "12", "--steps", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Paris" in out
    assert "step  verified  accepted  emitted  confidences" in out
    assert "tokens per step: " in out and "tau " in out and "tokens/s" in out


def test_generate_compare_prints_both_speeds_and_identity(capsys):
    """``--compare`` runs plain decoding on the same prompt and prints its speed, the ratio and that the
    greedy texts are identical (the check compares the token ids, so a wrong draft path would print
    "different text")."""
    code = main(["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12", "--threads", "1", "--compare"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("plain decoding: "))
    import re

    # --dtype auto: the first line names the configuration chosen (timed here where bf16 is native) and why
    first = re.match(r"dtype (float32|bfloat16): target (float32|bfloat16), draft (float32|bfloat16)", out.splitlines()[0])
    assert first and first[1] == first[2] and "(identical to plain generate; auto: " in out.splitlines()[0]
    dtype = first[2]
    assert "tokens/s; DSpark / plain = " in line and f"x (identical text; {dtype}, 1 threads" in line


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "--prompt", "  ", "--draft", "random"], "--prompt is empty."),
        (["generate", "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0."),
        (["generate", "--prompt", "hi", "--draft", "/nonexistent/draft"], "No draft checkpoint at /nonexistent/draft: the path does not exist."),
        (["generate", "--prompt", "hi", "--draft", "random", "--policy", "sometimes"], "Unknown verification policy 'sometimes'"),
    ],
)
def test_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dspark generate: error: ") and message in err and "\n" not in err


def test_bad_flag_is_one_argparse_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "hi", "--max-new-tokens", "many"])
    assert exit_info.value.code == 2
    assert "argument --max-new-tokens: invalid int value: 'many'" in capsys.readouterr().err
