"""segment_corpus keeps the line, sentence and document structure with every backend and with 2 workers."""
import json
from pathlib import Path

import pytest

from vertical_pretrain import segment as segmod
from vertical_pretrain.segment import get_segmenter, main, run_stage, segment_corpus
from vertical_pretrain.textio import scan_text_file

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXTS = [json.loads(l)["text"] for l in open(FIXTURES / "lac_golden_dev.jsonl", encoding="utf-8")]


def corpus_lines(n_docs=40):
    "Documents of 1..6 sentences, with the awkward cases: leading blank, runs of blanks, whitespace-only lines."
    lines, k = ["", ""], 0
    for d in range(n_docs):
        for _ in range(1 + d % 6):
            lines.append(("  " if k % 7 == 0 else "") + TEXTS[k % len(TEXTS)])
            k += 1
        lines += [""] * (1 + (d % 3 == 0)) + (["   \t"] if d % 5 == 0 else [])
    return lines


def expected(lines, backend, **kw):
    "Each sentence line as the segmenter's words joined by one space, three where the line has a blank."
    seg = get_segmenter(backend, **kw)
    return [" ".join(seg.batch_with_blanks([l.strip()])[0]) if l.strip() else "" for l in lines]


def check_structure(src_lines, out_text, want):
    out = out_text.split("\n")
    assert out[-1] == "" and out_text.endswith("\n")
    out = out[:-1]
    assert len(out) == len(src_lines)
    assert [not l for l in out] == [not l.strip() for l in src_lines]      # blank lines exactly where they were
    assert out == want
    assert all("    " not in l and l == l.strip() for l in out)  # one space between words, three for a blank of the text


@pytest.mark.parametrize("backend", ["jieba", "lac"])
def test_structure_kept_one_and_two_workers(tmp_path, backend):
    lines = corpus_lines()
    src = tmp_path / "text.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    want = expected(lines, backend)
    rep1 = segment_corpus(src, tmp_path / "w1.txt", backend=backend, workers=1, show_progress=False, chunk_chars=900)
    rep2 = segment_corpus(src, tmp_path / "w2.txt", backend=backend, workers=2, show_progress=False, chunk_chars=900)
    out1 = (tmp_path / "w1.txt").read_text(encoding="utf-8")
    check_structure(lines, out1, want)
    assert (tmp_path / "w2.txt").read_text(encoding="utf-8") == out1
    n_docs = sum(1 for i, l in enumerate(lines) if l.strip() and (i == 0 or not lines[i - 1].strip()))
    for rep in (rep1, rep2):
        assert rep["docs"] == n_docs == 40
        assert rep["sentences"] == sum(1 for l in lines if l.strip())
        assert rep["blank_lines"] == sum(1 for l in lines if not l.strip())
        assert rep["words"] == sum(len(l.split()) for l in want)  # BLANK words are not counted
        assert rep["chars"] == sum(len(l.strip()) for l in lines)
    assert rep2["workers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt", "w1.txt", "w2.txt"]


def test_lac_tagger_mode_and_cn_splited(tmp_path):
    lines = ["2.3 Debian 归档区域（area）列表 . . . . 39", "", "已经 分好  的 词 "]
    src = tmp_path / "t.txt"
    src.write_text("\n".join(lines), encoding="utf-8")                   # no final newline
    segment_corpus(src, tmp_path / "lac.txt", backend="lac", lac_mode="lac", show_progress=False)
    out = (tmp_path / "lac.txt").read_text(encoding="utf-8").split("\n")
    assert out[0].endswith("列表   .   .   .   .   39")  # the blanks of the text are kept: three spaces
    segment_corpus(src, tmp_path / "pre.txt", backend="cn_splited", show_progress=False)
    assert (tmp_path / "pre.txt").read_text(encoding="utf-8").split("\n")[2] == "已经 分好 的 词"


def test_gbk_input_and_bad_encoding(tmp_path):
    lines = corpus_lines(6)
    text = "\n".join(lines) + "\n"
    (tmp_path / "u.txt").write_text(text, encoding="utf-8")
    (tmp_path / "g.txt").write_bytes(text.encode("gbk", errors="replace"))
    assert scan_text_file(tmp_path / "g.txt")[0] == "gb18030"
    rep = segment_corpus(tmp_path / "g.txt", tmp_path / "g.out", backend="lac", show_progress=False)
    assert rep["encoding"] == "gb18030"
    segment_corpus(tmp_path / "u.txt", tmp_path / "u.out", backend="lac", show_progress=False)
    gbk_safe = text.encode("gbk", errors="replace").decode("gbk")
    if gbk_safe == text:
        assert (tmp_path / "g.out").read_bytes() == (tmp_path / "u.out").read_bytes()
    (tmp_path / "bad.txt").write_bytes("好".encode() + b"\xff\xfe\n")  # UTF-16 with a BOM is text (textio's rule)
    with pytest.raises(UnicodeError, match="neither UTF-8 nor GBK"):
        segment_corpus(tmp_path / "bad.txt", tmp_path / "bad.out", show_progress=False)
    assert not (tmp_path / "bad.out").exists()


