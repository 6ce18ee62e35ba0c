"Config tree, profiles and the CLI entry point."
import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from vertical_pretrain.config import PROFILES, Config, get_config, model_source, project_root, settings


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


# ---------------------------------------------------------------- help text and value checks in the dataclasses
PROFILES_FIXTURE = project_root() / "tests" / "fixtures" / "config_profiles.json"


@pytest.mark.parametrize("profile", ["smoke", "demo", "full"])
def test_profiles_unchanged(profile):
    "Moving the help into the dataclasses changed no default and no profile: every value as recorded before the move."
    assert get_config(profile).to_dict() == json.loads(PROFILES_FIXTURE.read_text(encoding="utf-8"))[profile]


def test_every_setting_has_help_and_the_profiles_are_valid():
    assert [r["key"] for r in settings() if len(r["help"]) < 10] == []
    for p in PROFILES: assert get_config(p).validate() == []


def test_validate_one_line_per_bad_value():
    cfg = get_config("smoke", {"launch.device": "tpu", "segment.backend": "thulac", "pdf2text.ocr": "sometimes",
                               "train.lr_decay_style": "step", "train.amp_level": "o2", "train.amp_dtype": "fp16",
                               "tapt.start_from": "scratch", "export.checkpoint": "best", "evaluate.top_k": 0,
                               "data.split": "98,1,1,1", "pretraining_data.cn_seg_func": "pkuseg"})
    lines = cfg.validate()
    assert len(lines) == 11, lines
    want = ["pdf2text.ocr='sometimes' must be auto, never or always; fix: --set pdf2text.ocr=auto",
            "segment.backend='thulac' must be jieba, lac or cn_splited; fix: --set segment.backend=jieba",
            "data.split='98,1,1,1' must be up to three train,valid,test weights",
            "train.lr_decay_style='step' must be cosine, linear or none; fix: --set train.lr_decay_style=cosine",
            "train.amp_dtype='fp16' must be float16 or bfloat16; fix: --set train.amp_dtype=float16",
            "launch.device='tpu' must be cpu or gpu; fix: --set launch.device=cpu",
            "tapt.start_from='scratch' must be domain or base; fix: --set tapt.start_from=domain",
            "export.checkpoint='best' must be last or a step number",
            "evaluate.top_k=0 must be >= 1; fix: --set evaluate.top_k=5"]
    for w in want: assert sum(l.startswith(w) for l in lines) == 1, (w, lines)
    with pytest.raises(ValueError, match=r"^launch.device='tpu' must be cpu or gpu"):
        cfg.launch.require_valid("device")
    cfg.launch.require_valid("nproc")  # only the named fields


