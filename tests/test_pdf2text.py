"""Stage 01 (pdf2text) on the real demo book and on bad inputs made in tmp. Real pypdf, real files, no mocks."""
import json
import re
from pathlib import Path

import pytest
import pypdf

from conftest import cjk_font
from vertical_pretrain.config import get_config
from vertical_pretrain.fileio import read_manifest
from vertical_pretrain.pdf2text import (Pdf2TextError, folder_to_text, main, pdf_to_text, read_text_file, report_path,
                                        run_stage, split_sentences)

REPO = Path(__file__).resolve().parents[1]
DEMO_PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"
TERMINAL = "。！？；!?.”’」』）)】》\"'"


def _lines(path):
    return [l for l in Path(path).read_text(encoding="utf-8").split("\n") if l]


def _docs(path):
    return [d.split("\n") for d in Path(path).read_text(encoding="utf-8").strip("\n").split("\n\n")]


def _check_report_adds_up(rep, out):
    text = Path(out).read_text(encoding="utf-8")
    assert rep["lines_in"] == rep["lines_kept"] + sum(rep["lines_dropped"].values())
    assert rep["chars_out"] == len(text) - text.count("\n")
    assert rep["chars_out"] < rep["chars_in"]
    assert rep["docs"] == len(_docs(out))
    assert rep["sentences"] == len(_lines(out))
    assert json.loads(report_path(out).read_text(encoding="utf-8")) == rep
    assert not re.search(r"\n{3,}", text) and text.endswith("\n") and not text.startswith("\n")


@pytest.fixture(scope="module")
def demo30(tmp_path_factory):
    out = tmp_path_factory.mktemp("p2t") / "demo30.txt"
    return pdf_to_text(DEMO_PDF, out, max_pages=34, show_progress=False), out


@pytest.fixture(scope="module")
def demo_full(tmp_path_factory):
    out = tmp_path_factory.mktemp("p2t_full") / "debian.txt"
    return pdf_to_text(DEMO_PDF, out, show_progress=False), out


def _assert_clean(out):
    lines = _lines(out)
    # running headers ("Debian 参考手册 18/ 223", "Debian 参考手册 xxvi") and bare page numbers are gone
    assert not [l for l in lines if re.fullmatch(r"Debian 参考手册\s*(\d+\s*/\s*\d+|[ivxlcdm]+)", l)]
    assert not [l for l in lines if re.fullmatch(r"(\d{1,3}|[ivxlcdm]{1,6})", l)]
    # table-of-contents dot leaders are gone
    assert not [l for l in lines if re.search(r"(\.\s*){4,}\d+\s*$", l)]
    # one sentence a line: no Chinese sentence end followed by more text inside a line
    assert not [l for l in lines if re.search(r"[。！？；][^”’」』）)】》〉\"'。！？；]", l)]
    # most lines are whole sentences; the rest are list items, labels and titles without punctuation
    ended = sum(1 for l in lines if l[-1] in TERMINAL)
    assert ended >= 0.6 * len(lines), ended / len(lines)
    return lines


def test_demo_30_pages(demo30):
    rep, out = demo30
    _check_report_adds_up(rep, out)
    assert rep["pages"] == 34 and rep["pages_total"] == 251 and rep["format"] == "pdf"
    for rule in ("header_footer", "toc", "code", "table", "caption", "heading"):
        assert rep["lines_dropped"][rule] > 0, rule
    lines = _assert_clean(out)
    assert rep["docs"] >= 10
    # a sentence wrapped over two PDF lines comes back whole; a wrapped CJK/Latin join gets its space
    assert "为了帮助你平滑起步，我详细说明一些基本要点。" in lines
    assert any("例如 gnome-terminal(1)、rxvt(1) 或 xterm(1)）中 root 的 shell 提示符下启动它。" in l for l in lines)
    # headings are document boundaries and not text
    assert "1.1.9 恢复一个正常的控制台" not in lines
    assert any(d[0].startswith("当做了一些滑稽的事") for d in _docs(out))
    # commands are dropped by default
    assert "# apt-get update" not in lines and "# shutdown -h now" not in lines


def test_demo_full_book(demo_full):
    rep, out = demo_full
    _check_report_adds_up(rep, out)
    assert rep["pages"] == 251 and rep["docs"] >= 300 and rep["sentences"] >= 3000
    assert rep["lines_dropped"]["header_footer"] >= 240  # one running header a page
    _assert_clean(out)


def test_options_keep_code_tables_and_headings(tmp_path, demo30):
    rep0, out0 = demo30
    rep = pdf_to_text(DEMO_PDF, tmp_path / "k.txt", max_pages=34, keep_code=True, keep_tables=True,
                      heading_splits_docs=False, show_progress=False)
    _check_report_adds_up(rep, tmp_path / "k.txt")
    lines = _lines(tmp_path / "k.txt")
    assert "# apt-get update" in lines and any(l.startswith("mc V:54,I:226") for l in lines)
    assert rep["lines_dropped"]["code"] == 0 and rep["lines_dropped"]["table"] == 0
    assert rep["lines_kept"] > rep0["lines_kept"]
    assert rep["docs"] < rep0["docs"]  # headings no longer split documents


