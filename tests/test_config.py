import pytest

from bielik.config import load_config, parse_overrides
from bielik.errors import ConfigError
from bielik.train.pretrain import PretrainConfig


def test_overrides_parse_yaml_scalars():
    tree = parse_overrides(["train.optim.lr=3e-4", "train.compile=true", "output=runs/x", "mix={pl: 1}"])
    assert tree == {"train": {"optim": {"lr": 3e-4}, "compile": True}, "output": "runs/x", "mix": {"pl": 1}}


def test_misspelt_key_names_key_and_nearest(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(PretrainConfig, None, ["train.optim.lerning_rate=1e-3"])
    msg = str(exc.value)
    assert "unknown key 'train.optim.lerning_rate'" in msg and "valid keys: lr, min_lr" in msg
    with pytest.raises(ConfigError) as exc:
        load_config(PretrainConfig, None, ["train.optim.warmup_step=5"])
    assert "unknown key 'train.optim.warmup_step'; did you mean 'train.optim.warmup_steps'?" in str(exc.value)


def test_yaml_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 7\n  optim: {lr: 0.01}\n")
    cfg = load_config(PretrainConfig, f, ["train.steps=9"])
    assert cfg.train.steps == 9 and cfg.train.optim.lr == 0.01 and cfg.train.optim.betas == (0.9, 0.95)


def test_bad_value_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(PretrainConfig, None, ["train.steps=-1"])
    f = tmp_path / "bad.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml:"):
        load_config(PretrainConfig, f)
    with pytest.raises(ConfigError, match="min_lr"):
        load_config(PretrainConfig, None, ["train.optim.lr=1e-4", "train.optim.min_lr=1e-3"])
