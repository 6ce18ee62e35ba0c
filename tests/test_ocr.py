"""Stage 01 on PDFs whose text layer is missing, broken or drawn glyph by glyph: page checks, OCR (RapidOCR, the
engine in requirements.txt) and the rejoin of single glyphs. Every PDF is made here (or is the field-report fixture);
real pypdf, pypdfium2 and RapidOCR, no mocks."""
import re
import shutil
from pathlib import Path

import pypdf
import pytest
from PIL import Image, ImageDraw, ImageFont
from pypdf.generic import ArrayObject, NameObject, NumberObject

from conftest import cjk_font
from vertical_pretrain.ocr import cer, text_facts, write_text_pdf
from vertical_pretrain.pdf2text import Pdf2TextError, format_report, pdf_to_text, read_pdf_lines

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLYPH_LINE = "管理员使用 Linux 4.19 内核和 IVRS 表单配置软件源。"
SCAN_LINES = ["每个软件包都有一位维护者，负责修复问题。", "管理员使用 Linux 4.19 内核和 IVRS 表单配置软件源。",
              "系统启动时会读取配置文件，然后加载驱动程序。"]
BOOK = [["Debian 是一个自由的操作系统。", "它由志愿者共同维护。", "软件包管理器负责安装和升级软件。"],
        ["内核负责管理硬件资源。", "文件系统保存用户的数据。", "网络服务需要正确的防火墙规则。"],
        ["日志文件记录了系统的运行情况。", "备份可以防止数据丢失。", "定时任务在后台自动运行。"],
        ["用户可以在终端里输入命令。", "图形界面让新手更容易上手。", "文档说明了每个选项的含义。"]]


def _lines(path):
    return [l for l in Path(path).read_text(encoding="utf-8").split("\n") if l]


def scanned_pdf(path, lines, dpi=200, pt=14):
    "What a scanner gives: an A4 page image (Pillow + a CJK font) wrapped as a one-page PDF, no text layer."
    img = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
    d, px = ImageDraw.Draw(img), round(pt * dpi / 72)
    # WenQuanYi only: the CER and confidence bounds below were measured on pages drawn with it; another font
    # gives other glyphs to OCR, so a fallback could fail (or pass) for reasons unrelated to the code
    font = ImageFont.truetype(str(cjk_font(wqy_only=True)), px)
    for k, t in enumerate(lines): d.text((dpi, dpi + k * 2 * px), t, font=font, fill=0)
    img.save(path, "PDF", resolution=dpi)
    return Path(path)


def test_scanned_pdf_is_read_by_ocr(tmp_path):
    pdf = scanned_pdf(tmp_path / "scan.pdf", SCAN_LINES)
    assert not pypdf.PdfReader(pdf).pages[0].extract_text().strip()  # really no text layer
    rep = pdf_to_text(pdf, tmp_path / "scan.txt", show_progress=False)
    out = _lines(tmp_path / "scan.txt")
    assert cer("".join(SCAN_LINES), "".join(out)) <= 0.05, out
    assert rep["page_sources"] == {"text": 0, "ocr": 1, "blank": 0, "dropped": 0}
    assert rep["ocr_engine"].startswith("rapidocr_onnxruntime") and rep["ocr_mean_confidence"] > 0.9
    assert "OCR engine" in format_report(rep)
    # without OCR the same book is a clear error that names the page, and nothing is written
    with pytest.raises(Pdf2TextError, match=r"empty: pages 1\b.*pdf2text.ocr=auto"):
        pdf_to_text(pdf, tmp_path / "never.txt", show_progress=False, ocr="never")
    assert not (tmp_path / "never.txt").exists()


def test_garbled_text_layer_is_never_written(tmp_path):
    pdf = shutil.copy(FIXTURES / "garbled_text_layer.pdf", tmp_path / "garbled.pdf")
    assert "¢" in pypdf.PdfReader(pdf).pages[0].extract_text()  # the symbol soup is really there
    with pytest.raises(Pdf2TextError, match=r"5 of 5 pages .*undecodable: pages 1-5"):
        pdf_to_text(pdf, tmp_path / "never.txt", show_progress=False, ocr="never")
    assert not (tmp_path / "never.txt").exists()
    rep = pdf_to_text(pdf, tmp_path / "auto.txt", show_progress=False, max_pages=2)  # OCR: 2 pages keep it fast
    text = (tmp_path / "auto.txt").read_text(encoding="utf-8")
    facts = text_facts(text)
    assert facts.bad == 0 and facts.soup < 0.01 and facts.cjk > 0.9, text[:200]
    assert rep["page_sources"]["ocr"] == 2 and rep["page_sources"]["dropped"] == 0
    out = _lines(tmp_path / "auto.txt")
    # readable sentences; the running header needs 3+ pages to be seen repeating, so with 2 it stays
    assert len(out) >= 30 and {s for s in out if not s.endswith("。")} <= {"系统管理手册"}, out