def test_too_short_sentences_and_docs_are_counted(tmp_path):
    src = tmp_path / "short.txt"
    src.write_text("好\n\n这是一个足够长的文档。它有两句话。\n\n只有一句话的文档。\n", encoding="utf-8")
    rep = pdf_to_text(src, tmp_path / "out.txt", min_doc_sentences=2, show_progress=False)
    assert _docs(tmp_path / "out.txt") == [["这是一个足够长的文档。", "它有两句话。"]]
    assert rep["sentences_dropped_short"] == 1  # "好" < min_sentence_chars
    assert rep["docs_dropped_short"] == 2  # the empty-after-filter one and the one-sentence one
    assert rep["sentences_in_dropped_docs"] == 1
    # nothing at all left: an error, and no output
    with pytest.raises(Pdf2TextError, match="no document left"):
        pdf_to_text(src, tmp_path / "none.txt", min_doc_sentences=5, show_progress=False)
    assert not (tmp_path / "none.txt").exists()


def test_gbk_text_is_decoded_like_utf8(tmp_path):
    text = "第 1 章 概述\n\n操作系统管理硬件和软件资源，\n并为程序提供公共服务。它是计算机的基础。\n\n文件系统用来组织数据！"
    (tmp_path / "gbk.txt").write_bytes(text.encode("gbk"))
    (tmp_path / "utf8.txt").write_text(text, encoding="utf-8")
    assert read_text_file(tmp_path / "gbk.txt") == text
    r1 = pdf_to_text(tmp_path / "gbk.txt", tmp_path / "o1.txt", show_progress=False)
    r2 = pdf_to_text(tmp_path / "utf8.txt", tmp_path / "o2.txt", show_progress=False)
    assert r1["encoding"] == "gb18030" and r2["encoding"] == "utf-8"
    assert (tmp_path / "o1.txt").read_text(encoding="utf-8") == (tmp_path / "o2.txt").read_text(encoding="utf-8")
    assert _docs(tmp_path / "o1.txt")[0][0] == "操作系统管理硬件和软件资源，并为程序提供公共服务。"


SCIENCE = ["量子比特是量子信息的基本单位。", "测量会使叠加态坍缩到一个基态。", "纠缠让两个粒子的状态无法分开描述。",
           "量子门是作用在量子比特上的幺正变换。", "退相干是实现量子计算的主要障碍。", "纠错码用多个物理比特保护一个逻辑比特。",
           "肖尔算法能在多项式时间内分解大整数。", "格罗弗算法把无序搜索加速到平方根级别。", "超导电路是目前最常见的实现方式。",
           "离子阱系统的相干时间很长。", "光子适合在远距离之间传递量子态。", "量子密钥分发的安全性来自物理定律。"]


def test_txt_with_form_feed_pages_loses_its_running_headers(tmp_path):
    "A newcomer's book (no Debian strings): headers and page numbers are found statistically."
    pages = []
    for i in range(6):
        body = "\n".join(SCIENCE[(i + k) % len(SCIENCE)][:-1] + f"，见第 {i}.{k} 节。" for k in range(4))
        pages.append(f"量子计算导论 · 第 {i + 1} 页\n{body}\n- {i + 1} -")
    (tmp_path / "book.txt").write_text("\f".join(pages), encoding="utf-8")
    rep = pdf_to_text(tmp_path / "book.txt", tmp_path / "out.txt", show_progress=False)
    lines = _lines(tmp_path / "out.txt")
    assert rep["lines_dropped"]["header_footer"] == 6 and rep["lines_dropped"]["page_number"] == 6
    assert not any("量子计算导论" in l for l in lines) and not any(re.search(r"\d+ -$", l) for l in lines)
    assert "测量会使叠加态坍缩到一个基态，见第 0.1 节。" in lines and len(lines) == 24


def test_newcomer_pdf_made_with_matplotlib(tmp_path):
    "A real PDF with a different layout: running header, page-number footer, big chapter title, monospace command."
    font = cjk_font()  # any CJK font: the checks are on layout and the text layer, not on glyph shapes
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.font_manager import FontProperties
    fp = FontProperties(fname=str(font))
    wrapped = ["量子比特是量子信息的基本单位，它可以处于两个基态的任意叠加之中，这是经典比特没有的", "性质。测量会使叠加态坍缩。"]
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(tmp_path / "mine.pdf") as pdf:
        for i in range(5):
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.1, 0.96, f"量子计算导论 {i + 1}", fontproperties=fp, fontsize=9)
            if i == 2: fig.text(0.1, 0.90, f"第 {i} 章 纠缠", fontproperties=fp, fontsize=20)
            lines = wrapped if i == 0 else [SCIENCE[i], SCIENCE[i + 5]]
            for k, line in enumerate(lines): fig.text(0.1, 0.85 - 0.02 * k, line, fontproperties=fp, fontsize=11)
            cmd = ["qiskit run bell.py", "pip install qutip", "python grover.py", "make docs", "ls -l"][i]
            fig.text(0.1, 0.70, f"$ {cmd}", family="monospace", fontsize=10)
            fig.text(0.1, 0.66, SCIENCE[i + 6], fontproperties=fp, fontsize=11)
            fig.text(0.5, 0.03, str(i + 1), fontsize=9)
            pdf.savefig(fig); plt.close(fig)
    rep = pdf_to_text(tmp_path / "mine.pdf", tmp_path / "mine.txt", show_progress=False)
    docs = _docs(tmp_path / "mine.txt")
    want = ["量子比特是量子信息的基本单位，它可以处于两个基态的任意叠加之中，这是经典比特没有的性质。", "测量会使叠加态坍缩。"]
    assert docs[0][:2] == want and len(docs) == 2  # the chapter title on page 3 splits the book
    assert docs[1][0] == SCIENCE[2]
    assert not any("量子计算导论" in s or "$ " in s or s.isdigit() for d in docs for s in d)
    assert rep["lines_dropped"]["header_footer"] == 5 and rep["lines_dropped"]["code"] == 5
    assert rep["lines_dropped"]["heading"] == 1