def test_failure_keeps_old_output_and_leaves_no_temp(tmp_path, monkeypatch):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("\n".join(corpus_lines(10)) + "\n", encoding="utf-8")
    dst.write_text("old\n", encoding="utf-8")
    calls = {"n": 0}
    real = segmod._segment_lines

    def flaky(seg, lines):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(seg, lines)

    monkeypatch.setattr(segmod, "_segment_lines", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        segment_corpus(src, dst, backend="cn_splited", show_progress=False, chunk_chars=50)
    assert dst.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_empty_input_and_missing_input(tmp_path):
    (tmp_path / "e.txt").write_text("", encoding="utf-8")
    rep = segment_corpus(tmp_path / "e.txt", tmp_path / "e.out", backend="cn_splited", show_progress=False)
    assert (rep["docs"], rep["sentences"]) == (0, 0)
    assert (tmp_path / "e.out").read_text(encoding="utf-8") == ""
    with pytest.raises(FileNotFoundError):
        segment_corpus(tmp_path / "nope.txt", tmp_path / "x.out", show_progress=False)


def test_cli_folder_with_two_workers(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "in" / name).write_text("\n".join(corpus_lines(8)) + "\n", encoding="utf-8")
    rc = main(["--input_path", str(tmp_path / "in"), "--output_path", str(tmp_path / "out"),
               "--backend", "lac", "--workers", "2", "--quiet"])
    assert rc == 0
    reports = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert [Path(r["output"]).name for r in reports] == ["a.txt", "b.txt"]
    assert (tmp_path / "out" / "a.txt").read_text(encoding="utf-8") == (tmp_path / "out" / "b.txt").read_text(encoding="utf-8")


def test_stage_mirrors_stage_01_outputs(tmp_path):
    "Stage 02 reads what stage 01 listed, reuses unchanged files, and drops the output of a removed book."
    from vertical_pretrain.config import get_config
    from vertical_pretrain import pdf2text
    raw = tmp_path / "corpus" / "raw"
    raw.mkdir(parents=True)
    (raw / "book.txt").write_text("第一句。\n\n第二句。\n", encoding="utf-8")
    (raw / "手册.txt").write_text("第三句。\n", encoding="utf-8")
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path), "paths.corpus": "corpus",
                               "segment.backend": "cn_splited", "segment.workers": 1})
    with pytest.raises(FileNotFoundError, match="run stage 01"):
        run_stage(cfg, progress=False, log=None)
    pdf2text.run_stage(cfg, progress=False, log=None)
    (cfg.paths.text_dir / "stray.txt").write_text("不是 第 01 阶段 写的\n", encoding="utf-8")  # not in the manifest
    logs = []
    counts = run_stage(cfg, progress=False, log=logs.append)
    assert (counts["docs"], counts["files"], counts["ran"]) == (3, 2, 2)
    seg = tmp_path / "corpus" / "seg"
    assert (seg / "book.txt").read_text(encoding="utf-8") == "第一句。\n\n第二句。\n"
    assert sorted(p.name for p in seg.glob("*.txt")) == ["book.txt", "手册.txt"]  # stray.txt is not read
    again = run_stage(cfg, progress=False, log=logs.append)
    assert (again["ran"], again["reused"], again["docs"]) == (0, 2, 3)
    (raw / "手册.txt").unlink()
    pdf2text.run_stage(cfg, progress=False, log=None)
    after = run_stage(cfg, progress=False, log=logs.append)
    assert (after["files"], after["removed"], after["docs"]) == (1, 1, 2)
    assert sorted(p.name for p in seg.glob("*.txt")) == ["book.txt"]
    assert any("removed" in l and "手册.txt" in l for l in logs)
    off = cfg.override({"segment.enabled": False})
    assert run_stage(off, log=logs.append) == {"skipped": "disabled"}


