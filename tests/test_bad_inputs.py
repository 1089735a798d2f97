"""Bad inputs give one clear line naming the file / record / flag and the problem, before any model is
loaded where that is possible, never a traceback from deep inside: draft config values, training data
records, and the sampling / policy / thread flags the sub-commands share."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from conftest import FIXTURES_DIR, copy_fixture, one_line
from dspark_hf import CheckpointError, DSparkConfig, DSparkDraft, UnsupportedUsageError
from dspark_hf.cli import main
from dspark_hf.errors import DSparkError
from dspark_hf.verification.policies import resolve_policy

VANILLA = FIXTURES_DIR / "qwen3_dspark_vanilla"  # released layout: vocab 384, 8 target layers, ids [1, 3, 5]


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a CLI command gets as far as loading a model."""
    import dspark_hf.loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(dspark_hf.loading, "load_target", refuse)
    monkeypatch.setattr(dspark_hf.loading, "load_draft", refuse)


def cli_error(capsys, argv: list[str]) -> str:
    """Run ``dspark argv``; it must exit with status 2 and print exactly one stderr line, returned."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith(f"dspark {argv[0]}: error: ") and "\n" not in err, err
    return err


# -- 1. draft config values ------------------------------------------------------------------------

BAD_CONFIG_VALUES = [
    ({"block_size": 0}, "block_size is 0", ">= 1"),
    ({"block_size": -2}, "block_size is -2", ">= 1"),
    ({"block_size": "7"}, "block_size is '7' (a str)", "whole number"),
    ({"block_size": 7.5}, "block_size is 7.5", "whole number"),
    ({"block_size": True}, "block_size is True", "whole number"),
    ({"mask_token_id": 151936}, "mask_token_id is 151936", "[0, 151935] (vocab_size is 151936)"),
    ({"mask_token_id": -1}, "mask_token_id is -1", "[0, 151935]"),
    ({"mask_token_id": "5"}, "mask_token_id is '5' (a str)", "[0, 151935]"),
    ({"target_layer_ids": [3, 1]}, "target_layer_ids is [3, 1]", "strictly increasing"),
    ({"target_layer_ids": [1, 1]}, "target_layer_ids is [1, 1]", "strictly increasing"),
    ({"target_layer_ids": []}, "target_layer_ids is []", "non-empty"),
    ({"target_layer_ids": "1,2"}, "target_layer_ids is '1,2' (a str)", "list of whole numbers"),
    ({"target_layer_ids": [1, 2.5]}, "target_layer_ids is [1, 2.5]", "list of whole numbers"),
    ({"target_layer_ids": [1, 36]}, "target_layer_ids is [1, 36]", "[-1, 35] (num_target_layers is 36)"),
    ({"target_layer_ids": [-2, 3]}, "target_layer_ids is [-2, 3]", "[-1, 35]"),
    ({"num_target_layers": 0, "target_layer_ids": [0]}, "num_target_layers is 0", ">= 1"),
    ({"markov_rank": -1}, "markov_rank is -1", ">= 0"),
    ({"markov_rank": "abc"}, "markov_rank is 'abc' (a str)", ">= 0"),
    ({"markov_head_type": "bogus"}, "markov_head_type is 'bogus'", "'vanilla', 'gated', 'rnn'"),
    ({"backbone": "llama"}, "backbone is 'llama'", "'qwen3', 'gemma4'"),
    ({"vocab_size": 0}, "vocab_size is 0", ">= 1"),
    ({"hidden_size": -64}, "hidden_size is -64", ">= 1"),
    ({"num_anchors": 0}, "num_anchors is 0", ">= 1"),
    ({"rms_norm_eps": -1e-6}, "rms_norm_eps is -1e-06", "> 0"),
    ({"enable_confidence_head": "false"}, "enable_confidence_head is 'false' (a str)", "true or false"),
    ({"markov_rank": 0}, "confidence_head_with_markov", "markov_rank > 0"),
]


@pytest.mark.parametrize("values,named,allowed", BAD_CONFIG_VALUES)
def test_bad_config_values_are_refused_by_dspark_config(values, named, allowed):
    """Guards DSparkConfig's checks: each out-of-range or mistyped value is one CheckpointError line with
    the key, the value and what is allowed (they used to load and fail deep inside generate)."""
    with pytest.raises(CheckpointError) as err:
        DSparkConfig(**values)
    line = one_line(err)
    assert line.startswith("DSparkConfig: ") and named in line and allowed in line, line


def test_default_config_round_trips_and_fixtures_still_load(tmp_path):
    """Guards that the checks do not break what transformers does with configs: DSparkConfig() with its
    defaults, to_dict/from_dict, save/load round trips, and the released fixtures."""
    default = DSparkConfig()
    assert DSparkConfig.from_dict(default.to_dict()).to_dict() == default.to_dict()
    default.save_pretrained(tmp_path / "cfg")
    assert DSparkConfig.from_pretrained(tmp_path / "cfg").block_size == 7
    draft = DSparkDraft.from_pretrained(VANILLA, dtype=torch.float32)
    draft.save_pretrained(tmp_path / "saved")
    again = DSparkDraft.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    volatile = ("architectures", "_name_or_path", "transformers_version")
    same = lambda config: {k: v for k, v in config.to_dict().items() if k not in volatile}  # noqa: E731
    assert same(again.config) == same(draft.config)
    DSparkConfig(block_size=1, markov_rank=0, enable_confidence_head=False, confidence_head_with_markov=False,
                 target_layer_ids=[-1, 35], mask_token_id=0, target_hidden_size=None)


RELEASED_BAD = [
    ({"block_size": 0}, "block_size is 0"),
    ({"block_size": -2}, "block_size is -2"),
    ({"block_size": "7"}, "block_size is '7' (a str)"),
    ({"mask_token_id": 384}, "mask_token_id is 384; it must be a whole number in [0, 383] (vocab_size is 384)"),
    ({"mask_token_id": -1}, "mask_token_id is -1"),
    ({"markov_rank": "abc"}, "markov_rank is 'abc' (a str)"),
    ({"markov_head_type": "bogus"}, "markov_head_type is 'bogus'"),
    ({"num_target_layers": 0}, "num_target_layers is 0"),
    ({"target_layer_ids": "1,3,5"}, "target_layer_ids is '1,3,5' (a str)"),
    ({"target_layer_ids": [1, 3, 9]}, "target_layer_ids is [1, 3, 9]"),
    ({"num_attention_heads": 0}, "num_attention_heads is 0"),
    ({"hidden_size": "64"}, "hidden_size is '64' (a str)"),
]


@pytest.mark.parametrize("changes,named", RELEASED_BAD)
def test_bad_values_in_a_released_config_name_the_file(tmp_path, changes, named):
    """Guards from_released_config's checks: a bad value in a released-layout config.json is one line
    naming that file, the key and the value (block_size 0 / "7" and out-of-vocabulary mask ids used to
    load; markov_rank "abc" was a bare int() ValueError)."""
    folder = rewrite_config(copy_fixture(tmp_path), **changes)
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    line = one_line(err)
    assert line.startswith(f"{folder}/config.json: ") and named in line, line


def test_bad_values_in_a_dspark_layout_config_name_the_file(tmp_path):
    """Guards the same checks for configs saved by this library (model_type dspark), loaded through
    DSparkDraft and through DSparkConfig.from_pretrained (transformers' own path)."""
    folder = tmp_path / "saved"
    DSparkDraft.from_pretrained(VANILLA, dtype=torch.float32).save_pretrained(folder)
    rewrite_config(folder, block_size="7")
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert one_line(err).startswith(f"{folder}/config.json: block_size is '7' (a str)")
    rewrite_config(folder, block_size=7, mask_token_id=400)
    with pytest.raises(CheckpointError) as err:
        DSparkConfig.from_pretrained(folder)
    assert one_line(err).startswith(f"{folder}/config.json: mask_token_id is 400")


@pytest.mark.parametrize("content,kind", [([1, 2], "list"), (5, "int"), ("x", "str"), (None, "NoneType")])
def test_config_json_that_is_not_an_object(tmp_path, content, kind):
    """Guards config.json files holding a JSON list / number / string / null: one CheckpointError line
    naming the file, through DSparkDraft.from_pretrained and DSparkConfig.from_pretrained (the latter
    was a TypeError from transformers)."""
    folder = copy_fixture(tmp_path)
    (folder / "config.json").write_text(json.dumps(content))
    for load in (DSparkDraft.from_pretrained, DSparkConfig.from_pretrained):
        with pytest.raises(CheckpointError) as err:
            load(folder)
        line = one_line(err)
        assert str(folder / "config.json") in line and "not an object" in line, line


def test_generate_reports_a_bad_draft_config_before_loading_models(tmp_path, capsys, no_models):
    """Guards `dspark generate --draft FOLDER` with a bad config value: one line naming the file,
    before the target is loaded."""
    folder = rewrite_config(copy_fixture(tmp_path), block_size=0)
    err = cli_error(capsys, ["generate", "--prompt", "hi", "--draft", str(folder)])
    assert f"{folder}/config.json: block_size is 0" in err


# -- 2. training data records ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from dspark_hf.bundled.target import default_target_dir

    return AutoTokenizer.from_pretrained(default_target_dir())


GOOD = json.dumps({"prompt": "Hi", "response": "Hello"})
BAD_RECORDS = [
    ("[1, 2, 3]", "a record must be a JSON object, got a JSON array"),
    ("42", "a record must be a JSON object, got a JSON number"),
    ("null", "a record must be a JSON object, got JSON null"),
    ('"hello"', "a record must be a JSON object, got a JSON string"),
    ("{}", "empty record; expected one of prompt, messages, text or input_ids"),
    ('{"foo": 1}', "unknown record shape with keys ['foo']"),
    ('{"messages": "hi"}', "messages must be a list of {role, content} objects, got a JSON string"),
    ('{"messages": []}', "messages is empty"),
    ('{"messages": ["hi"]}', "messages[0] must be an object with role and content, got a JSON string"),
    ('{"messages": [{"content": "hi"}]}', "messages[0] has no role"),
    ('{"messages": [{"role": "user"}]}', "messages[0] has no content"),
    ('{"messages": [{"role": "user", "content": 5}]}', "messages[0].content must be a string, got a JSON number"),
    ('{"messages": [{"role": 1, "content": "hi"}]}', "messages[0].role must be a string, got a JSON number"),
    ('{"prompt": ["hi"]}', "prompt must be a string, got a JSON array"),
    ('{"prompt": "hi", "answer": 3}', "answer must be a string, got a JSON number"),
    ('{"text": null}', "text must be a string, got JSON null"),
    ('{"input_ids": "1 2 3"}', "input_ids must be a list of token ids, got a JSON string"),
    ('{"input_ids": []}', "input_ids is empty"),
    ('{"input_ids": [1, "2"]}', "input_ids[1] is '2'; token ids are whole numbers"),
    ('{"input_ids": [1, 2.5]}', "input_ids[1] is 2.5; token ids are whole numbers"),
    ('{"input_ids": [1, -3]}', "input_ids[1] is -3; token ids must lie in [0, 49151] (the vocabulary has 49152)"),
    ('{"input_ids": [1, 99999]}', "input_ids[1] is 99999; token ids must lie in [0, 49151] (the vocabulary has 49152)"),
    ('{"input_ids": [1, 2], "assistant_mask": [1]}', "assistant_mask has 1 values for 2 input_ids"),
    ('{"input_ids": [1, 2], "assistant_mask": [1, 2]}', "assistant_mask[1] is 2; it must be 0 or 1"),
]


@pytest.mark.parametrize("line,problem", BAD_RECORDS)
def test_bad_training_records_are_one_line_with_file_and_line(tokenizer, tmp_path, line, problem):
    """Guards training/data.py's record checks: each malformed record is one DataError line
    `<file>:<line>: <problem>` (they were AttributeError / TypeError / IndexError tracebacks, or,
    for negative ids, silent wrong training). The bad record sits on line 3, after a blank line."""
    from dspark_hf.training.data import DataError, load_examples

    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + "\n\n" + line + "\n" + GOOD + "\n")
    with pytest.raises(DataError) as err:
        load_examples(tokenizer, path)
    assert isinstance(err.value, DSparkError)
    text = one_line(err)
    assert text.startswith(f"{path}:3: ") and problem in text, text


