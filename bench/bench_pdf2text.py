"""Throughput of stage 01 (pdf2text) on the demo book: pages/s, with pypdf's bare text extraction as the anchor.

Rows, all measured in this run on debian-reference.zh-cn.pdf (251 pages):
- "pypdf extract_text": `page.extract_text()` over every page, nothing else (the floor any pypdf-based tool pays);
- "read_pdf_lines": the same extraction with our visitor that records fonts and positions per line;
- "pdf_to_text": the whole stage (extraction, every cleaning rule, sentence split, atomic write + report).
PyMuPDF is ~7x faster at raw extraction (DESIGN.md) but AGPL-licensed, so it is not installed or measured here.

    python bench/bench_pdf2text.py [--max_pages 0] [--rounds 1]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO_PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"


def best_of(rounds, fn):
    best, out = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max_pages", type=int, default=0, help="0 = the whole book")
    ap.add_argument("--rounds", type=int, default=1, help="best of N")
    args = ap.parse_args(argv)

    import pypdf
    from vertical_pretrain.pdf2text import pdf_to_text, read_pdf_lines

    n = len(pypdf.PdfReader(str(DEMO_PDF)).pages)
    n = min(n, args.max_pages) if args.max_pages > 0 else n

    def bare():
        r = pypdf.PdfReader(str(DEMO_PDF))
        return sum(len(r.pages[i].extract_text()) for i in range(n))

    rows = [("pypdf extract_text", *best_of(args.rounds, bare))]
    rows.append(("read_pdf_lines", *best_of(args.rounds, lambda: read_pdf_lines(DEMO_PDF, n, show_progress=False))))
    with tempfile.TemporaryDirectory() as d:
        rows.append(("pdf_to_text", *best_of(args.rounds, lambda: pdf_to_text(
            DEMO_PDF, Path(d) / "out.txt", max_pages=n, show_progress=False))))
    rep = rows[-1][2]
    anchor = n / rows[0][1]
    print(f"book: {DEMO_PDF.name}, {n} pages; output {rep['docs']} docs, {rep['sentences']} sentences, "
          f"{rep['chars_out']} chars; {os.cpu_count()} cores; pypdf {pypdf.__version__}\n")
    print("| step | pages | seconds | pages/s | vs bare pypdf |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, _ in rows:
        print(f"| {name} | {n} | {secs:.2f} | {n / secs:.1f} | {n / secs / anchor:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
