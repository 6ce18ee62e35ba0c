"""Issue 26 part 2: the head warm-up. A start model shaped like the ernie-3.0-medium-zh release (no MLM transform, no
SOP head) trains its pretraining heads alone for the first steps, then the whole model. Real training throughout (tiny
ERNIE on CPU, the gloo launcher, kill -9): the body stays bitwise as loaded and the heads move; 2 processes with
accumulation and recompute give the losses of 1 process through the phase change; a kill in the head phase resumes
into the same losses; without a head warm-up nothing changes."""
import contextlib
import io
import json

import numpy as np
import pytest

from test_pretrain import base_cfg, corpus_root, cpu_grad_scaler, kill_at_first_checkpoint, train_losses  # noqa: F401 (fixture)
from test_start_model import _tiny_start
from vertical_pretrain.launch import main as launch_main
from vertical_pretrain.modeldir import load_weights, param_group
from vertical_pretrain.pretrain import phase_lr_at, read_metrics, read_trainer_state, schedule_args, start_report, train

RELEASE_LACKS = ("cls.predictions.transform.", "cls.predictions.layer_norm.", "cls.seq_relationship.")  # PaddleNLP #2049
HEAD_LINE = "head warm-up: 4 steps (auto: MLM transform random, SOP head random), then all parameters"
BODY = ("embeddings", "encoder", "pooler")
ALIASES = {"cls.predictions.decoder.weight": "ernie.embeddings.word_embeddings.weight",  # tied: frozen with the embeddings
           "cls.predictions.decoder.bias": "cls.predictions.decoder_bias"}  # save_pretrained writes both names


@pytest.fixture(scope="module")
def starts(tmp_path_factory, char_tokenizer_dir):
    "Tiny start checkpoints of the char vocab (hidden 64, 2 layers): the medium release's key set, and complete."
    from vertical_pretrain.modeldir import load_tokenizer
    root, vocab = tmp_path_factory.mktemp("heads"), len(load_tokenizer(char_tokenizer_dir))
    return {"medium": _tiny_start(root / "medium", vocab, drop=RELEASE_LACKS), "complete": _tiny_start(root / "complete", vocab)}


def cfg_from(corpus_root, tok, start, run, **over):
    return base_cfg(corpus_root, tok, run, **{"model.model_name_or_path": str(start), "train.max_steps": 8,
                                              "train.eval_freq": 4, **over})


def weights(ckpt) -> dict:
    return load_weights(ckpt / "model_state.pdparams")[0]


def quiet_train(cfg) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): train(cfg)
    return buf.getvalue()