@pytest.mark.parametrize("big_title", [False, True])
def test_chapter_title_as_running_header_still_splits_chapters(tmp_path, big_title):
    """Newcomer findings: a book that prints the chapter title at the top of every page lost it as a running header, and
    with it every chapter break (one document). With the title also set large on each chapter's first page, chapters of
    3 pages were not seen as running headers at all, and every page became a document of its own. Either way: one
    document per chapter, no title text left. Both the PDF path and the streaming .txt path (form feeds between pages)."""
    font = cjk_font()  # any CJK font: the checks are on layout and the text layer, not on glyph shapes
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.font_manager import FontProperties
    fp = FontProperties(fname=str(font))
    chapters = [("第1章 安装", 0), ("第2章 网络配置", 3), ("第3章 备份与恢复", 6)]
    text_pages = []
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(tmp_path / "manual.pdf") as pdf:
        for title, first in chapters:
            for k in range(3):
                fig = plt.figure(figsize=(8.27, 11.69))
                fig.text(0.1, 0.96, title, fontproperties=fp, fontsize=9)  # the same size on every page: a running header
                if big_title and k == 0: fig.text(0.1, 0.90, title, fontproperties=fp, fontsize=20)
                body = [SCIENCE[(first + k + j) % len(SCIENCE)] for j in range(2)]
                for j, line in enumerate(body): fig.text(0.1, 0.85 - 0.03 * j, line, fontproperties=fp, fontsize=11)
                fig.text(0.5, 0.03, str(first + k + 1), fontsize=9)
                pdf.savefig(fig); plt.close(fig)
                text_pages.append("\n".join([title, *([title] if big_title and k == 0 else []), *body, str(first + k + 1)]))
    (tmp_path / "manual.txt").write_text("\f".join(text_pages), encoding="utf-8")
    for name in ("manual.pdf", "manual.txt"):
        rep = pdf_to_text(tmp_path / name, tmp_path / f"out_{name}.txt", show_progress=False)
        docs = _docs(tmp_path / f"out_{name}.txt")
        assert len(docs) == 3, (name, len(docs))  # was 1 (small header only) or 9 (with the big title)
        assert [d[0] for d in docs] == [SCIENCE[0], SCIENCE[3], SCIENCE[6]], name
        assert not any(title in s for d in docs for s in d for title, _ in chapters), name
        dropped = rep["lines_dropped"]
        assert dropped["header_footer"] + dropped["heading"] == 9 + 3 * big_title, (name, dropped)