def test_unanswered_prompt_names_its_line(tokenizer, tmp_path):
    """Guards the prompt-without-answer message: it names `<file>:<line>` like every other record error."""
    from dspark_hf.training.data import DataError, load_examples

    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + "\n" + json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(DataError) as err:
        load_examples(tokenizer, path)
    assert one_line(err).startswith(f"{path}:2: ") and "--self-distill" in str(err.value)


def test_train_reports_a_bad_record_before_loading_the_target(tmp_path, capsys, no_models):
    """Guards `dspark train`: a malformed record is one line `<file>:<line>: ...`, exit 2, before the
    target is loaded."""
    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + "\n" + '{"messages": "hi"}' + "\n")
    err = cli_error(capsys, ["train", "--data", str(path), "--output-dir", str(tmp_path / "out")])
    assert f"{path}:2: messages must be a list" in err


# -- 3. shared CLI flags -----------------------------------------------------------------------------

GENERATE = ["generate", "--prompt", "hi", "--draft", "random"]
BAD_GENERATE_FLAGS = [
    (["--temperature", "-1"], "--temperature must be a finite number >= 0 (0 = greedy), got -1.0"),
    (["--temperature", "nan"], "--temperature must be a finite number >= 0 (0 = greedy), got nan"),
    (["--temperature", "inf"], "--temperature must be a finite number >= 0 (0 = greedy), got inf"),
    (["--temperature", "1", "--top-p", "1.5"], "--top-p must be a number in (0, 1], got 1.5"),
    (["--temperature", "1", "--top-p", "0"], "--top-p must be a number in (0, 1], got 0.0"),
    (["--top-p", "nan"], "--top-p must be a number in (0, 1], got nan"),
    (["--top-k", "-3"], "--top-k must be at least 0 (0 = no top-k), got -3"),
    (["--threads", "-1"], "--threads must be at least 1, got -1"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1, got -5"),
    (["--policy", "whole:3"], "--policy: verification policy 'whole' takes no argument, got 'whole:3'"),
    (["--policy", "fixed:-1"], "--policy: verification policy 'fixed:-1': fixed verification length must be a whole number >= 0"),
    (["--policy", "fixed:2.5"], "--policy: verification policy 'fixed:2.5': fixed verification length must be a whole number >= 0"),
    (["--policy", "fixed:inf"], "--policy: verification policy 'fixed:inf': fixed verification length must be a whole number >= 0"),
    (["--policy", "threshold:abc"], "--policy: verification policy 'threshold' takes a number, got 'abc' in 'threshold:abc'"),
    (["--policy", "threshold:2"], "--policy: verification policy 'threshold:2': confidence threshold must lie in [0, 1]"),
    (["--policy", "hardware:bogus"], "--policy: verification policy 'hardware:bogus': on_missing must be one of"),
]


@pytest.mark.parametrize("flags,message", BAD_GENERATE_FLAGS)
def test_generate_refuses_bad_flags_in_one_line(capsys, no_models, flags, message):
    """Guards `dspark generate`'s flag checks: negative / nan temperatures used to run greedy, top-p 1.5
    and 0 were silently changed, top-k -3, threads -1 and policy whole:3 were tracebacks. Each is now
    one line naming the flag and the allowed range, before any model is loaded."""
    err = cli_error(capsys, GENERATE + flags)
    assert message in err, err


@pytest.mark.parametrize(
    "spec,message",
    [
        ("whole:3", "verification policy 'whole' takes no argument, got 'whole:3'."),
        ("fixed:-1", "verification policy 'fixed:-1': fixed verification length must be a whole number >= 0"),
        ("fixed:2.5", "verification policy 'fixed:2.5': fixed verification length must be a whole number >= 0"),
        ("fixed:inf", "verification policy 'fixed:inf': fixed verification length must be a whole number >= 0"),
        ("threshold:abc", "verification policy 'threshold' takes a number, got 'abc' in 'threshold:abc'."),
        ("threshold:2", "verification policy 'threshold:2': confidence threshold must lie in [0, 1]"),
        ("survival:nan", "verification policy 'survival:nan': survival threshold must lie in [0, 1]"),
        ("hardware:bogus", "verification policy 'hardware:bogus': on_missing must be one of ('profile', 'whole', 'error')"),
        ("online:3", "verification policy 'online:3': on_missing must be one of"),
    ],
)
def test_resolve_policy_refuses_bad_specs_in_one_line(spec, message):
    """Guards resolve_policy: `whole` takes no argument (whole:3 was a TypeError), fixed:inf was an
    OverflowError; every bad spec is one UnsupportedUsageError line quoting the spec."""
    with pytest.raises(UnsupportedUsageError) as err:
        resolve_policy(spec)
    assert message in one_line(err)


def test_good_policy_specs_still_resolve():
    """Guards that the stricter parsing keeps the valid specs."""
    assert resolve_policy("whole").name == "whole" and resolve_policy(None).name == "whole"
    assert resolve_policy("fixed:3").length == 3 and resolve_policy("fixed:0").length == 0
    assert resolve_policy("threshold:0.6").threshold == 0.6 and resolve_policy(0.4).threshold == 0.4
    assert resolve_policy("hardware:whole").on_missing == "whole"


OTHER_COMMANDS = [
    (["bench", "--no-plots", "--threads", "-1"], "--threads must be at least 1, got -1"),
    (["bench", "--no-plots", "--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["bench", "--no-plots", "--temperature", "-1"], "--temperature must be a finite number >= 0"),
    (["bench", "--no-plots", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    (["bench", "--no-plots", "--policies", "whole,whole:3"], "--policies: verification policy 'whole' takes no argument"),
    (["bench", "--no-plots", "--dflash-policies", "fixed:-1"], "--dflash-policies: verification policy 'fixed:-1'"),
    (["bench", "--no-plots", "--cost-mode", "--policies", "threshold:2"], "--policies: verification policy 'threshold:2'"),
    (["demo", "--threads", "-1"], "--threads must be at least 1, got -1"),
    (["demo", "--max-new-tokens-limit", "0"], "--max-new-tokens-limit must be at least 1, got 0"),
    (["profile", "--threads", "-1"], "--threads must be at least 1, got -1"),
    (["calibrate", "--threads", "-1"], "--threads must be at least 1, got -1"),
    (["calibrate", "--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["calibrate", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    (["train", "--data", "d.jsonl", "--output-dir", "o", "--threads", "-1"], "--threads must be at least 1, got -1"),
    (["train", "--data", "d.jsonl", "--output-dir", "o", "--temperature", "-1"], "--temperature must be a finite number >= 0"),
    (["train", "--data", "d.jsonl", "--output-dir", "o", "--top-p", "1.5"], "--top-p must be a number in (0, 1], got 1.5"),
    (["train", "--data", "d.jsonl", "--output-dir", "o", "--top-k", "-3"], "--top-k must be at least 0"),
    (["train", "--data", "d.jsonl", "--output-dir", "o", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["finetune", "--lora", "--draft", "d", "--data", "d.jsonl", "--out", "o", "--threads", "-1"], "--threads must be at least 1, got -1"),
]


@pytest.mark.parametrize("argv,message", OTHER_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_other_commands_share_the_flag_checks(tmp_path, monkeypatch, capsys, no_models, argv, message):
    """Guards the shared validators (dspark_hf.cli.validators) on bench, demo, profile, calibrate, train
    and finetune: --threads -1 was a torch RuntimeError traceback, nan temperatures ran greedy, and
    bench's --dflash-policies was only checked after loading the target."""
    monkeypatch.chdir(tmp_path)
    err = cli_error(capsys, argv)
    assert message in err, err