def test_cli_explain_one_section_and_unknown_section(tmp_path):
    exe = [sys.executable, "-m", "vertical_pretrain.cli", "config"]
    out = subprocess.run(exe + ["--explain", "launch", "--profile", "full"], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    lines = out.splitlines()
    assert lines[0].startswith("launch: ") and all(l.startswith(("launch", "  ")) for l in lines)
    assert '  launch.device (str) = "cpu"    full: "gpu"' in lines and "Allowed: cpu or gpu." in out
    assert '  launch.nnodes (int) = 1' in lines  # same in full and the defaults: no profile value
    plain = subprocess.run(exe + ["--explain", "evaluate"], capture_output=True, text=True, check=True).stdout
    assert "evaluate.top_k (int) = 5\n" in plain and "At least 1." in plain and "smoke:" not in plain
    everything = subprocess.run(exe + ["--explain"], capture_output=True, text=True, check=True).stdout
    assert all(f"  {r['key']} (" in everything for r in settings())
    bad = subprocess.run(exe + ["--explain", "trian"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "vertical-pretrain config: unknown section 'trian'; known sections: " + ", ".join(
            f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.type)) + " (or a dotted key)"]


def test_preflight_and_runtime_give_the_same_line(tmp_path):
    "The launcher (06a), the training (06) and stage 07b raise the line the preflight's settings check lists."
    from vertical_pretrain.check import run_checks
    from vertical_pretrain.evaluate_mlm import run_evaluation
    from vertical_pretrain.launch import build_launch_command
    from vertical_pretrain.pretrain import check_amp
    cfg = get_config("smoke", {"launch.device": "tpu", "train.amp_dtype": "fp16", "evaluate.bootstrap_reps": 0})
    lines = cfg.validate()
    assert len(lines) == 3 and set(lines) <= set(run_checks(cfg, stages=[]))
    for call, line in ((lambda: build_launch_command(cfg, "run.yaml"), lines[1]), (lambda: check_amp(cfg.train), lines[0]),
                       (lambda: run_evaluation({}, {}, tmp_path, tokenizer="", data_cfg=cfg.data, ecfg=cfg.evaluate), lines[2])):
        with pytest.raises(ValueError) as e: call()
        assert str(e.value) == line


def test_paths_typed_on_the_command_line_resolve_against_the_current_directory(tmp_path):
    "issue 28.17: flags and --set values are read from the cwd (as every Unix tool); config-file paths from the repo root."
    import os
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "VERTICAL_PRETRAIN_ROOT": str(repo), "GLOG_minloglevel": "2"}
    def vp(*args):
        return subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    (tmp_path / "book.txt").write_text("\n".join(["这是一本关于 Debian 系统管理的书，第一章讲安装。"] * 6) + "\n", encoding="utf-8")
    (tmp_path / "task").mkdir(); (tmp_path / "task" / "train.jsonl").write_text('{"text": "安装", "label": "a"}\n', encoding="utf-8")
    (tmp_path / "tiny_model").mkdir()
    # --set: the printed config holds the cwd's folders; a hub name stays a name; a config file keeps root-relative paths
    r = vp("config", "--profile", "smoke", "--set", "finetune.task_dir=task", "--set", "paths.data_root=data",
           "--set", "model.model_name_or_path=tiny_model", "--set", "pretraining_data.tokenizer_name_or_path=ernie-3.0-medium-zh")
    d = yaml.safe_load(r.stdout)
    assert (d["finetune"]["task_dir"], d["paths"]["data_root"], d["model"]["model_name_or_path"]) == (
        str(tmp_path / "task"), str(tmp_path / "data"), str(tmp_path / "tiny_model")), r.stderr
    assert d["pretraining_data"]["tokenizer_name_or_path"] == "ernie-3.0-medium-zh"
    (tmp_path / "run.yaml").write_text("profile: smoke\nfinetune:\n  task_dir: task\n", encoding="utf-8")
    assert Config.load(tmp_path / "run.yaml").finetune.task_dir == "task"  # resolved later against the repo root
    # a stage flag (config.LEGACY_FLAGS): stage 01 reads the cwd's book
    r = vp("pdf2text", "--profile", "smoke", "--input_path", "book.txt", "--output_path", "out/book.txt")
    assert r.returncode == 0 and (tmp_path / "out" / "book.txt").is_file(), r.stderr[-2000:]
    # a command's own flags (finetune): the cwd's task is read (its train split is found; the dev split is what is missing)
    r = vp("finetune", "--profile", "smoke", "--model_dir", "tiny_model", "--task_dir", "task")
    assert r.returncode == 2 and f"{tmp_path / 'task'}: no dev split" in r.stderr, r.stderr[-2000:]


def test_the_missing_stages_command_rebuilds_the_notebooks_config(tmp_path, monkeypatch):
    "A stage notebook run with overrides names a command whose --set flags give the pipeline the same config (issue 25)."
    import argparse
    import shlex
    from vertical_pretrain.config import add_config_args, config_from_args
    from vertical_pretrain.stages import StagesMissing, require_stages
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "my data"), "paths.output_root": str(tmp_path / "out"),
                               "data.blend": ["0.8 book", "0.2 general"], "train.max_steps": 7, "segment.enabled": False})
    with pytest.raises(StagesMissing) as e:
        require_stages("06", cfg)
    cmd = str(e.value).split("; run: ")[1]
    argv = shlex.split(cmd)
    assert argv[:4] == ["vertical-pretrain", "pipeline", "--profile", "smoke"] and argv[-2] == "--to"
    monkeypatch.chdir(tmp_path)  # typed paths resolve against the cwd; these are absolute
    args = add_config_args(argparse.ArgumentParser()).parse_args(argv[2:-2])
    assert config_from_args(args) == cfg