@pytest.mark.parametrize("name,data,match", [
    ("empty.txt", b"", "empty"),
    ("blank.txt", b"  \n\n ", "empty"),
    ("random.bin", bytes(range(256)) * 16, "binary"),
    ("fake.pdf", "只是一段文字".encode("utf-8"), "no PDF header"),
    ("broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4, "PDF"),
])
def test_bad_files_give_clear_errors_and_no_output(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    out_dir = tmp_path / "out"
    with pytest.raises(Pdf2TextError, match=match):
        pdf_to_text(tmp_path / name, out_dir / "x.txt", show_progress=False)
    assert not out_dir.exists() or not list(out_dir.iterdir())  # nothing half-written, no temp files


def _blank_pdf(path, n=3):
    w = pypdf.PdfWriter()
    for _ in range(n): w.add_blank_page(width=595, height=842)
    with open(path, "wb") as f: w.write(f)


def test_pdf_without_text_layer_suggests_ocr(tmp_path):
    _blank_pdf(tmp_path / "blank.pdf")
    with pytest.raises(Pdf2TextError, match="ocrmypdf"):
        pdf_to_text(tmp_path / "blank.pdf", tmp_path / "blank.txt", show_progress=False)
    # an image-only page (what a scanner produces)
    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(4, 5))
    fig.figimage(np.random.default_rng(0).random((200, 160)), cmap="gray")
    fig.savefig(tmp_path / "scan.pdf"); plt.close(fig)
    with pytest.raises(Pdf2TextError, match="no text layer"):
        pdf_to_text(tmp_path / "scan.pdf", tmp_path / "scan.txt", show_progress=False)
    assert not (tmp_path / "blank.txt").exists() and not (tmp_path / "scan.txt").exists()


def _demo_subset(path, pages=range(28, 32), **encrypt):
    r = pypdf.PdfReader(str(DEMO_PDF))
    w = pypdf.PdfWriter()
    for i in pages: w.add_page(r.pages[i])
    if encrypt: w.encrypt(**encrypt)
    with open(path, "wb") as f: w.write(f)


def test_encrypted_pdfs(tmp_path):
    _demo_subset(tmp_path / "locked.pdf", user_password="secret", owner_password="owner", algorithm="AES-128")
    with pytest.raises(Pdf2TextError, match="password"):
        pdf_to_text(tmp_path / "locked.pdf", tmp_path / "locked.txt", show_progress=False)
    assert not (tmp_path / "locked.txt").exists()
    # empty user password (only copying/printing restricted): decrypted and converted
    _demo_subset(tmp_path / "open.pdf", user_password="", owner_password="owner", algorithm="AES-128")
    assert pypdf.PdfReader(str(tmp_path / "open.pdf")).is_encrypted
    rep = pdf_to_text(tmp_path / "open.pdf", tmp_path / "open.txt", show_progress=False)
    assert rep["docs"] > 0 and "为了帮助你平滑起步，我详细说明一些基本要点。" in _lines(tmp_path / "open.txt")


def test_output_must_not_overwrite_input(tmp_path):
    src = tmp_path / "book.txt"
    src.write_text("第一句话。", encoding="utf-8")
    with pytest.raises(Pdf2TextError, match="output path is the input"):
        pdf_to_text(src, src, show_progress=False)
    assert src.read_text(encoding="utf-8") == "第一句话。"


def test_failed_rerun_keeps_previous_output(tmp_path):
    src = tmp_path / "book.txt"
    src.write_text("第一句话。第二句话。", encoding="utf-8")
    pdf_to_text(src, tmp_path / "out.txt", show_progress=False)
    before = (tmp_path / "out.txt").read_bytes()
    src.write_bytes(b"")
    with pytest.raises(Pdf2TextError):
        pdf_to_text(src, tmp_path / "out.txt", show_progress=False)
    assert (tmp_path / "out.txt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.txt", "out.report.json", "out.txt"]


def test_folder_converts_good_files_and_names_bad_ones(tmp_path):
    raw = tmp_path / "raw"; raw.mkdir()
    (raw / "a.txt").write_text("甲文档的一句话。\n\n乙文档的一句话。", encoding="utf-8")
    (raw / "b.txt").write_bytes("另一本书。".encode("gbk"))
    (raw / "notes.md").write_text("# 笔记\n\n丙文档的一句话。", encoding="utf-8")  # a Markdown book is a book too
    reps = folder_to_text(raw, tmp_path / "text", show_progress=False)
    assert sorted(Path(k).name for k in reps) == ["a.txt", "b.txt", "notes.md"]
    assert _docs(tmp_path / "text" / "a.txt") == [["甲文档的一句话。"], ["乙文档的一句话。"]]
    (raw / "c.pdf").write_bytes(b"not a pdf")
    with pytest.raises(Pdf2TextError, match=r"1 of 4 inputs failed:\n.*c\.pdf"):
        folder_to_text(raw, tmp_path / "text2", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "text2").glob("*.txt")) == ["a.txt", "b.txt", "notes.txt"]


def test_run_stage_manifest_and_cli(tmp_path, capsys):
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.corpus": "c"})
    cfg.paths.raw_dir.mkdir(parents=True)
    _demo_subset(cfg.paths.raw_dir / "book.pdf", pages=range(26, 34))
    r1 = run_stage(cfg)
    assert not r1["skipped"] and r1["docs"] > 0
    out = cfg.paths.text_dir / "book.txt"
    assert out.exists() and report_path(out).exists()
    m = read_manifest(cfg.paths.text_dir, "pdf2text")
    assert m["params"]["max_pages"] == 30 and m["counts"]["docs"] == r1["docs"]
    assert run_stage(cfg)["skipped"]
    assert not run_stage(cfg.override({"pdf2text.keep_code": True}))["skipped"]  # new params: rerun
    # the CLI, through the package's dispatcher
    from vertical_pretrain.cli import main as cli_main
    assert cli_main(["pdf2text", "--input_path", str(cfg.paths.raw_dir / "book.pdf"), "--output_path",
                     str(tmp_path / "cli.txt"), "--max_pages", "5", "--keep_code"]) == 0
    assert "# chvt 3" in _lines(tmp_path / "cli.txt")
    assert "lines in" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_text("")
    assert main(["--input_path", str(tmp_path / "empty.txt"), "--output_path", str(tmp_path / "e.txt")]) == 1
    assert "empty" in capsys.readouterr().err and not (tmp_path / "e.txt").exists()