def test_worker_error_reaches_the_caller(tmp_path):
    "An error inside a worker process (here a corrupt LAC parameter file) is raised in the caller; no output is left."
    import shutil
    from vertical_pretrain.lac import ModelFileError, find_lac_model_dir
    model = tmp_path / "seg_model"
    shutil.copytree(find_lac_model_dir("seg"), model)
    (model / "model" / "fc_4.w_0").write_bytes(b"\x00" * 30)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(corpus_lines(4)) + "\n", encoding="utf-8")
    with pytest.raises(ModelFileError, match="fc_4.w_0"):
        segment_corpus(src, tmp_path / "out.txt", backend="lac", lac_model_dir=model, workers=2, show_progress=False)
    assert not (tmp_path / "out.txt").exists()


# ---------------------------------------------------------------- user dictionaries (issue 15, fault 3)
FIELD_INPUT = FIXTURES / "user_dict_input.txt"
FIELD_WANT = ["容器编排平台 的 滚动更新 策略 很重要 。", "我们 使用 容器编排平台 管理 服务 。"]  # LAC with the dictionary


def _dict_forms(tmp_path):
    "The same two entries in every format we read: the GBK fixture (LAC `word/tag`), tab-separated, jieba."
    forms = {"lac_gbk": FIXTURES / "user_dict_gbk.txt"}
    for name, text in (("tab", "容器编排平台\tn\t100\n滚动更新\tvn\t50\n"),
                       ("tab_freq_first", "容器编排平台\t100\tn\n滚动更新\t50\tvn\n"),
                       ("jieba", "容器编排平台 100 n\n滚动更新 vn\n")):
        forms[name] = tmp_path / f"{name}.dic"
        forms[name].write_text(text, encoding="utf-8")
    return forms


@pytest.mark.parametrize("backend", ["lac", "jieba"])
def test_user_dict_in_any_common_format_and_encoding_takes_effect(tmp_path, backend, capsys):
    for name, dic in _dict_forms(tmp_path).items():
        out = tmp_path / f"{backend}_{name}.txt"
        rep = segment_corpus(FIELD_INPUT, out, backend=backend, user_dict=dic, show_progress=False)
        lines = out.read_text(encoding="utf-8").splitlines()
        if backend == "lac":
            assert lines == FIELD_WANT, (name, lines)
        for line in lines:  # both backends: the dictionary words come out whole
            assert "容器编排平台" in line.split(), (name, line)
        assert "滚动更新" in lines[0].split(), (name, lines[0])
        assert rep["user_dict"]["entries"] == 2 and rep["user_dict"]["matched"] == 2, (name, rep["user_dict"])
        err = capsys.readouterr().err.splitlines()
        assert any(f"{dic}: 2 of 2 entries occur" in l for l in err), err
        if name == "lac_gbk":
            assert any("read as GB18030/GBK" in l and str(dic) in l for l in err), err
        native = {"lac": ("lac_gbk",), "jieba": ("jieba",)}[backend]
        if name not in native:  # another tool's format: converted, and it says so in one line naming the file
            assert any(f"user dictionary {dic}: converted 2 lines" in l for l in err), (name, err)


