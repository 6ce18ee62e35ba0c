"""Stage 07: export / repair-config / resolver / extend-vocab, on real tiny ERNIE checkpoints (nothing mocked)."""
import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddlenlp.transformers import (AutoModel, AutoModelForPretraining, AutoModelForSequenceClassification,
                                    AutoTokenizer, BertConfig, BertForPretraining, ErnieConfig, ErnieForPretraining,
                                    ErnieMConfig, ErnieMForSequenceClassification, ErnieMModel, ErnieModel,
                                    ErnieTokenizer)
from paddlenlp.utils.log import logger as pnlp_logger

from conftest import DEMO_PDF
from vertical_pretrain import export as ex
from vertical_pretrain import extend_vocab as xv
from vertical_pretrain.textio import is_han
from vertical_pretrain.cli import main as cli_main

pnlp_logger.set_level("ERROR")
TEXT_A, TEXT_B = "中国人民今天召开会议", "我们一起学习经济发展"


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


@pytest.fixture(scope="module")
def trained(char_tokenizer_dir):
    "A tiny ErnieForPretraining trained two AdamW steps from a fixed seed, with its tokenizer and optimizer."
    paddle.seed(1234)
    tok = ErnieTokenizer.from_pretrained(str(char_tokenizer_dir))
    n = len(tok.vocab)
    model = ErnieForPretraining(ErnieConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=64, max_position_embeddings=128))
    opt = paddle.optimizer.AdamW(learning_rate=1e-2, parameters=model.parameters())
    rng = np.random.default_rng(0)
    ids = paddle.to_tensor(rng.integers(5, n, size=(4, 16)))
    sop_labels = paddle.to_tensor([0, 1, 0, 1])
    model.train()
    for _ in range(2):
        mlm, sop = model(ids)
        loss = F.cross_entropy(mlm.reshape([-1, n]), ids.reshape([-1, 1])) + F.cross_entropy(sop, sop_labels.unsqueeze(-1))
        loss.backward(); opt.step(); opt.clear_grad()
    model.eval()
    return model, tok, opt


def fixed_input(tok):
    enc = tok(TEXT_A, TEXT_B)
    return paddle.to_tensor([enc["input_ids"]]), paddle.to_tensor([enc["token_type_ids"]])


def write_checkpoint(d, trained, seed_style=False, step=2000):
    "A checkpoint dir per the stage-06 contract; seed_style drops `architectures` like the seed's run did."
    model, tok, opt = trained
    with quiet():
        model.save_pretrained(str(d)); tok.save_pretrained(str(d))
    paddle.save(opt.state_dict(), str(d / "model_state.pdopt"))
    (d / "trainer_state.json").write_text(json.dumps({"step": step, "consumed_samples": 8 * step}))
    if seed_style:
        c = json.loads((d / "config.json").read_text()); c.pop("architectures")
        (d / "config.json").write_text(json.dumps(c, indent=2))
    return d


def assert_loads_everywhere(d, trained):
    "Every Auto class loads `d` as ERNIE and gives the in-memory model's outputs on a fixed input."
    model, tok, _ = trained
    ids, tt = fixed_input(tok)
    ref_seq, ref_pool = (t.numpy() for t in model.ernie(ids, token_type_ids=tt))
    ref_mlm, ref_sop = (t.numpy() for t in model(ids, token_type_ids=tt))
    with quiet():
        base = AutoModel.from_pretrained(str(d))
        pt = AutoModelForPretraining.from_pretrained(str(d))
        sc = AutoModelForSequenceClassification.from_pretrained(str(d), num_classes=3)
        at = AutoTokenizer.from_pretrained(str(d))
    for m in (base, pt, sc): m.eval()
    assert type(base) is ErnieModel and type(pt) is ErnieForPretraining
    assert type(sc).__name__ == "ErnieForSequenceClassification" and type(at) is ErnieTokenizer
    seq, pool = base(ids, token_type_ids=tt)
    np.testing.assert_allclose(seq.numpy(), ref_seq, atol=1e-6)
    np.testing.assert_allclose(pool.numpy(), ref_pool, atol=1e-6)
    mlm, sop = pt(ids, token_type_ids=tt)
    np.testing.assert_allclose(mlm.numpy(), ref_mlm, atol=1e-5)
    np.testing.assert_allclose(sop.numpy(), ref_sop, atol=1e-6)
    np.testing.assert_allclose(sc.ernie(ids, token_type_ids=tt)[0].numpy(), ref_seq, atol=1e-6)
    assert sc(ids, token_type_ids=tt).shape == [1, 3]
    assert at(TEXT_A, TEXT_B)["input_ids"] == tok(TEXT_A, TEXT_B)["input_ids"]