def test_split_sentences():
    assert split_sentences("你好。他说：“走吧！”然后走了；对吗？好") == ["你好。", "他说：“走吧！”", "然后走了；", "对吗？", "好"]
    assert split_sentences("Edit /etc/apt/sources.list first. Then run apt-get update, e.g. with sudo. "
                           "Version 2.1 is out! See https://www.debian.org. Done.") == [
        "Edit /etc/apt/sources.list first.", "Then run apt-get update, e.g. with sudo.", "Version 2.1 is out!",
        "See https://www.debian.org.", "Done."]
    assert split_sentences("Mr. Smith uses Debian, i.e. a distro. Dr. Who uses vim etc. and so on. Fig. 3 shows it.") == [
        "Mr. Smith uses Debian, i.e. a distro.", "Dr. Who uses vim etc. and so on.", "Fig. 3 shows it."]
    assert split_sentences("安装 Debian 11.6 后运行 apt.  然后重启。") == ["安装 Debian 11.6 后运行 apt.", "然后重启。"]
    assert split_sentences("") == []


def _book_as_text(first=0, n_pages=40):
    "Pages of the demo book as a pdftotext-style .txt: form feeds between pages, running headers, a table of contents."
    r = pypdf.PdfReader(str(DEMO_PDF))
    return "\f".join(r.pages[i].extract_text() for i in range(first, first + n_pages))


@pytest.mark.parametrize("form_feeds", [True, False])
def test_streamed_txt_equals_the_in_memory_rules(tmp_path, form_feeds):
    "A .txt is cleaned in passes over the file (`clean_text_file`); text and counts equal `clean_pages` on the whole text."
    from vertical_pretrain.pdf2text import clean_pages, format_text, text_to_pages
    text = _book_as_text() if form_feeds else _book_as_text(30, 40).replace("\f", "\n")  # one page: no contents pages
    src = tmp_path / "book.txt"; src.write_bytes(text.replace("\n", "\r\n").encode("gb18030"))
    for kw in ({}, {"keep_code": True, "keep_tables": True, "heading_splits_docs": False}):
        rep = pdf_to_text(src, tmp_path / "out.txt", show_progress=False, **kw)
        docs, counts = clean_pages(text_to_pages(text), **kw)
        assert (tmp_path / "out.txt").read_text(encoding="utf-8") == format_text(docs)
        assert {k: rep[k] for k in counts} == counts and rep["encoding"] == "gb18030"
        assert rep["pages"] == (40 if form_feeds else 1)
    if form_feeds: assert counts["lines_dropped"]["header_footer"] > 30 and counts["lines_dropped"]["toc"] > 100


def test_txt_is_never_read_whole(tmp_path, monkeypatch):
    """The .txt path never holds the file: neither the whole-text decoder nor the page builder runs, and the kinds pass
    holds at most one batch of Lines of a one-page file."""
    import vertical_pretrain.pdf2text as p2t
    def whole(*a, **k): raise AssertionError("read whole")
    monkeypatch.setattr(p2t, "read_text_file", whole)  # the whole-file decoder (textio) stage 01 imports
    monkeypatch.setattr(p2t, "text_to_pages", whole)
    batches = []
    orig = p2t.classify_lines
    monkeypatch.setattr(p2t, "classify_lines", lambda pages: batches.append(sum(map(len, pages))) or orig(pages))
    src = tmp_path / "big.txt"
    src.write_text("".join(f"第{i}篇文档的第一句话。第二句话在这里！\n\n" for i in range(5000)), encoding="utf-8")
    rep = pdf_to_text(src, tmp_path / "out.txt", show_progress=False)
    assert rep["docs"] == 5000 and rep["sentences"] == 10000
    assert len(batches) >= 3 and max(batches) <= 4096


def test_chapters_with_the_same_title_are_still_two_chapters(tmp_path):
    "The repeat rule compares the whole title: '第1章 新闻选读' then '第2章 新闻选读' are two chapters, not a repeat."
    text = "\n".join(["第1章 新闻选读", SCIENCE[0], SCIENCE[1], "第2章 新闻选读", SCIENCE[2], SCIENCE[3],
                      "第2章 新闻选读 15", SCIENCE[4]])  # the last title again with a page number: a repeat
    (tmp_path / "digest.txt").write_text(text, encoding="utf-8")
    pdf_to_text(tmp_path / "digest.txt", tmp_path / "out.txt", show_progress=False)
    assert _docs(tmp_path / "out.txt") == [[SCIENCE[0], SCIENCE[1]], [SCIENCE[2], SCIENCE[3], SCIENCE[4]]]


