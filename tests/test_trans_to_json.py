"Stage 03: text -> jsonl, PaddleNLP trans_to_json.py contract."
import json
import subprocess
import sys

import pytest

from vertical_pretrain.config import get_config
from vertical_pretrain.trans_to_json import main, read_docs, run_stage, trans_to_json

BOOK_A = "第一章 开始。\n这是第一个文档的第二句。\n\n\n短\n\n第三个文档，足够长的一句话。\n"
BOOK_B = "  另一个文件的第一个文档。  \n它有两句。\n\n\n\n另一个文件的第二个文档在这里。"


def _rows(path):
    return [json.loads(l)["text"] for l in open(path, encoding="utf-8")]


@pytest.fixture
def books(tmp_path):
    d = tmp_path / "text"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text(BOOK_A, encoding="utf-8")
    (d / "sub" / "b.txt").write_text(BOOK_B, encoding="utf-8")
    (d / ".hidden.txt").write_text("不该被读到的隐藏文件内容很长很长。", encoding="utf-8")
    return d


def test_one_json_line_per_document_sentences_joined_by_newline(books, tmp_path):
    rep = trans_to_json(books, tmp_path / "out" / "all.jsonl", min_doc_length=5, shuffle=False, progress=False, log=None)
    assert _rows(rep["outputs"][0]) == [
        "第一章 开始。\n这是第一个文档的第二句。", "第三个文档，足够长的一句话。",
        "另一个文件的第一个文档。\n它有两句。", "另一个文件的第二个文档在这里。"]
    assert (rep["files"], rep["docs_in"], rep["docs_written"], rep["docs_dropped_short"]) == (2, 5, 4, 1)
    assert rep["sentences"] == 6


def test_min_doc_length_counts_non_space_chars_so_segmented_text_drops_the_same_docs(tmp_path):
    (tmp_path / "plain.txt").write_text("深度学习\n\n深度学习。\n", encoding="utf-8")
    (tmp_path / "seg.txt").write_text("深度 学习\n\n深度 学习 。\n", encoding="utf-8")
    for name in ("plain", "seg"):
        rep = trans_to_json(tmp_path / f"{name}.txt", tmp_path / f"{name}_out.jsonl", min_doc_length=5, shuffle=False,
                            progress=False, log=None)
        assert (rep["docs_written"], rep["docs_dropped_short"]) == (1, 1), name


def test_seeded_shuffle_is_reproducible_and_a_permutation(books, tmp_path):
    plain = _rows(trans_to_json(books, tmp_path / "p.jsonl", min_doc_length=1, shuffle=False, progress=False, log=None)["outputs"][0])
    s1 = _rows(trans_to_json(books, tmp_path / "s1.jsonl", min_doc_length=1, seed=3, progress=False, log=None)["outputs"][0])
    s2 = _rows(trans_to_json(books, tmp_path / "s2.jsonl", min_doc_length=1, seed=3, workers=2, progress=False, log=None)["outputs"][0])
    others = {tuple(_rows(trans_to_json(books, tmp_path / f"o{k}.jsonl", min_doc_length=1, seed=k, progress=False,
                                       log=None)["outputs"][0])) for k in range(6)}
    assert s1 == s2 and sorted(s1) == sorted(plain)
    assert len(others) > 1  # the seed changes the order


def test_no_merge_writes_one_jsonl_per_input_file_keeping_subfolders(books, tmp_path):
    rep = trans_to_json(books, tmp_path / "per_file", min_doc_length=5, merge=False, shuffle=False, progress=False, log=None)
    assert sorted(rep["outputs"]) == sorted([str(tmp_path / "per_file" / "a.jsonl"), str(tmp_path / "per_file" / "sub" / "b.jsonl")])
    assert _rows(tmp_path / "per_file" / "sub" / "b.jsonl") == ["另一个文件的第一个文档。\n它有两句。", "另一个文件的第二个文档在这里。"]