def test_head_warmup_freezes_exactly_the_body(corpus_root, char_tokenizer_dir, starts):
    "auto on a medium-like start: 4 of 8 steps train the heads alone; embeddings, encoder and pooler stay as loaded."
    cfg = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_auto", **{"train.save_steps": 1})
    out = quiet_train(cfg)
    start, ck = weights(starts["medium"]), cfg.paths.checkpoint_dir
    w = {s: weights(ck / f"model_{s}") for s in range(1, 9)}
    for s in w:  # the saved aliases are the same parameters: the tied decoder weight is the word embeddings
        for alias, name in ALIASES.items(): np.testing.assert_array_equal(w[s][alias], w[s][name])
    body = [n for n in w[1] if param_group(n) in BODY]
    heads = [n for n in w[1] if n not in body and n not in ALIASES]
    assert len(body) > 20 and len(heads) == 7, heads  # MLM transform (4), decoder bias, SOP head (2)
    for s in range(1, 5):  # the head phase: every body tensor bitwise as the start file has it
        for n in body: np.testing.assert_array_equal(w[s][n], start[n], err_msg=f"step {s}: {n}")
    for n in heads:  # every head tensor moved during the phase (the loaded decoder bias too)
        assert not np.array_equal(w[1][n], w[4][n]), n
    assert not np.array_equal(w[1]["cls.predictions.decoder_bias"], start["cls.predictions.decoder_bias"])
    moved = {param_group(n) for n in body if not np.array_equal(w[5][n], start[n])}
    assert moved == set(BODY), moved  # step 5: the whole model trains
    # the optimizer of the head phase holds moments for the heads only; the phase is recorded for a resume
    import paddle
    opt4 = paddle.load(str(ck / "model_4" / "model_state.pdopt"))
    assert {k[1:].split("_moment1")[0] for k in opt4 if "_moment1" in k} == set(heads)
    assert read_trainer_state(ck / "model_4")["head_warmup"] == {"steps": 4, "why": "auto: MLM transform random, SOP head random"}
    # the log says which phase ran and why; so do start_model.json and the stage's report
    assert HEAD_LINE in out and " > step 4: head warm-up done; all parameters train from here" in out
    assert json.loads((cfg.paths.run_dir / "start_model.json").read_text())["head_warmup"]["steps"] == 4
    assert HEAD_LINE in start_report(cfg.paths.run_dir)
    lrs = {r["step"]: r["lr"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"}
    np.testing.assert_allclose([lrs[s] for s in range(1, 9)],
                               [phase_lr_at(s, 4, **schedule_args(cfg.train, 4)) for s in range(8)])


def test_the_head_phase_under_the_loss_scaler_and_recompute(corpus_root, char_tokenizer_dir, starts, monkeypatch):
    "float16 AMP's loss scaler (a real GradScaler, on CPU) and recompute: the head steps leave the body as loaded."
    import vertical_pretrain.pretrain as P
    monkeypatch.setattr(P, "make_scaler", lambda cfg, amp: cpu_grad_scaler(init_loss_scaling=2.0 ** 10))
    cfg = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_amp", **{"train.use_recompute": True})
    with contextlib.redirect_stdout(io.StringIO()): r = P.setup_run(cfg)
    assert r["scaler"] is not None and r["head"]["steps"] == 4
    named = dict(r["model"].named_parameters())
    before = {n: p.numpy().copy() for n, p in named.items()}
    for step in range(4):
        P.train_step(r, [next(r["loader"]) for _ in range(r["acc"])], cfg, step)
    moved = {n for n, p in named.items() if not np.array_equal(p.numpy(), before[n])}
    assert moved == {n for n in named if param_group(n) not in BODY}, moved  # exactly the heads, every one of them
    P.train_step(r, [next(r["loader"]) for _ in range(r["acc"])], cfg, 4)  # the whole model from here
    assert all(not np.array_equal(p.numpy(), before[n]) for n, p in named.items() if param_group(n) == "encoder")
    r["logger"].close()


@pytest.mark.timeout(240)
def test_two_processes_with_accumulation_match_one_through_the_phase_change(corpus_root, char_tokenizer_dir, starts, capfd):
    over = {"train.max_steps": 6, "train.head_warmup_steps": 3, "train.global_batch_size": 16, "train.eval_freq": 3,
            "data.num_workers": 0}
    one = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_one", **over)
    quiet_train(one)  # 1 process: micro 4 x accumulate 4, no recompute
    two = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_two", **over, **{"train.use_recompute": True})
    rc = launch_main(["--config", str(two.save(corpus_root / "hw_two.yaml")), "--nproc", "2"])
    out = capfd.readouterr().out
    assert rc == 0, out[-3000:]
    assert "2 process(es) x micro 4 x accumulate 2" in out and "head warm-up: 3 steps (train.head_warmup_steps=3)" in out
    for split in ("train", "valid", "test"):
        l1, l2 = train_losses(one.paths.run_dir, split), train_losses(two.paths.run_dir, split)
        assert sorted(l1) == sorted(l2) and l1
        np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-5)
    assert sorted(train_losses(one.paths.run_dir)) == [1, 2, 3, 4, 5, 6]  # through the phase change at step 3
    w1, w2 = weights(one.paths.checkpoint_dir / "model_last"), weights(two.paths.checkpoint_dir / "model_last")
    for n in w1: np.testing.assert_allclose(w2[n], w1[n], rtol=1e-4, atol=1e-6, err_msg=n)


@pytest.mark.timeout(240)
def test_kill_9_in_the_head_phase_then_resume_matches_uninterrupted(corpus_root, char_tokenizer_dir, starts):
    over = {"train.max_steps": 24, "train.head_warmup_steps": 12, "train.save_steps": 0, "train.checkpoint_steps": 2,
            "train.eval_freq": 6, "data.num_workers": 1}
    ref = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_ref", **over)
    quiet_train(ref)
    cfg = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_killed", **over)
    kill_at_first_checkpoint(cfg.save(corpus_root / "hw_killed.yaml"), cfg)
    resumed_from = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["step"]
    assert 2 <= resumed_from < 12, f"the kill came at step {resumed_from}, after the head phase: nothing to test"
    out = quiet_train(cfg)  # resumes inside the head phase
    assert f"resuming from {cfg.paths.checkpoint_dir / 'model_last'} at step {resumed_from}" in out and "head warm-up: 12 steps" in out
    got, want = train_losses(cfg.paths.run_dir), train_losses(ref.paths.run_dir)
    assert sorted(got) == list(range(1, 25))
    np.testing.assert_allclose([got[s] for s in range(resumed_from + 1, 25)],
                               [want[s] for s in range(resumed_from + 1, 25)], rtol=1e-6)
    np.testing.assert_allclose(list(train_losses(cfg.paths.run_dir, "valid").values()),
                               list(train_losses(ref.paths.run_dir, "valid").values()), rtol=1e-6)
    lr = {r["step"]: r["lr"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"}
    assert lr == {r["step"]: r["lr"] for r in read_metrics(ref.paths.run_dir) if r["split"] == "train"}
    w, w_ref = weights(cfg.paths.checkpoint_dir / "model_last"), weights(ref.paths.checkpoint_dir / "model_last")
    for n in w_ref: np.testing.assert_allclose(w[n], w_ref[n], rtol=1e-6, atol=1e-8, err_msg=n)


def test_without_a_head_warmup_nothing_changes(corpus_root, char_tokenizer_dir, starts):
    """Heads loaded (auto: off) and head_warmup_steps=0 on the medium-like start: no phase, no new keys in the run's
    files, and the lr of every step is `lr_at` of the whole run, as before the head warm-up existed."""
    from vertical_pretrain.pretrain import lr_at
    full = cfg_from(corpus_root, char_tokenizer_dir, starts["complete"], "hw_off_auto", **{"train.max_steps": 4})
    out = quiet_train(full)
    assert "head warm-up: off (auto: the MLM heads were loaded)" in out and "head warm-up done" not in out
    zero = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_off_zero",
                    **{"train.max_steps": 4, "train.head_warmup_steps": 0})
    assert "head warm-up: off (train.head_warmup_steps=0)" in quiet_train(zero)
    for cfg in (full, zero):
        assert "head_warmup" not in read_trainer_state(cfg.paths.checkpoint_dir / "model_last")
        assert "head_warmup" not in json.loads((cfg.paths.run_dir / "start_model.json").read_text())
        lrs = [r["lr"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"]
        assert lrs == [lr_at(s, **schedule_args(cfg.train)) for s in range(4)]
    # a head warm-up that leaves no step for the whole model is refused before training
    bad = cfg_from(corpus_root, char_tokenizer_dir, starts["medium"], "hw_bad", **{"train.head_warmup_steps": 8})
    with pytest.raises(ValueError, match="train.head_warmup_steps=8 must be < train.max_steps=8"):
        quiet_train(bad)
