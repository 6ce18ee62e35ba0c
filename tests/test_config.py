"Config tree, profiles and the CLI entry point."
import subprocess
import sys

import pytest
import yaml

from vertical_pretrain.config import PROFILES, Config, get_config, model_source, project_root


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_round_trip_through_yaml_files(tmp_path, profile):
    cfg = get_config(profile)
    path = cfg.save(tmp_path / "run.yaml")
    assert Config.load(path) == cfg


def test_full_profile_is_the_seeds_run():
    c = get_config("full")
    assert c.model.model_name_or_path == "ernie-3.0-medium-zh"
    assert (c.data.max_seq_len, c.train.micro_batch_size, c.train.global_batch_size, c.train.max_steps) == (256, 32, 128, 200)
    assert (c.train.checkpoint_steps, c.train.save_steps, c.train.logging_freq, c.train.eval_freq, c.train.eval_iters) == (50, 50, 10, 50, 10)
    assert (c.train.max_lr, c.train.min_lr, c.train.warmup_rate, c.train.lr_decay_style) == (1e-4, 5e-5, 0.01, "cosine")
    assert c.data.binary_head and (c.data.masked_lm_prob, c.data.short_seq_prob, c.data.max_ngrams) == (0.15, 0.1, 3)
    assert (c.data.split, c.train.seed, c.launch.devices, c.launch.device) == ("98,1,1", 1234, "0,1,2,3", "gpu")
    assert model_source(c) == "ernie-3.0-medium-zh"


def test_cli_prints_resolved_yaml_and_rejects_unknown_keys(tmp_path):
    exe = [sys.executable, "-m", "vertical_pretrain.cli"]
    out = subprocess.run(exe + ["config", "--profile", "smoke", "--set", "train.max_steps=9"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    d = yaml.safe_load(out)
    assert d["profile"] == "smoke" and d["train"]["max_steps"] == 9
    # the printed YAML is a valid --config for every stage
    (tmp_path / "run.yaml").write_text(out)
    out2 = subprocess.run(exe + ["config", "--config", str(tmp_path / "run.yaml")], capture_output=True, text=True, check=True).stdout
    assert out2 == out
    bad = subprocess.run(exe + ["config", "--set", "train.nope=1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown config key" in bad.stderr


def test_paths_resolve_against_project_root_from_any_cwd(tmp_path, monkeypatch):
    root = project_root()
    monkeypatch.chdir(root / "nbs")
    assert get_config("demo").paths.raw_dir == root / "data_file" / "debian_reference" / "raw"


def test_max_steps_auto_from_the_cli_and_yaml(tmp_path):
    "`--set train.max_steps=auto` is kept as 'auto' (not a number that could mean something else); numbers stay ints."
    exe = [sys.executable, "-m", "vertical_pretrain.cli"]
    out = subprocess.run(exe + ["config", "--profile", "smoke", "--set", "train.max_steps=AUTO", "--set", "train.epochs=1.5"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    d = yaml.safe_load(out)
    assert (d["train"]["max_steps"], d["train"]["epochs"]) == ("auto", 1.5)
    (tmp_path / "run.yaml").write_text(out)
    assert Config.load(tmp_path / "run.yaml").train.max_steps == "auto"
    assert get_config("smoke").train.epochs == 0.0  # unused by default
    bad = subprocess.run(exe + ["config", "--set", "train.max_steps=many"], capture_output=True, text=True)
    assert bad.returncode != 0 and "train.max_steps: expected an integer or 'auto', got 'many'" in bad.stderr