@pytest.mark.parametrize("name,seed_style", [("model_2000", False), ("model_ernie_micro_2400", True),
                                             ("checkpoint-final", False)])
def test_export_loads_with_every_auto_class_whatever_the_name(tmp_path, trained, name, seed_style):
    ckpt = write_checkpoint((tmp_path / "ckpt" / name), trained, seed_style=seed_style)
    out = ex.export(ckpt, tmp_path / "exported" / name)
    assert out == tmp_path / "exported" / name
    files = {p.name for p in out.iterdir()}
    assert {"model_state.pdparams", "config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"} <= files
    assert not files & {"model_state.pdopt", "trainer_state.json"}
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temp dir left behind
    conf = json.loads((out / "config.json").read_text())
    assert conf["architectures"] == ["ErnieForPretraining"] and conf["model_type"] == "ernie" and "init_class" not in conf
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "ErnieTokenizer"
    w = paddle.load(str(out / "model_state.pdparams"))
    assert all(v.dtype == paddle.float32 for v in w.values())
    assert "cls.seq_relationship.weight" in w and "cls.predictions.transform.weight" in w  # heads kept
    assert_loads_everywhere(out, trained)
    with quiet():
        m = ex.load_model(out, "ForPretraining")
    assert type(m) is ErnieForPretraining


@pytest.mark.parametrize("name", ["model_2000", "model_ernie_micro_2400"])
def test_seed_style_dir_fails_before_repair_and_loads_after(tmp_path, trained, name, capsys, monkeypatch):
    d = write_checkpoint(tmp_path / name, trained, seed_style=True)
    original = (d / "config.json").read_text()
    ids, tt = fixed_input(trained[1])
    # paddlenlp guesses the class from the whole path string it is given; a relative name keeps the tmp path
    # (and the user name in it, e.g. /tmp/pytest-of-albert/) out of the guess, so the result is deterministic
    monkeypatch.chdir(tmp_path)
    if name == "model_2000":
        with quiet(), pytest.raises(AttributeError, match="Unable to parse 'architectures' or 'init_class'"):
            AutoModel.from_pretrained(name)
    else:  # the ernie_m trap: the dir name picks ERNIE-M, silently random, and token_type_ids break
        with quiet():
            wrong = AutoModel.from_pretrained(name)
        assert type(wrong) is ErnieMModel
        with pytest.raises(TypeError, match="token_type_ids"):
            wrong(ids, token_type_ids=tt)
        with quiet(), pytest.raises(AttributeError):
            AutoModelForPretraining.from_pretrained(name)

    dry = ex.repair(d, dry_run=True)
    assert dry["status"] == "would_repair" and (d / "config.json").read_text() == original
    assert cli_main(["repair-config", str(d)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "repaired" and report["changes"]["architectures"] == [None, ["ErnieForPretraining"]]
    assert report["paddlenlp_after"] == {"Model": "ErnieModel", "ForPretraining": "ErnieForPretraining"}
    assert (d / "config.json.bak").read_text() == original
    assert_loads_everywhere(d, trained)
    again = ex.repair(d)
    assert again["status"] == "ok" and again["changes"] == {}


def test_repair_infers_everything_from_the_weights(tmp_path, trained):
    "A config that lacks architectures, model_type and sizes: all come back from the parameter names and shapes."
    d = write_checkpoint(tmp_path / "ernie_m_bert_albert", trained, seed_style=True)
    c = json.loads((d / "config.json").read_text())
    for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings"):
        c.pop(k)
    c["num_hidden_layers"] = 6  # wrong: the weights have 2
    (d / "config.json").write_text(json.dumps(c))
    assert ex.resolve_model_class(d, "ForPretraining") is ErnieForPretraining  # from the weights, not the name
    assert not ex.auto_model_class(d).__name__.startswith("Ernie" + "Model")  # paddlenlp guesses from the name
    rep = ex.repair(d)
    model = trained[0]
    assert rep["changes"]["vocab_size"] == [None, model.config.vocab_size]
    assert rep["changes"]["num_hidden_layers"] == [6, 2] and any("weights win" in n for n in rep["notes"])
    assert rep["changes"]["max_position_embeddings"] == [None, 128]
    assert_loads_everywhere(d, trained)


def _save_tiny(klass, config, d):
    paddle.seed(0)
    with quiet():
        klass(config).save_pretrained(str(d))
    return d


def test_repair_refuses_weights_that_are_not_ernie(tmp_path, capsys):
    ernie_m = ErnieMConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=64)
    cases = {
        "model_ernie_m_cls": (ErnieMForSequenceClassification, ernie_m, "ERNIE-M weights"),
        "model_ernie_m_bare": (ErnieMModel, ernie_m, "look like an ErnieMModel"),
        "model_bert": (BertForPretraining, BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=32), "prefix 'bert.'"),
    }
    for name, (klass, config, msg) in cases.items():
        d = _save_tiny(klass, config, tmp_path / name)
        c = json.loads((d / "config.json").read_text()); c.pop("architectures", None)
        (d / "config.json").write_text(json.dumps(c))
        before = (d / "config.json").read_text()
        with pytest.raises(ex.ModelDirError, match=re.escape(msg)):
            ex.repair(d)
        assert cli_main(["repair-config", str(d)]) == 2
        err = capsys.readouterr().err
        assert msg in err and "model_state.pdparams" in err
        assert (d / "config.json").read_text() == before and not (d / "config.json.bak").exists()
        with pytest.raises(ex.ModelDirError, match=re.escape(msg)):
            ex.export(d, tmp_path / "out" / name)
        assert not (tmp_path / "out" / name).exists()