# ---- PDFs drawn operator by operator, as generators do (reportlab's drawString, WPS, Word, LaTeX) ----
# Built with pypdf's low-level objects so the tests need no PDF generator beyond the pinned stack; the operators are
# the ones reportlab writes: `BT 1 0 0 1 x y Tm /F 12 Tf (..) Tj T* ET` per drawString.
# STSong-Light is Adobe's non-embedded CID font (Adobe-GB1, UniGB-UCS2-H) with reportlab's /W array (CIDs 1-95 are
# the proportional ASCII glyphs, CJK 1 em).
_STSONG_W = [1, [207, 270, 342, 467, 462, 797, 710, 239, 374], 10, [374, 423, 605, 238, 375, 238, 334, 462], 18, 26, 462,
             27, 28, 238, 29, 31, 605, 32, [344, 748, 684, 560, 695, 739, 563, 511, 729, 793, 318, 312, 666, 526, 896, 758,
             772, 544, 772, 628, 465, 607, 753, 711, 972, 647, 620, 607, 374, 333, 374, 606, 500, 239, 417, 503, 427, 529,
             415, 264, 444, 518, 241, 230, 495, 228, 793, 527, 524], 81, [524, 504, 338, 336, 277, 517, 450, 652, 466, 452,
             407, 370, 258, 370, 605]]


def _stsong_width(ch):
    "Advance of one char in STSong-Light (em), from the /W array above: what reportlab's stringWidth gives."
    cid = ord(ch) - 31 if " " <= ch <= "~" else None
    if cid is None: return 1.0
    i = 0
    while i < len(_STSONG_W):
        first, nxt = _STSONG_W[i], _STSONG_W[i + 1]
        if isinstance(nxt, list):
            if first <= cid < first + len(nxt): return nxt[cid - first] / 1000
            i += 2
        else:
            if first <= cid <= nxt: return _STSONG_W[i + 2] / 1000
            i += 3
    return 1.0


def _ops_pdf(path, pages_ops, size=(595, 842)):
    "A PDF whose pages have the given content operators; fonts /F1 Helvetica and /F2 STSong-Light (UniGB-UCS2-H)."
    from pypdf.generic import (ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject,
                               TextStringObject)
    num = lambda v: ArrayObject([num(x) for x in v]) if isinstance(v, list) else NumberObject(v)
    w = pypdf.PdfWriter()
    f1 = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                           NameObject("/BaseFont"): NameObject("/Helvetica"),
                           NameObject("/Encoding"): NameObject("/WinAnsiEncoding")})
    cid = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/CIDFontType0"),
                            NameObject("/BaseFont"): NameObject("/STSong-Light"), NameObject("/DW"): NumberObject(1000),
                            NameObject("/W"): num(_STSONG_W),
                            NameObject("/CIDSystemInfo"): DictionaryObject({
                                NameObject("/Registry"): TextStringObject("Adobe"),
                                NameObject("/Ordering"): TextStringObject("GB1"),
                                NameObject("/Supplement"): NumberObject(0)})})
    f2 = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type0"),
                           NameObject("/BaseFont"): NameObject("/STSong-Light"),
                           NameObject("/Encoding"): NameObject("/UniGB-UCS2-H"),
                           NameObject("/DescendantFonts"): ArrayObject([w._add_object(cid)])})
    fonts = DictionaryObject({NameObject("/F1"): w._add_object(f1), NameObject("/F2"): w._add_object(f2)})
    for ops in pages_ops:
        page = w.add_blank_page(*size)
        content = DecodedStreamObject()
        content.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = w._add_object(content)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    with open(path, "wb") as f: w.write(f)
    return path


def _cid_hex(text):
    "A UniGB-UCS2-H string operand: UCS-2 big-endian as a hex string."
    return "<" + text.encode("utf-16-be").hex().upper() + ">"


def _draw(x, y, text, size=12, font="/F2", tstar=True):
    "reportlab's drawString: one text object per call, the line-feed T* after the string."
    s = _cid_hex(text) if font == "/F2" else "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"
    return f"BT 1 0 0 1 {x:.3f} {y:.3f} Tm {font} {size} Tf {1.2 * size:g} TL {s} Tj{' T*' if tstar else ''} ET"


POWER = ["电力变压器在运行中要持续监测油温和声音，", "发现异常时及时停电检修，避免事故扩大。",
         "变压器是电力系统中最重要的设备之一。", "它的可靠性直接决定了供电的质量和安全。"]


@pytest.mark.parametrize("style", ["line_tstar", "line_td", "glyph"])
def test_fake_bold_overprint_is_kept_once(tmp_path, style):
    """WPS and many converters make "bold" by drawing the text twice, ~0.4 pt apart (pypdf#1731). Stage 01 wrote the
    line twice and spliced the copy into the next sentence (`…油温和声音变压器是电力系统中…`), exit 0, no warning.
    The overprinted copy is dropped: the output equals the same page drawn once. Styles: a whole line twice
    (reportlab's drawString with T*, or a plain Tm without it), every glyph twice."""
    def page(bold):
        ops, y = [], 760
        for i, line in enumerate(POWER):
            if style == "glyph":
                x = 72.0
                for ch in line:
                    ops.append(_draw(x, y, ch))
                    if bold and i in (0, 2): ops.append(_draw(x + 0.4, y, ch))
                    x += 12 * _stsong_width(ch)
            else:
                ops.append(_draw(72, y, line, tstar=style == "line_tstar"))
                if bold and i in (0, 2): ops.append(_draw(72.4, y, line, tstar=style == "line_tstar"))
            y -= 18
        return ops
    _ops_pdf(tmp_path / "plain.pdf", [page(False)])
    _ops_pdf(tmp_path / "bold.pdf", [page(True)])
    pdf_to_text(tmp_path / "plain.pdf", tmp_path / "plain.txt", show_progress=False)
    pdf_to_text(tmp_path / "bold.pdf", tmp_path / "bold.txt", show_progress=False)
    lines = _lines(tmp_path / "bold.txt")
    assert lines == _lines(tmp_path / "plain.txt"), lines
    assert lines.count("变压器是电力系统中最重要的设备之一。") == 1
    assert not any("声音变压器" in l or "油温和声音电力" in l for l in lines)