def test_output_path_rules_follow_paddlenlp(books, tmp_path):
    # a prefix gets .jsonl appended, like PaddleNLP's merge_file
    rep = trans_to_json(books / "a.txt", tmp_path / "prefix", min_doc_length=1, progress=False, log=None)
    assert rep["outputs"] == [str(tmp_path / "prefix.jsonl")]
    (tmp_path / "dir").mkdir()
    rep = trans_to_json(books / "a.txt", tmp_path / "dir", min_doc_length=1, progress=False, log=None)
    assert rep["outputs"] == [str(tmp_path / "dir" / "a.jsonl")]


def test_bad_input_gets_clear_errors_and_writes_nothing(tmp_path):
    (tmp_path / "gbk.txt").write_bytes("中文的句子。".encode("gbk"))
    with pytest.raises(ValueError, match="gbk.txt: not UTF-8"):
        trans_to_json(tmp_path / "gbk.txt", tmp_path / "o.jsonl", progress=False, log=None)
    with pytest.raises(FileNotFoundError, match="input not found"):
        trans_to_json(tmp_path / "missing", tmp_path / "o.jsonl", progress=False, log=None)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.txt files"):
        trans_to_json(tmp_path / "empty_dir", tmp_path / "o.jsonl", progress=False, log=None)
    (tmp_path / "short.txt").write_text("短\n\n也短\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2 dropped"):
        trans_to_json(tmp_path / "short.txt", tmp_path / "o.jsonl", min_doc_length=10, progress=False, log=None)
    assert not (tmp_path / "o.jsonl").exists()


def test_read_docs_treats_runs_of_blank_lines_as_one_boundary(tmp_path):
    (tmp_path / "x.txt").write_text("\n\na\nb\n \n\t\n\nc\n", encoding="utf-8")
    assert read_docs(tmp_path / "x.txt") == [["a", "b"], ["c"]]


def _cfg(tmp_path, **ov):
    return get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.corpus": "book", **ov})


def test_run_stage_reads_what_stage_02_listed_skips_reruns_and_removes_stale_jsonl(tmp_path):
    from vertical_pretrain import pdf2text, segment
    cfg = _cfg(tmp_path, **{"segment.enabled": True, "segment.backend": "cn_splited", "segment.workers": 1,
                            "trans_to_json.min_doc_length": 1})
    cfg.paths.raw_dir.mkdir(parents=True)
    (cfg.paths.raw_dir / "book.txt").write_text("分词 后 的 文本。\n\n第二 个 文档。\n", encoding="utf-8")
    pdf2text.run_stage(cfg, progress=False, log=None)
    segment.run_stage(cfg, progress=False, log=None)
    (cfg.paths.seg_dir / "extra.txt").write_text("没有 列 在 清单 里 。\n", encoding="utf-8")  # never read
    cfg.paths.jsonl_dir.mkdir(parents=True)
    (cfg.paths.jsonl_dir / "stale.jsonl").write_text('{"text": "old"}\n', encoding="utf-8")
    r = run_stage(cfg, progress=False, log=None)
    assert not r["skipped"] and r["docs_written"] == 2
    assert sorted(p.name for p in cfg.paths.jsonl_dir.glob("*.jsonl")) == ["book.jsonl"]
    assert sorted(_rows(cfg.paths.jsonl_dir / "book.jsonl")) == ["分词后的文本。", "第二个文档。"]
    assert run_stage(cfg, progress=False, log=None)["skipped"]
    (cfg.paths.seg_dir / "book.txt").write_text("改过 的 输入 。\n", encoding="utf-8")
    r = run_stage(cfg, progress=False, log=None)
    assert not r["skipped"] and _rows(cfg.paths.jsonl_dir / "book.jsonl") == ["改过 的 输入 。"]
    # parameters are part of the manifest too
    assert not run_stage(cfg.override({"trans_to_json.seed": 99}), progress=False, log=None)["skipped"]
    # without segmentation (and no pre-split input wanted) the plain text of stage 01 is read
    r = run_stage(cfg.override({"segment.enabled": False, "pretraining_data.cn_splited": False}), progress=False, log=None)
    assert sorted(_rows(cfg.paths.jsonl_dir / "book.jsonl")) == ["分词后的文本。", "第二个文档。"]


