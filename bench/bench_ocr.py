"""OCR engines on the demo book: character error rate and pages/s, the text layer as ground truth.

The first N pages (default 20) of debian-reference.zh-cn.pdf are rendered with pypdfium2 at --dpi (default 200)
and read by each engine; the reference is pypdf's text layer of the same page. CER = Levenshtein distance /
reference length with all whitespace removed (OCR and text layers space CJK differently), char-weighted over
the pages; "CER NFKC" also folds full-width forms (（ -> (), which the two sides use inconsistently; "CER NFKC,
no leaders" also drops the table of contents' dot leaders (`. . . . 39`) on both sides: pages 3-19 are the table of
contents, and the engines do not read dotted leaders as text (they are not). Page 1 (the cover, an image) has no
reference and is skipped. Rows:
- "rapidocr_onnxruntime": PP-OCRv4 mobile det + rec ONNX models shipped in the wheel, ONNX Runtime on CPU;
- "tesseract chi_sim": Debian's tesseract-ocr 5 with tesseract-ocr-chi-sim (LSTM), through its CLI (TSV output).
Render time is included in pages/s. Each engine runs in one process with --threads threads. "CPU s/page" counts the
CPU time of this process and of its children (Tesseract's CLI), all threads: unlike pages/s it barely moves when other
jobs share the machine, so compare engines by it on a busy machine.

    python bench/bench_ocr.py [--pages 20] [--dpi 200] [--threads 2] [--engines rapidocr,tesseract] [--save texts.json]
"""
import argparse
import resource
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO_PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"


_LEADERS = re.compile(r"(?:[.·…]\s*){3,}")


def no_leaders(text: str) -> str:
    return _LEADERS.sub("", text)


def cpu_seconds() -> float:
    "CPU time of this process (all threads) plus its finished children, in seconds."
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def tesseract_page(img, dpi: int, threads: int) -> tuple[str, float]:
    "Tesseract CLI on one image: (text, mean word confidence 0-1)."
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "page.png"
        img.save(p)
        env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}
        r = subprocess.run(["tesseract", str(p), "stdout", "-l", "chi_sim", "--dpi", str(dpi), "tsv"],
                           capture_output=True, text=True, env=env, check=True)
    words, confs = [], []
    for row in r.stdout.splitlines()[1:]:
        f = row.split("\t")
        if len(f) == 12 and f[0] == "5" and f[11].strip():
            words.append(f[11]); confs.append(float(f[10]) / 100)
    return " ".join(words), (sum(confs) / len(confs) if confs else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--dpi", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads / OMP_THREAD_LIMIT")
    ap.add_argument("--engines", default="rapidocr,tesseract")
    ap.add_argument("--save", default="", help="write the per-page OCR texts to this JSON file")
    args = ap.parse_args(argv)

    import pypdf
    from vertical_pretrain.ocr import RapidOcrEngine, cer, open_pdfium, render_page

    reader = pypdf.PdfReader(str(DEMO_PDF))
    refs = {i: reader.pages[i].extract_text() for i in range(args.pages)}
    idx = [i for i in range(args.pages) if "".join(refs[i].split())]
    pdf = open_pdfium(DEMO_PDF)
    engines = []
    for name in args.engines.split(","):
        if name == "rapidocr":
            eng = RapidOcrEngine(threads=args.threads)
            def run(img, eng=eng):
                lines = eng(img, 72 / args.dpi)
                n = sum(len(l.text) for l in lines) or 1
                lines.sort(key=lambda l: (round(l.top), l.x0))
                return "\n".join(l.text for l in lines), sum(l.conf * len(l.text) for l in lines) / n
            engines.append((f"rapidocr_onnxruntime {eng.version} (PP-OCRv4)", run))
        elif name == "tesseract":
            if not shutil.which("tesseract"):
                print("tesseract not installed: skipped (apt-get install tesseract-ocr tesseract-ocr-chi-sim)"); continue
            ver = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split()[1]
            engines.append((f"tesseract {ver} chi_sim", lambda img: tesseract_page(img, args.dpi, args.threads)))
    load0 = os.getloadavg()[0]
    rows, saved = [], {}
    for label, run in engines:
        secs, cpu, cers, cers_k, cers_l, confs = 0.0, 0.0, [], [], [], []
        for i in idx:
            t0, c0 = time.perf_counter(), cpu_seconds()
            img, _, _ = render_page(pdf, i, args.dpi)
            text, conf = run(img)
            secs += time.perf_counter() - t0
            cpu += cpu_seconds() - c0
            cers.append(cer(refs[i], text)); cers_k.append(cer(refs[i], text, nfkc=True))
            cers_l.append(cer(no_leaders(refs[i]), no_leaders(text), nfkc=True)); confs.append(conf)
            saved.setdefault(label, {})[i + 1] = text
            print(f"  {label} page {i + 1}: CER {cers[-1]:.3f} ({cers_k[-1]:.3f} NFKC, {cers_l[-1]:.3f} no leaders) "
                  f"conf {conf:.3f} {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr, flush=True)
        ref_chars = sum(len("".join(refs[i].split())) for i in idx)
        # char-weighted mean CER = total edits / total reference chars
        w = lambda cs: sum(c * len("".join(refs[i].split())) for c, i in zip(cs, idx)) / ref_chars
        rows.append((label, len(idx), w(cers), w(cers_k), w(cers_l), sum(confs) / len(confs), secs, cpu))
    if args.save: Path(args.save).write_text(json.dumps(saved, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"book: {DEMO_PDF.name}, pages 2-{args.pages} ({len(idx)} pages with a text layer); {args.dpi} dpi; "
          f"{args.threads} threads; {os.cpu_count()} cores; load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f}\n")
    print("| engine | pages | CER | CER NFKC | CER NFKC, no leaders | mean confidence | seconds | pages/s | CPU s/page |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, c, ck, cl, conf, secs, cpu in rows:
        print(f"| {label} | {n} | {c:.3f} | {ck:.3f} | {cl:.3f} | {conf:.3f} | {secs:.1f} | {n / secs:.3f} | {cpu / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