GRID = [  # 16 paragraphs, 32 sentences of a power-grid manual
    "电缆终端头是电缆线路中最容易出故障的部位。安装时要保持清洁，防止潮气进入。",
    "变压器是电力系统中最重要的设备之一。它的可靠性直接决定了供电的质量和安全。",
    "巡检人员每天记录油温、油位和声音。发现异常时要立即报告值班负责人。",
    "断路器能在短路时迅速切断电流。它的开断能力必须大于安装处的最大短路电流。",
    "隔离开关没有灭弧能力，只能在无负荷时操作。误拉隔离开关会产生强烈的电弧。",
    "接地网把故障电流安全地导入大地。接地电阻要定期测量，雨季前尤其重要。",
    "继电保护装置检测到故障后发出跳闸命令。保护的选择性要求只切除故障元件。",
    "电压互感器把高电压按比例变成低电压。二次侧绝对不允许短路。",
    "电流互感器的二次侧绝对不允许开路。开路会在二次侧感应出危险的高电压。",
    "避雷器限制雷电和操作引起的过电压。它的残压应低于被保护设备的耐受电压。",
    "蓄电池组是变电站的直流电源。交流电源消失时，它为保护和控制回路供电。",
    "倒闸操作必须填写操作票。操作时一人操作、一人监护，逐项唱票复诵。",
    "工作票是检修工作的书面依据。许可人和负责人要到现场共同确认安全措施。",
    "验电是接地前必须进行的步骤。验电器要先在有电设备上试验，确认完好。",
    "悬挂标示牌可以防止误合闸。开关把手上应挂“禁止合闸，有人工作”的牌子。",
    "事故处理以保人身、保电网、保设备为原则。处理结束后要写出详细的事故报告。",
]


def _column_ops(paragraphs, columns, chars, top=780.0, bottom=80.0, size=12, pitch=18):
    """reportlab-style lines (one drawString each) of `paragraphs` wrapped at `chars` characters into `columns`
    (left x of each column), filled column by column, page by page; the first line of a paragraph is indented 2 em."""
    lines = []
    for p in paragraphs:
        text = "\u3000\u3000" + p
        lines += [text[i:i + chars] for i in range(0, len(text), chars)]
    pages, ops, col, y = [], [], 0, top
    for line in lines:
        if y < bottom:
            col, y = col + 1, top
            if col == len(columns): pages.append(ops); ops, col = [], 0
        lead = len(line) - len(line.lstrip("\u3000"))
        ops.append(_draw(columns[col] + lead * size, y, line.lstrip("\u3000"), size=size))
        y -= pitch
    pages.append(ops)
    return pages, lines


def test_two_columns_give_the_same_paragraphs_as_one(tmp_path):
    """xberg#1345, pdfplumber#244: each left-column line was taken as a paragraph end (its right edge was compared with
    the page-wide one), so words were cut (`电缆终` / `端头…`) and 16 paragraphs became 32; a `。` that started a line
    became a 1-character sentence and was dropped. Paragraph ends are judged per column, and a line-initial closing
    mark belongs to the sentence before it."""
    one, _ = _column_ops(GRID, [60.0], chars=30)
    two, wrapped = _column_ops(GRID, [60.0, 312.0], chars=15, bottom=400.0)
    assert any(l.startswith("。") for l in wrapped)  # the narrow column puts a full stop at the start of a line
    _ops_pdf(tmp_path / "one.pdf", one)
    _ops_pdf(tmp_path / "two.pdf", two)
    r1 = pdf_to_text(tmp_path / "one.pdf", tmp_path / "one.txt", show_progress=False)
    r2 = pdf_to_text(tmp_path / "two.pdf", tmp_path / "two.txt", show_progress=False)
    want = [s for p in GRID for s in split_sentences(p)]
    assert _lines(tmp_path / "one.txt") == want and r1["paragraphs"] == 16 and len(want) == 32
    assert _lines(tmp_path / "two.txt") == want, _lines(tmp_path / "two.txt")
    assert r2["paragraphs"] == 16 and r2["sentences"] == 32 and r2["sentences_dropped_short"] == 0