def test_bad_inputs_give_clear_errors(tmp_path, trained, capsys):
    # a missing weights file: named, with what is there instead
    d = write_checkpoint(tmp_path / "model_10", trained)
    (d / "model_state.pdparams").unlink()
    for fn in (lambda: ex.export(d, tmp_path / "out"), lambda: ex.repair(d)):
        with pytest.raises(ex.ModelDirError, match=r"missing weights file .*model_10/model_state\.pdparams \(the dir holds: config\.json"):
            fn()
    assert cli_main(["export", str(d), str(tmp_path / "out")]) == 2
    assert "missing weights file" in capsys.readouterr().err and not (tmp_path / "out").exists()

    # a vocab that does not belong to the weights: both files and both sizes in the message
    d = write_checkpoint(tmp_path / "model_20", trained)
    n = trained[0].config.vocab_size
    with open(d / "vocab.txt", "a", encoding="utf-8") as f: f.write("".join(f"extra{i}\n" for i in range(7)))
    pat = rf"vocab\.txt has {n + 7} tokens but the word embedding in .*model_state\.pdparams has only {n} rows"
    with pytest.raises(ex.ModelDirError, match=pat):
        ex.export(d, tmp_path / "out2")
    with pytest.raises(ex.ModelDirError, match=pat):
        ex.repair(d)
    assert not (tmp_path / "out2").exists()

    # weights whose shapes disagree with the model they claim to be are caught at export
    d = write_checkpoint(tmp_path / "model_30", trained)
    w = paddle.load(str(d / "model_state.pdparams"))
    w["cls.seq_relationship.weight"] = paddle.zeros([32, 3])
    paddle.save(w, str(d / "model_state.pdparams"))
    with pytest.raises(ex.ModelDirError, match=r"cls\.seq_relationship\.weight: file \(32, 3\) vs model \(32, 2\)"):
        ex.export(d, tmp_path / "out3")

    # no config at all: num_attention_heads cannot come from the weights, so we ask for it
    d = write_checkpoint(tmp_path / "model_40", trained)
    (d / "config.json").unlink()
    with pytest.raises(ex.ModelDirError, match="num_attention_heads cannot be inferred"):
        ex.repair(d)
    rep = ex.repair(d, num_attention_heads=2)  # it did not load before: the outputs cannot be compared, and it says so
    assert rep["status"] == "repaired_unchecked" and not rep["output_check"]["checked"], rep
    assert "did not load before" in rep["output_check"]["reason"], rep["output_check"]
    assert_loads_everywhere(d, trained)

    # a checkpoint path that is not there; a weights file that is not a paddle state dict
    with pytest.raises(ex.ModelDirError, match="checkpoint not found"):
        ex.export(tmp_path / "nope", tmp_path / "out4")
    d = write_checkpoint(tmp_path / "model_60", trained)
    (d / "model_state.pdparams").write_bytes(b"not a pickle")
    with pytest.raises(ex.ModelDirError, match=r"cannot read weights file .*model_60/model_state\.pdparams"):
        ex.repair(d)

    # export replaces its output dir wholesale, so it never targets the input or a dir it did not write
    run = tmp_path / "run"
    ckpt = write_checkpoint(run / "checkpoints" / "model_last", trained)
    (run / "metrics.jsonl").write_text("{}\n")
    for target in (run, ckpt):
        with pytest.raises(ex.ModelDirError, match="overlaps the input"):
            ex.export(ckpt, target)
    (tmp_path / "notes").mkdir(); (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ex.ModelDirError, match="exists and is not a previous export result"):
        ex.export(ckpt, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me" and (run / "metrics.jsonl").is_file()
    assert (ckpt / "model_state.pdopt").is_file()


def test_export_casts_half_precision_and_strips_training_state(tmp_path, trained):
    d = write_checkpoint(tmp_path / "model_50", trained)
    w = paddle.load(str(d / "model_state.pdparams"))
    half = {k: v.astype("bfloat16" if "word_embeddings" in k else "float16") for k, v in w.items()}
    half["ernie.embeddings.word_embeddings.weight_fp32_master_0"] = w["ernie.embeddings.word_embeddings.weight"]
    half["LR_Scheduler"] = {"last_epoch": 3}  # optimizer-only state
    paddle.save(half, str(d / "model_state.pdparams"))
    c = json.loads((d / "config.json").read_text()); c["dtype"] = "float16"
    (d / "config.json").write_text(json.dumps(c))
    out = ex.export(d, tmp_path / "model_ernie_50")
    got = paddle.load(str(out / "model_state.pdparams"))
    assert set(got) == set(w)
    for k, v in got.items():
        assert v.dtype == paddle.float32
        np.testing.assert_array_equal(v.numpy(), half[k].astype("float32").numpy())
    assert json.loads((out / "config.json").read_text()).get("dtype", "float32") == "float32"  # fp16 no more
    counts = json.loads((out / "manifest_export.json").read_text())["counts"]
    assert counts["cast_to_fp32"] == len(w)
    assert {"LR_Scheduler", "ernie.embeddings.word_embeddings.weight_fp32_master_0"} <= set(counts["dropped"])
    with quiet():
        m = AutoModelForPretraining.from_pretrained(str(out))
    assert m.ernie.embeddings.word_embeddings.weight.dtype == paddle.float32


def test_export_a_run_dir_from_the_cli_and_skip_when_done(tmp_path, trained, capsys):
    run = tmp_path / "run"
    write_checkpoint((run / "checkpoints" / "model_3"), trained, step=3)
    write_checkpoint((run / "checkpoints" / "model_last"), trained, step=6)
    assert cli_main(["export", str(run)]) == 0
    out = run / "model_ernie_6"
    assert capsys.readouterr().out.strip() == str(out)
    assert_loads_everywhere(out, trained)
    mtime = (out / "model_state.pdparams").stat().st_mtime_ns
    assert ex.export_run(run) == out and (out / "model_state.pdparams").stat().st_mtime_ns == mtime  # manifest: skipped
    assert cli_main(["export", str(run), "--step", "3"]) == 0
    assert (run / "model_ernie_3" / "config.json").is_file()
    assert cli_main(["export", str(run), "--step", "9"]) == 2
    assert "no model_9/model_state.pdparams" in capsys.readouterr().err


def book_text(first_page=40, n_pages=10) -> list[str]:
    "A few body pages of the demo book, one line each (pypdf; stage 01 does the real cleaning)."
    import pypdf
    reader = pypdf.PdfReader(str(DEMO_PDF))
    lines = []
    for i in range(first_page, first_page + n_pages):
        lines += [ln.strip() for ln in reader.pages[i].extract_text().splitlines() if len(ln.strip()) > 4]
    return lines


def test_extend_vocab_on_the_demo_book(tmp_path, trained, capsys):
    model, tok, _ = trained
    base = ex.export(write_checkpoint(tmp_path / "ckpt", trained), tmp_path / "model_base")
    corpus = tmp_path / "debian.txt"
    corpus.write_text("\n".join(book_text()) + "\n", encoding="utf-8")
    terms = tmp_path / "terms.txt"
    terms.write_text("Debian\napt-get\n软件包管理\n", encoding="utf-8")
    out = tmp_path / "model_domain_vocab"
    assert cli_main(["extend-vocab", "--model_dir", str(base), "--corpus", str(corpus), "--output_dir", str(out),
                     "--user_terms", str(terms), "--min_freq", "3", "--max_new_tokens", "400"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rep = json.loads((out / "extend_vocab_report.json").read_text(encoding="utf-8"))
    assert printed["new_vocab_size"] == rep["new_vocab_size"]
    before, after = rep["before"], rep["after"]
    assert before["unk_rate"] > 0.001 and after["unk_rate"] < before["unk_rate"] / 2
    assert after["tokens_per_sentence"] < before["tokens_per_sentence"]
    assert 0 < rep["added"] <= 400 and "软件包管理" in rep["skipped_terms"]

    old_vocab = (base / "vocab.txt").read_text(encoding="utf-8").splitlines()
    new_vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert new_vocab[: len(old_vocab)] == old_vocab and len(new_vocab) == rep["new_vocab_size"]
    assert len(set(new_vocab)) == len(new_vocab)
    assert {"debian", "apt", "get"} <= set(new_vocab)
    added = new_vocab[len(old_vocab):]
    cjk = [t for t in added if is_han(t)]
    assert cjk and all("##" + t in new_vocab for t in cjk)

    # the report's counts are what the new tokenizer really produces
    new_tok = AutoTokenizer.from_pretrained(str(out))
    lines = corpus.read_text(encoding="utf-8").splitlines()
    toks = [t for ln in lines for t in new_tok.tokenize(ln)]
    assert len(toks) == after["tokens"] and toks.count("[UNK]") == after["unk_tokens"]

    with quiet():
        ext = AutoModelForPretraining.from_pretrained(str(out))
    ext.eval()
    emb = ext.ernie.embeddings.word_embeddings.weight.numpy()
    assert ext.config.vocab_size == len(new_vocab) == emb.shape[0]
    assert ext.cls.predictions.decoder.weight is ext.ernie.embeddings.word_embeddings.weight
    assert ext.cls.predictions.decoder_bias.shape == [len(new_vocab)]
    # old tokens: identical encoder outputs, identical MLM logits over the old vocab
    ids, tt = fixed_input(tok)
    np.testing.assert_allclose(ext.ernie(ids, token_type_ids=tt)[0].numpy(), model.ernie(ids, token_type_ids=tt)[0].numpy(), atol=1e-6)
    mlm, sop = ext(ids, token_type_ids=tt)
    ref_mlm, ref_sop = model(ids, token_type_ids=tt)
    np.testing.assert_allclose(mlm.numpy()[..., : len(old_vocab)], ref_mlm.numpy(), atol=1e-5)
    np.testing.assert_allclose(sop.numpy(), ref_sop.numpy(), atol=1e-6)
    # new rows: a formerly-[UNK] char starts as the [UNK] row; a fragmented word as the mean of its old pieces
    old_emb = model.ernie.embeddings.word_embeddings.weight.numpy()
    unk = tok.vocab["[UNK]"]
    np.testing.assert_allclose(emb[new_vocab.index(cjk[0])], old_emb[unk], atol=1e-6)
    pieces = tok.convert_tokens_to_ids(tok.tokenize("debian"))
    assert len(pieces) >= 3
    np.testing.assert_allclose(emb[new_vocab.index("debian")], old_emb[pieces].mean(0), atol=1e-6)

    # continued pretraining on top works: one MLM forward/backward/step with the new vocab on domain text
    ext.train()
    enc = new_tok(lines[:4], max_length=48, truncation=True, padding="max_length")
    ids = paddle.to_tensor(enc["input_ids"])
    labels = ids.clone()
    mask = paddle.to_tensor(np.random.default_rng(0).random(ids.shape) < 0.3) & (ids > 4)
    masked = paddle.where(mask, paddle.full_like(ids, new_tok.vocab["[MASK]"]), ids)
    mlm, _ = ext(masked, token_type_ids=paddle.to_tensor(enc["token_type_ids"]))
    loss = F.cross_entropy(mlm[mask], labels[mask].unsqueeze(-1))
    assert np.isfinite(float(loss))
    loss.backward()
    grad = ext.ernie.embeddings.word_embeddings.weight.grad.numpy()
    assert np.abs(grad[len(old_vocab):]).sum() > 0  # the new rows learn
    paddle.optimizer.AdamW(1e-3, parameters=ext.parameters()).step()

    # bad input for extend-vocab: the missing corpus file is named, nothing is written
    assert cli_main(["extend-vocab", "--model_dir", str(base), "--corpus", str(tmp_path / "nope.txt"),
                     "--output_dir", str(tmp_path / "x")]) == 2
    assert "corpus file not found" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_stage_07c_extends_the_exported_model_only_when_asked(tmp_path, trained):
    "Stage 07c (its own stage since issue 25): needs 07's model and 01's text; off by default; on, writes <model>_vocab."
    from vertical_pretrain.config import get_config
    from vertical_pretrain.modeldir import ModelDirError
    from vertical_pretrain.stages import StagesMissing, missing_stages, require_stages
    over = {"paths.data_root": str(tmp_path / "data"), "paths.output_root": str(tmp_path / "out"),
            "paths.corpus": "book", "paths.run_name": "domain", "export.extend_min_freq": 3}
    off = get_config("smoke", over)
    assert xv.run_stage(off, log=None) == {"skipped": "export.extend_vocab is false"}
    assert not (tmp_path / "out").exists()  # nothing written when it is off
    cfg = get_config("smoke", {**over, "export.extend_vocab": True})
    with pytest.raises(StagesMissing, match=r"stage 07c needs stages 01, .*07 .*--to 07$"):
        require_stages("07c", cfg)
    write_checkpoint(cfg.paths.run_dir / "checkpoints" / "model_last", trained, step=4)
    with pytest.raises(ModelDirError, match="needs the domain text of stage 01"):
        xv.run_stage(cfg, log=None)
    cfg.paths.text_dir.mkdir(parents=True)
    (cfg.paths.text_dir / "book.txt").write_text("\n".join(book_text(40, 4)) + "\n", encoding="utf-8")
    assert "07" in [st.key for st in missing_stages("07c", cfg)]  # the checkpoint alone is not an export
    out = ex.run_stage(cfg, log=None)["model_dir"]
    assert "07" not in [st.key for st in missing_stages("07c", cfg)]
    logged = []
    res = xv.run_stage(cfg, log=logged.append)
    ext = Path(out).with_name(Path(out).name + "_vocab")
    assert res["extended_model_dir"] == str(ext) == str(xv.extended_model_dir(cfg))
    assert res["after"]["unk_rate"] < res["before"]["unk_rate"] and sum(res["added"].values()) > 0
    assert logged and logged[0].startswith(f"extend_vocab: {ext} (")
    rep = json.loads((ext / "extend_vocab_report.json").read_text(encoding="utf-8"))
    assert rep["model_dir"] == out and (ext / "manifest_extend_vocab.json").is_file()
    mtime = (ext / "model_state.pdparams").stat().st_mtime_ns
    xv.run_stage(cfg, log=None)  # its manifest matches: reused
    assert (ext / "model_state.pdparams").stat().st_mtime_ns == mtime


def test_continued_pretraining_on_the_extended_vocab(tmp_path, trained):
    "Stages 04 -> 06 for real on the demo book with the extended tokenizer/model, then stage 07 again."
    from vertical_pretrain.config import get_config
    from vertical_pretrain.dataset import corpus_prefix
    from vertical_pretrain.pretrain import read_metrics, train
    from vertical_pretrain.pretraining_data import create_pretraining_data
    base = ex.export(write_checkpoint(tmp_path / "ckpt", trained), tmp_path / "model_base")
    lines = book_text(40, 12)
    (tmp_path / "book.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ext = tmp_path / "model_base_vocab"
    rep = xv.extend_vocab(base, [tmp_path / "book.txt"], ext, min_freq=3, max_new_tokens=300)
    n_old = rep["old_vocab_size"]

    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.output_root": str(tmp_path / "out"),
                               "paths.corpus": "book", "paths.run_name": "domain", "base_model.enabled": False,
                               "model.model_name_or_path": str(ext), "pretraining_data.tokenizer_name_or_path": str(ext),
                               "data.num_workers": 0, "train.max_steps": 2, "train.logging_freq": 1,
                               "train.save_steps": 0, "train.checkpoint_steps": 2})
    jsonl = tmp_path / "book.jsonl"
    jsonl.write_text("".join(json.dumps({"text": "\n".join(lines[i:i + 6])}, ensure_ascii=False) + "\n"
                             for i in range(0, len(lines), 6)), encoding="utf-8")
    cfg.paths.ids_dir.mkdir(parents=True)
    with quiet():
        create_pretraining_data(jsonl, corpus_prefix(cfg), str(ext), progress=False, log=lambda *a, **k: None)
        ids = np.load(f"{corpus_prefix(cfg)}_ids.npy")
        assert (ids >= n_old).sum() > 0  # the corpus really uses the new tokens
        train(cfg)
    recs = [r for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"]
    assert [r["step"] for r in recs] == [1, 2] and all(np.isfinite(r["loss"]) for r in recs)
    out = ex.export_run(cfg.paths.run_dir)
    assert out.name == "model_ernie_2"
    with quiet():
        m = ex.load_model(out, "ForPretraining")
    assert m.config.vocab_size == rep["new_vocab_size"]
    moved = m.ernie.embeddings.word_embeddings.weight.numpy()[n_old:]
    with quiet():
        start = ex.load_model(ext, "ForPretraining").ernie.embeddings.word_embeddings.weight.numpy()[n_old:]
    assert not np.allclose(moved, start)  # the new rows were trained


def test_repair_a_fine_tuned_classifier_dir(tmp_path, trained):
    "A `classifier` head: num_labels comes from its shape; the class is ambiguous, so it is noted and can be overridden."
    from paddlenlp.transformers import ErnieForSequenceClassification, ErnieForTokenClassification
    model, tok, _ = trained
    paddle.seed(5)
    clf = ErnieForSequenceClassification(ErnieConfig(vocab_size=model.config.vocab_size, hidden_size=32, num_labels=5,
                                                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    clf.eval()
    d = tmp_path / "model_ernie_micro_cls"
    with quiet():
        clf.save_pretrained(str(d)); tok.save_pretrained(str(d))
    c = json.loads((d / "config.json").read_text())
    for k in ("architectures", "label2id", "num_labels"): c.pop(k, None)
    c["id2label"] = {"0": "neg", "1": "pos"}  # stale: the weights have 5 labels
    (d / "config.json").write_text(json.dumps(c))
    (d / "tokenizer_config.json").unlink()
    rep = ex.repair(d, dry_run=True)
    assert rep["architecture"] == "ErnieForSequenceClassification" and clf.classifier.weight.shape == [32, 5]
    assert "ErnieForTokenClassification" in rep["notes"][0]
    rep = ex.repair(d)
    assert rep["changes"]["num_labels"] == [None, 5] and rep["changes"]["id2label"] == [{"0": "neg", "1": "pos"}, None]
    assert rep["changes"]["tokenizer_config.json:tokenizer_class"] == [None, "ErnieTokenizer"]
    ids, tt = fixed_input(tok)
    with quiet():
        got = AutoModelForSequenceClassification.from_pretrained(str(d)); got.eval()
        at = AutoTokenizer.from_pretrained(str(d))
    assert type(at) is ErnieTokenizer
    np.testing.assert_allclose(got(ids, token_type_ids=tt).numpy(), clf(ids, token_type_ids=tt).numpy(), atol=1e-6)
    # the user knows better: a token classifier
    assert ex.repair(d, architecture="ErnieForTokenClassification")["changes"]["architectures"] == [
        ["ErnieForSequenceClassification"], ["ErnieForTokenClassification"]]
    assert ex.resolve_model_class(d, "ForTokenClassification") is ErnieForTokenClassification
    assert (d / "config.json.bak.1").is_file()


def _legacy_dir(d, tok, *, layout="nested", **overrides):
    "A PaddleNLP 2.x model dir: model_config.json (init_class + init_args), model_state.pdparams, no config.json."
    fields = dict(vocab_size=len(tok.vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, hidden_act="relu", layer_norm_eps=1e-5, max_position_embeddings=64,
                  type_vocab_size=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  initializer_range=0.02, pad_token_id=0, **overrides)
    paddle.seed(11)
    model = (ErnieForPretraining if layout == "nested" else ErnieModel)(ErnieConfig(**fields))
    model.eval()
    d.mkdir(parents=True)
    paddle.save(model.state_dict(), str(d / "model_state.pdparams"))
    legacy = ({"init_args": [{**fields, "init_class": "ErnieModel"}], "init_class": "ErnieForPretraining"}
              if layout == "nested" else {**fields, "init_class": "ErnieModel"})
    (d / "model_config.json").write_text(json.dumps(legacy, indent=2))
    with quiet():
        tok.save_pretrained(str(d))
    return model


def _snapshot(d):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def _base_outputs(d, ids, tt):
    with quiet():
        m = AutoModel.from_pretrained(str(d))
    m.eval()
    return [t.numpy() for t in m(ids, token_type_ids=tt)]


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_repair_keeps_the_legacy_config_of_a_paddlenlp2_dir(tmp_path, trained, layout, capsys):
    "ERNIE 1.0 style: relu and layer_norm_eps 1e-5 live only in model_config.json; the repair keeps them and the outputs."
    tok = trained[1]
    d = tmp_path / "model_2000"
    model = _legacy_dir(d, tok, layout=layout)
    ids, tt = fixed_input(tok)
    before = _base_outputs(d, ids, tt)  # paddlenlp reads model_config.json: relu
    base = model.ernie if layout == "nested" else model
    np.testing.assert_allclose(before[0], base(ids, token_type_ids=tt)[0].numpy(), atol=1e-6)
    legacy = (d / "model_config.json").read_bytes()

    assert cli_main(["repair-config", str(d)]) == 0  # no --num_attention_heads: model_config.json holds it
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "repaired", report
    assert report["output_check"]["checked"] and report["output_check"]["max_abs_diff"] <= 1e-6, report["output_check"]
    assert report["config_sources"] == ["model_config.json"]
    conf = json.loads((d / "config.json").read_text())
    assert conf["hidden_act"] == "relu" and conf["layer_norm_eps"] == 1e-5 and conf["num_attention_heads"] == 2, conf
    assert conf["architectures"] == ["ErnieForPretraining" if layout == "nested" else "ErnieModel"], conf
    assert (d / "model_config.json").read_bytes() == legacy
    after = _base_outputs(d, ids, tt)  # paddlenlp now reads config.json
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)

    # export reads the legacy config too, and checks the exported outputs against the checkpoint's
    src = tmp_path / "legacy_ckpt"
    _legacy_dir(src, tok, layout=layout)
    out = ex.export(src, tmp_path / "exported")
    conf = json.loads((out / "config.json").read_text())
    assert conf["hidden_act"] == "relu" and conf["layer_norm_eps"] == 1e-5, conf
    manifest = json.loads((out / "manifest_export.json").read_text())
    assert manifest["counts"]["output_check"]["checked"], manifest["counts"]
    for a, b in zip(_base_outputs(out, ids, tt), before):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_repair_that_would_move_the_outputs_restores_the_dir_and_fails(tmp_path, trained, capsys):
    tok = trained[1]
    # 1. a wrong --num_attention_heads for a dir whose config.json says 2 (it loads before: only `architectures` is missing)
    d = write_checkpoint(tmp_path / "model_2000", trained, seed_style=True)
    snap = _snapshot(d)
    assert cli_main(["repair-config", str(d), "--num_attention_heads", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would change what the model computes" in err and str(d) in err, err
    assert _snapshot(d) == snap
    # 2. config.json without hidden_act (paddlenlp used gelu) next to a model_config.json that says relu
    d = tmp_path / "both"
    _legacy_dir(d, tok)
    conf = {k: v for k, v in json.loads((d / "model_config.json").read_text())["init_args"][0].items()
            if k not in ("hidden_act", "init_class")}
    (d / "config.json").write_text(json.dumps(conf))
    snap = _snapshot(d)
    with pytest.raises(ex.ModelDirError, match=r"would change what the model computes.*took .*hidden_act.* from model_config\.json"):
        ex.repair(d)
    assert _snapshot(d) == snap