def test_run_stage_without_stage_02_says_which_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 02"):
        run_stage(_cfg(tmp_path, **{"segment.enabled": True}), progress=False, log=None)


def test_run_stage_without_text_says_which_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 01"):
        run_stage(_cfg(tmp_path, **{"segment.enabled": False}), progress=False, log=None)


def test_cli_with_paddlenlp_argument_names(books, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "trans-to-json", "--input_path", str(books),
                        "--output_path", str(out), "--min_doc_length", "5", "--no-shuffle", "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(_rows(str(out) + ".jsonl")) == 4
    assert main(["--input_path", str(books), "--output_path", str(tmp_path / "nm"), "--no-merge", "--seed", "5", "--min_doc_length", "5"]) == 0
    assert (tmp_path / "nm" / "sub" / "b.jsonl").exists()
    assert main(["--input_path", str(tmp_path / "nope"), "--output_path", str(out)]) == 1


def test_streamed_output_equals_shuffling_all_lines_in_memory(tmp_path):
    """Documents go to temp part files and are read back by offset in `random.Random(seed).shuffle` order of their
    indices: the output is what shuffling the list of all jsonl lines gave (the pre-streaming behaviour), byte for byte,
    merged or per file, with one or two workers; no temp file is left."""
    import random
    d = tmp_path / "text"; d.mkdir()
    rng = random.Random(5)
    books = {}
    for k in range(3):
        docs = ["\n".join(f"文件{k}文档{i}第{j}句，长度足够。" for j in range(rng.randint(1, 4))) for i in range(rng.randint(50, 120))]
        books[f"b{k}.txt"] = docs
        (d / f"b{k}.txt").write_text("\n\n\n".join(docs) + "\n", encoding="utf-8")
    line = lambda doc: json.dumps({"text": doc}, ensure_ascii=False) + "\n"
    for workers in (1, 2):
        rep = trans_to_json(d, tmp_path / f"m{workers}.jsonl", seed=11, workers=workers, progress=False, log=None)
        want = [line(x) for f in sorted(books) for x in books[f]]
        random.Random(11).shuffle(want)
        assert (tmp_path / f"m{workers}.jsonl").read_text(encoding="utf-8") == "".join(want)
        assert rep["docs_written"] == len(want)
        trans_to_json(d, tmp_path / f"per{workers}", merge=False, seed=11, workers=workers, progress=False, log=None)
        r = random.Random(11)
        for f in sorted(books):
            want = [line(x) for x in books[f]]; r.shuffle(want)
            assert (tmp_path / f"per{workers}" / f.replace(".txt", ".jsonl")).read_text(encoding="utf-8") == "".join(want)
    assert not list(tmp_path.glob(".trans_to_json-*")) and not list(tmp_path.rglob("*.part"))


def test_documents_are_read_one_at_a_time(tmp_path):
    "iter_docs is a generator: a file of any size is never read whole; a bad byte late in the file names its offset."
    from vertical_pretrain.trans_to_json import iter_docs
    p = tmp_path / "big.txt"
    p.write_bytes(("一句话。\n\n" * 1000).encode("utf-8") + b"\xff\n")
    it = iter_docs(p)
    assert next(it) == ["一句话。"]
    with pytest.raises(ValueError, match=f"byte {len(('一句话。' + chr(10) * 2).encode()) * 1000}"):
        list(it)
    with pytest.raises(ValueError, match="big.txt: not UTF-8"):
        trans_to_json(p, tmp_path / "out" / "x.jsonl", progress=False, log=None)
    assert not (tmp_path / "out").exists()
