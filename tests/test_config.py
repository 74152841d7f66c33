"""kit.toml: defaults, presets, `kit init`, unknown keys, all problems at once, --set precedence."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from kaggle_kit.config import (
    PRESETS, ConfigError, KitConfig, build_config, init_config, load_config, parse_set_flags, render_toml,
)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the repository's own kit.toml must not leak in
    return tmp_path


def test_defaults(in_tmp):
    cfg = load_config()
    assert isinstance(cfg, KitConfig)
    assert cfg.prompt.max_length == 1024 and cfg.prompt.truncation == "per_component"
    assert cfg.data.format == "auto" and cfg.data.folds == 5
    assert cfg.quantization.mode == "none" and cfg.peft.method == "lora"
    assert cfg.kernels == {} and cfg.instances == {}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_load_and_roundtrip(preset, in_tmp):
    cfg = load_config(preset=preset)
    assert cfg.task.kind == PRESETS[preset]["task"]["kind"]
    path = init_config(in_tmp / f"{preset}.toml", preset=preset)
    again = load_config(path, required=True)
    assert again.to_dict() == cfg.to_dict()


def test_lmsys_preset_values(in_tmp):
    cfg = load_config(preset="lmsys")
    assert cfg.task.labels == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert cfg.prompt.max_length == 2048 and cfg.quantization.mode == "4bit"
    assert set(cfg.kernels["inference"].instances) <= set(cfg.instances)


def test_kit_init_writes_commented_config_that_loads(in_tmp):
    from kaggle_kit.cli import main

    res = CliRunner().invoke(main, ["init", "--preset", "wsdm", "--username", "alice"])
    assert res.exit_code == 0, res.output
    text = (in_tmp / "kit.toml").read_text()
    assert "# Maximum tokens per example" in text  # help text as comments
    assert "One of: per_component, head_tail, turn_aware" in text
    cfg = load_config("kit.toml", required=True)
    assert cfg.kaggle.username == "alice" and cfg.task.labels == ["model_a", "model_b"]
    res = CliRunner().invoke(main, ["init"])
    assert res.exit_code == 2 and "--force" in res.output
    res = CliRunner().invoke(main, ["init", "--preset", "sft", "--force"])
    assert res.exit_code == 0 and load_config("kit.toml").task.kind == "sft"


def test_unknown_key_names_nearest(in_tmp):
    (in_tmp / "kit.toml").write_text("[prompt]\nmax_lenght = 512\n")
    with pytest.raises(ConfigError) as err:
        load_config("kit.toml")
    msg = str(err.value)
    assert "prompt.max_lenght" in msg and "did you mean 'prompt.max_length'" in msg
    (in_tmp / "kit.toml").write_text("[promt]\nmax_length = 512\n")
    with pytest.raises(ConfigError, match="did you mean 'prompt'"):
        load_config("kit.toml")


def test_all_problems_reported_at_once(in_tmp):
    (in_tmp / "kit.toml").write_text(
        '[train]\nmax_steps = "ten"\nlearning_rat = 1e-4\n[prompt]\ntruncation = "middle"\n[data]\nfolds = 1\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config("kit.toml")
    problems = err.value.problems
    assert len(problems) == 4, problems
    joined = "\n".join(problems)
    assert "train.max_steps" in joined and "learning_rat" in joined and "'middle'" in joined and "data.folds" in joined


def test_set_precedence_and_typing(in_tmp):
    (in_tmp / "kit.toml").write_text("[train]\nmax_steps = 10\nlearning_rate = 1e-3\n[prompt]\nmax_length = 512\n")
    cfg = load_config("kit.toml", ["train.max_steps=50", "peft.targets=['q_proj', 'v_proj']", "kaggle.username=bob",
                                   "train.gradient_checkpointing=true", "train.learning_rate=5"])
    assert cfg.train.max_steps == 50 and isinstance(cfg.train.max_steps, int)  # --set beats the file
    assert cfg.prompt.max_length == 512                                          # the file beats defaults
    assert cfg.train.batch_size == 4                                             # defaults fill the rest
    assert cfg.peft.targets == ["q_proj", "v_proj"]
    assert cfg.kaggle.username == "bob"
    assert cfg.train.gradient_checkpointing is True
    assert cfg.train.learning_rate == 5.0 and isinstance(cfg.train.learning_rate, float)
    # preset < file < --set
    cfg = load_config("kit.toml", ["prompt.truncation=head_tail"], preset="lmsys")
    assert cfg.prompt.max_length == 512 and cfg.quantization.mode == "4bit" and cfg.prompt.truncation == "head_tail"


def test_bad_set_flags():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_set_flags(["train.max_steps"])
    with pytest.raises(ConfigError, match="needs a section"):
        parse_set_flags(["max_steps=3"])
    with pytest.raises(ConfigError, match="must be int"):
        build_config(("--set", parse_set_flags(["train.max_steps=abc"])))


def test_bad_choice_values():
    with pytest.raises(ConfigError) as err:
        build_config(("x", {"quantization": {"mode": "3bit"}, "data": {"format": "xlsx"}, "inference": {"tta": "sometimes"}}))
    joined = "\n".join(err.value.problems)
    assert "'quantization.mode' = '3bit' is not one of: none, 4bit, 8bit" in joined
    assert "'data.format' = 'xlsx'" in joined and "inference.tta" in joined
    assert len(err.value.problems) == 3


def test_kernel_instance_cross_check():
    with pytest.raises(ConfigError, match="not a table \\[instances.adaptr\\]"):
        build_config(("x", {"kernels": {"inference": {"instances": ["adaptr"]}}, "instances": {"adapter": {"model_slug": "m"}}}))


def test_config_command_toml_and_json(in_tmp):
    import json

    from kaggle_kit.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["init", "--preset", "lmsys"]).exit_code == 0
    res = runner.invoke(main, ["config", "--json", "--set", "train.max_steps=7"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["train"]["max_steps"] == 7 and data["prompt"]["max_length"] == 2048
    res = runner.invoke(main, ["config"])
    assert res.exit_code == 0 and "[prompt]" in res.output and "max_length = 2048" in res.output
    res = runner.invoke(main, ["config", "--set", "prompt.truncatoin=head_tail"])
    assert res.exit_code == 2 and "did you mean 'prompt.truncation'" in res.output
    assert "Traceback" not in res.output


def test_render_toml_covers_every_field():
    text = render_toml(KitConfig())
    for section in ("kaggle", "model", "task", "data", "prompt", "quantization", "peft", "train", "inference", "wheels"):
        assert f"[{section}]" in text


def test_instance_version_takes_a_toml_integer_or_latest():
    from kaggle_kit.config import ConfigError, build_config

    cfg = build_config(("kit.toml", {"instances": {"adapter": {"version": 3}}}))
    assert cfg.instances["adapter"].version == "3"
    with pytest.raises(ConfigError, match="instances.adapter.version"):
        build_config(("kit.toml", {"instances": {"adapter": {"version": "v3"}}}))


def test_sft_preset_writes_only_what_sft_reads(in_tmp):
    """`kit init --preset sft`: no classification metric, labels, truncation or classifier template."""
    import tomllib

    from kaggle_kit.cli import main
    from kaggle_kit.config import UNUSED_BY_KIND

    res = CliRunner().invoke(main, ["init", "--preset", "sft", "--username", "alice"])
    assert res.exit_code == 0, res.output
    data = tomllib.loads((in_tmp / "kit.toml").read_text())
    assert "metric" not in data["task"] and "labels" not in data["task"]
    assert "metric_for_best" not in data["train"] and "truncation" not in data["prompt"]
    assert data["prompt"]["template"] == "auto" and "kit-v1" not in (in_tmp / "kit.toml").read_text()
    for section, names in UNUSED_BY_KIND["sft"].items():
        assert not set(names) & set(data[section]), section
    cfg = load_config("kit.toml", required=True)
    assert cfg.task.kind == "sft" and cfg.prompt.max_length == 1024
    # a classifier preset still writes all of them
    res = CliRunner().invoke(main, ["init", "--preset", "lmsys", "--force"])
    data = tomllib.loads((in_tmp / "kit.toml").read_text())
    assert data["task"]["metric"] == "log_loss" and data["prompt"]["truncation"]