def test_line_initial_full_stop_joins_the_sentence_before(tmp_path):
    """A `。` wrapped to the start of a line after a line that stops short (here: an inline figure after `及时检修`) was a
    paragraph of its own: a 1-character sentence, dropped. Closing CJK marks never start a paragraph."""
    lines = ["电力变压器在运行中要持续监测油温和声音，发现异常时", "及时检修", "。它的可靠性直接决定了供电的质量。",
             "电力变压器在运行中要持续监测油温和声音，发现异常时", "及时检修", "）和（断路器）也是这样。"]
    _ops_pdf(tmp_path / "stop.pdf", [[_draw(72, 760 - 18 * i, t) for i, t in enumerate(lines)]])
    rep = pdf_to_text(tmp_path / "stop.pdf", tmp_path / "stop.txt", show_progress=False)
    assert _lines(tmp_path / "stop.txt") == ["电力变压器在运行中要持续监测油温和声音，发现异常时及时检修。", "它的可靠性直接决定了供电的质量。",
                                            "电力变压器在运行中要持续监测油温和声音，发现异常时及时检修）和（断路器）也是这样。"]
    assert rep["sentences_dropped_short"] == 0


GLYPH_LINE = "管理员使用 Linux 4.19 内核和 IVRS 表单配置软件源。"


def _placed_ops(runs, widths, size=12.0, x0=72.0, y=760.0, tstar=True, font_of=lambda ch: "/F2"):
    "One drawString per run at its exact advance (`widths`: char -> em); spaces are not drawn, only advanced."
    ops, x = [], x0
    for run in runs:
        if run.strip():
            for part in re.findall(r"[\x21-\x7e]+|[^\x21-\x7e]+", run) if font_of("a") != font_of("中") else [run]:
                ops.append(_draw(x, y, part, size=size, font=font_of(part[0]), tstar=tstar))
                x += sum(widths(c) for c in part) * size
        else: x += sum(widths(c) for c in run) * size
    return ops


@pytest.mark.parametrize("style", ["glyph_tstar", "glyph_td", "glyph_helvetica", "word_tstar", "line_tc_tw"])
def test_glyph_placed_latin_is_rejoined_by_position(tmp_path, style):
    """Glyph-by-glyph Latin again: reportlab's STSong-Light, one drawString per character at its exact advance, came out
    as `L i n u x 4 . 1 9`. The spacing is decided from the glyph positions and the font's advance widths (here a
    non-embedded CID font, whose widths pypdf maps wrongly), whatever runs and lines pypdf split the text into.
    Per glyph (with reportlab's T* after each string, or without), Latin in Helvetica, per word, and one string per line
    with Tc/Tw spacing."""
    from pypdf.generic._font import Font
    helv = Font.from_core_font_name("/Helvetica").character_widths
    if style == "line_tc_tw":
        ops = [f"BT /F2 12 Tf 72 760 Td 0.6 Tc 2 Tw {_cid_hex(GLYPH_LINE)} Tj ET"]
    elif style == "word_tstar":
        ops = _placed_ops(re.findall(r" +|[^ ]+", GLYPH_LINE), _stsong_width)
    elif style == "glyph_helvetica":  # Latin in Helvetica, CJK in STSong-Light, each glyph on its own
        w = lambda c: helv[c] / 1000 if c.isascii() else 1.0
        ops = _placed_ops(list(GLYPH_LINE), w, font_of=lambda c: "/F1" if c.isascii() else "/F2")
    else:
        ops = _placed_ops(list(GLYPH_LINE), _stsong_width, tstar=style == "glyph_tstar")
    _ops_pdf(tmp_path / "g.pdf", [ops + [_draw(72, 742, "这一行是普通的正文，单独一句话。")]])
    pdf_to_text(tmp_path / "g.pdf", tmp_path / "g.txt", show_progress=False)
    assert _lines(tmp_path / "g.txt")[0] == GLYPH_LINE


@pytest.mark.parametrize("per", ["glyph", "word"])
def test_glyph_placed_latin_in_an_embedded_truetype_font(tmp_path, per):
    "The same line in an embedded TrueType font (matplotlib, fonttype 42: a CIDFontType2 subset), one text per glyph or word."
    font = cjk_font()
    from fontTools.ttLib import TTFont
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties
    tt = TTFont(str(font), fontNumber=0)
    cmap, hmtx, upem = tt.getBestCmap(), tt["hmtx"], tt["head"].unitsPerEm
    adv = lambda c: hmtx[cmap[ord(c)]][0] / upem
    fp = FontProperties(fname=str(font), size=12)
    runs = list(GLYPH_LINE) if per == "glyph" else re.findall(r" +|[^ ]+", GLYPH_LINE)
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig = plt.figure(figsize=(8.27, 11.69))
        W, H = 8.27 * 72, 11.69 * 72
        x = 72.0
        for run in runs:
            if run.strip(): fig.text(x / W, 760 / H, run, fontproperties=fp)
            x += sum(adv(c) for c in run) * 12
        fig.text(72 / W, 742 / H, "这一行是普通的正文，单独一句话。", fontproperties=fp)
        fig.savefig(tmp_path / "tt.pdf"); plt.close(fig)
    pdf_to_text(tmp_path / "tt.pdf", tmp_path / "tt.txt", show_progress=False)
    assert _lines(tmp_path / "tt.txt")[0] == GLYPH_LINE