@pytest.mark.parametrize("backend", ["lac", "jieba"])
def test_user_dict_foreign_lines_unmatched_entries_and_bad_encoding(tmp_path, backend, capsys):
    dic = tmp_path / "mixed.dic"
    dic.write_text("容器编排平台/n\n滚动更新,vn,50\n词 3 4 5\n", encoding="utf-8")
    rep = segment_corpus(FIELD_INPUT, tmp_path / "out.txt", backend=backend, user_dict=dic, show_progress=False)
    err = capsys.readouterr().err.splitlines()
    foreign = [l for l in err if "look foreign" in l]
    assert len(foreign) == 1 and f"{dic}: 2 of 3 lines look foreign" in foreign[0] and "line 2" in foreign[0], err
    assert rep["user_dict"]["foreign_lines"] == 2 and rep["user_dict"]["matched"] == 1, rep["user_dict"]

    # a dictionary of another domain: none of its entries occurs, so it cannot change anything; say so
    other = tmp_path / "other.dic"
    other.write_text("数控机床/n\n伺服电机/n\n", encoding="utf-8")
    rep = segment_corpus(FIELD_INPUT, tmp_path / "out2.txt", backend=backend, user_dict=other, show_progress=False)
    err = capsys.readouterr().err.splitlines()
    assert rep["user_dict"]["matched"] == 0
    assert any(l.startswith("warning:") and f"{other}: none of its 2 entries occurs in {FIELD_INPUT}" in l for l in err), err
    assert segmod.user_dict_matches(other, backend, [FIELD_INPUT, FIELD_INPUT])["matched"] == 0
    assert segmod.user_dict_matches(dic, backend, [FIELD_INPUT])["matched"] == 1

    # neither UTF-8 nor GB18030: one line naming the file from the CLI, no output
    bad = tmp_path / "bad.dic"
    bad.write_bytes("容器".encode() + b"\xff\xfe abc\n")
    assert main(["--input_path", str(FIELD_INPUT), "--output_path", str(tmp_path / "out3.txt"), "--backend", backend,
                 "--user_dict", str(bad), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "neither UTF-8 nor GBK" in err[0], err
    assert not (tmp_path / "out3.txt").exists()


def test_parse_dict_line_formats():
    p = segmod.parse_dict_line
    assert (p("春天/SEASON").word, p("春天/SEASON").tag, p("春天/SEASON").fmt) == ("春天", "SEASON", "lac")
    assert p("提升/v 服务/n").lac_line() == "提升/v 服务/n" and p("提升/v 服务/n").word == "提升服务"
    assert p("花 开").fmt == "lac_parts"
    e = p("云原生 12 nz")
    assert (e.word, e.freq, e.tag, e.fmt) == ("云原生", 12, "nz", "jieba")
    e = p("云原生\tnz\t12")
    assert (e.word, e.freq, e.tag, e.fmt, e.lac_line()) == ("云原生", 12, "nz", "tab", "云原生/nz")
    assert p("云原生,nz,12") is None and p("云原生 3 4 5") is None and p("   ") is None


def test_stage_reports_user_dictionary_matches_over_all_books(tmp_path):
    "The entries of a (GBK, tab-separated) dictionary are counted over every book of the stage, and the count is logged."
    from vertical_pretrain.config import get_config
    from vertical_pretrain import pdf2text
    raw = tmp_path / "c" / "raw"
    raw.mkdir(parents=True)
    (raw / "a.txt").write_text("容器编排平台的滚动更新策略很重要。", encoding="utf-8")
    (raw / "b.txt").write_text("我们用服务网格治理流量。", encoding="utf-8")
    d = tmp_path / "dict.txt"
    d.write_bytes("容器编排平台\tn\t100\n服务网格\tn\t100\n量子纠缠\tn\t5\n".encode("gbk"))
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path), "paths.corpus": "c", "segment.backend": "jieba",
                               "segment.workers": 1, "segment.user_dict": str(d)})
    pdf2text.run_stage(cfg, progress=False, log=None)
    logs = []
    totals = run_stage(cfg, progress=False, log=logs.append)
    assert (totals["user_dict"]["entries"], totals["user_dict"]["matched"]) == (3, 2)
    assert any("2 of 3 entries occur in the corpus" in l for l in logs), logs
    assert "容器编排平台" in (tmp_path / "c" / "seg" / "a.txt").read_text(encoding="utf-8").split()


# ---------------------------------------------------------------- PaddleNLP's --cn_splited reader (issue 15, fault 6)
def paddlenlp_cn_splited_text(line: str) -> str:
    "What create_pretraining_data.py (a80c4a2) --cn_splited hands the tokenizer: pieces split at ' ', every 2nd empty one a blank, joined."
    words, pre = line.strip().split(" "), False
    for i, w in enumerate(words):
        if pre and not w: words[i], pre = " ", False
        else: pre = not w
    return "".join(words)


@pytest.mark.parametrize("backend", ["jieba", "lac"])
def test_segmented_text_reads_back_to_the_tokens_of_the_original(tmp_path, char_tokenizer_dir, backend):
    "Stage 02's output, read as PaddleNLP reads --cn_splited input and as stage 04 reads it, gives the original text's tokens."
    from vertical_pretrain.modeldir import load_tokenizer
    from vertical_pretrain.pretraining_data import EncoderSpec, DocEncoder
    lines = ["参见 revision history 部分。", "用 apt-get update 更新，再运行 dpkg -l | grep linux。", "Debian GNU/Linux 12  发布了！",
             "第3章：Linux2.4NATHOWTO 和\tIPv6 配置"]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    segment_corpus(tmp_path / "t.txt", tmp_path / "s.txt", backend=backend, show_progress=False)
    seg = (tmp_path / "s.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert "revision   history" in seg[0]
    tok = load_tokenizer(char_tokenizer_dir)
    enc = DocEncoder(EncoderSpec(str(char_tokenizer_dir), vocab=dict(tok.get_vocab()), special_tokens=tok.all_special_tokens,
                                 cn_splited=True))
    ours = enc.encode_words(enc.words(seg), mark=False)
    for line, s_, o in zip(lines, seg, ours):
        want = tok.tokenize(line)
        assert tok.tokenize(paddlenlp_cn_splited_text(s_)) == want, (line, s_)
        assert tok.convert_ids_to_tokens(o.tolist()) == want, (line, s_)