def _set_latin_widths(path, out, widths):
    "Rewrite the Latin font as an embedded-subset-like TrueType whose /Widths are `widths` (None: no /Widths)."
    w = pypdf.PdfWriter(clone_from=path)
    f1 = w.pages[0]["/Resources"]["/Font"]["/F1"].get_object()
    f1[NameObject("/BaseFont")] = NameObject("/ABCDEF+SourceSans")
    f1[NameObject("/Subtype")] = NameObject("/TrueType")
    if widths is not None:
        f1[NameObject("/FirstChar")] = NumberObject(32)
        f1[NameObject("/LastChar")] = NumberObject(126)
        f1[NameObject("/Widths")] = ArrayObject([NumberObject(widths)] * 95)
    w.write(out)
    return out


@pytest.mark.parametrize("widths", ["core", None, 0, 300])
def test_glyph_by_glyph_line_is_rejoined(tmp_path, widths):
    pdf = write_text_pdf(tmp_path / "g.pdf", [[GLYPH_LINE]], glyph_by_glyph=True)
    if widths != "core": pdf = _set_latin_widths(pdf, tmp_path / "g2.pdf", widths)
    pdf_to_text(pdf, tmp_path / "g.txt", show_progress=False)
    assert _lines(tmp_path / "g.txt") == [GLYPH_LINE]


def test_glyph_by_glyph_keeps_word_spaces_and_runs_stay_as_pypdf_reads_them(tmp_path):
    lines = ["The quick brown fox jumps over the lazy dog.", "版本 2.6.32 和 10.0.1 都可以使用 apt-get 安装。"]
    for glyph in (True, False):
        pdf = write_text_pdf(tmp_path / f"t{glyph}.pdf", [lines], glyph_by_glyph=glyph)
        pdf = _set_latin_widths(pdf, tmp_path / f"t{glyph}0.pdf", 0)
        pages, _ = read_pdf_lines(pdf, show_progress=False)
        assert [l.text for l in pages[0]] == lines


def test_mixed_book_reports_page_sources(tmp_path, capsys):
    text = write_text_pdf(tmp_path / "text.pdf", BOOK)
    scan = scanned_pdf(tmp_path / "scan.pdf", SCAN_LINES)
    w = pypdf.PdfWriter()
    for i, src in enumerate([text, text, scan, text, text]):
        w.append(str(src), pages=[{0: 0, 1: 1, 3: 2, 4: 3}[i]] if src == text else [0])
    w.write(tmp_path / "mixed.pdf")
    rep = pdf_to_text(tmp_path / "mixed.pdf", tmp_path / "mixed.txt", show_progress=False)
    assert rep["page_sources"] == {"text": 4, "ocr": 1, "blank": 0, "dropped": 0}
    assert rep["pages_ocr"] == [3] and rep["pages_dropped"] == []
    out = _lines(tmp_path / "mixed.txt")
    assert [s for p in BOOK for s in p] == [s for s in out if s not in out[6:9]]  # text pages as typed, in order
    assert cer("".join(SCAN_LINES), "".join(out[6:9])) <= 0.05, out[6:9]
    assert "OCR engine" in format_report(rep) and "1 / 1 / 0 / 0" not in format_report(rep)
    # ocr=never: a book with one scanned page warns, names the page, and keeps the text pages
    rep = pdf_to_text(tmp_path / "mixed.pdf", tmp_path / "never.txt", show_progress=False, ocr="never")
    assert re.search(r"1 of 5 pages .*empty: pages 3\b", capsys.readouterr().err)
    assert rep["page_sources"] == {"text": 4, "ocr": 0, "blank": 0, "dropped": 1} and rep["pages_dropped"] == [3]
    assert _lines(tmp_path / "never.txt") == [s for p in BOOK for s in p]
