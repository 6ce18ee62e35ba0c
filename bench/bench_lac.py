"""Throughput of word segmentation: our numpy LAC runtime (seg mode) vs jieba, 1 and 2 worker processes.

Input: the 2,000-line Debian Reference dev fixture (tests/fixtures/lac_golden_dev.jsonl, ~85k chars).
- "in-process": one `run`/`cut` over the lines after the model is loaded (what the model itself costs);
- "segment_corpus": the whole stage on a file of the fixture repeated --repeat times, process start-up,
  model loading, encoding detection and atomic writing included, with 1 and 2 workers.
The original LAC 2.1.2 (paddle 1.8.5) was measured at ~13.6k chars/s in seg mode on this 2-core machine
(shared/README.md); it cannot run on Paddle 3, so that number is a recorded reference, not re-measured.
Anchor of the ratio column: jieba, segment_corpus, 1 worker, measured in the same run.

    python bench/bench_lac.py [--repeat 6] [--rounds 3]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORIGINAL_LAC_SEG_CHARS_PER_S = 13_600


def best_of(rounds, fn):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=6, help="copies of the fixture in the segment_corpus file")
    ap.add_argument("--rounds", type=int, default=3, help="best of N for the in-process timings")
    args = ap.parse_args(argv)

    from vertical_pretrain.lac import LAC
    from vertical_pretrain.segment import get_segmenter, segment_corpus
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                      # optional: only pins BLAS to 1 thread for a fair 1-worker number
        threadpool_limits = None

    load0 = os.getloadavg()[0]
    texts = [json.loads(l)["text"] for l in open(REPO / "tests" / "fixtures" / "lac_golden_dev.jsonl", encoding="utf-8")]
    n_chars = sum(map(len, texts))
    rows = []

    def single_thread():
        return threadpool_limits(1) if threadpool_limits else open(os.devnull)

    with single_thread():
        seg = LAC(mode="seg")
        seg.run(texts[:50])
        rows.append(("LAC seg (numpy)", "in-process", 1, n_chars, best_of(args.rounds, lambda: seg.run(texts))))
        lac = LAC(mode="lac")
        rows.append(("LAC lac (numpy)", "in-process", 1, n_chars, best_of(args.rounds, lambda: lac.run(texts))))
        jieba_seg = get_segmenter("jieba")
        rows.append(("jieba", "in-process", 1, n_chars, best_of(args.rounds, lambda: jieba_seg.batch(texts))))

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "corpus.txt"
        body = []
        for i, t in enumerate(texts * args.repeat):
            body.append(t)
            if i % 8 == 7:
                body.append("")              # documents of 8 sentences
        src.write_text("\n".join(body) + "\n", encoding="utf-8")
        for backend, label in (("lac", "LAC seg (numpy)"), ("jieba", "jieba")):
            for workers in (1, 2):
                t0 = time.perf_counter()
                rep = segment_corpus(src, Path(d) / f"out_{backend}_{workers}.txt", backend=backend,
                                     workers=workers, show_progress=False, chunk_chars=50_000)
                rows.append((label, "segment_corpus", workers, rep["chars"], time.perf_counter() - t0))

    anchor = next(c / s for name, how, w, c, s in rows if name == "jieba" and how == "segment_corpus" and w == 1)
    print(f"fixture: {len(texts)} lines, {n_chars} chars; segment_corpus file: fixture x{args.repeat}; "
          f"{os.cpu_count()} cores; load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f} "
          "(other processes on the machine make the 2-worker rows unreliable)\n")
    print("| segmenter | how | workers | chars | seconds | chars/s | vs original LAC 13.6k | vs jieba corpus 1w |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, how, workers, chars, secs in rows:
        cps = chars / secs
        vs_lac = f"{cps / ORIGINAL_LAC_SEG_CHARS_PER_S:.2f}x" if name.startswith("LAC seg") else ""
        print(f"| {name} | {how} | {workers} | {chars} | {secs:.2f} | {cps:,.0f} | {vs_lac} | {cps / anchor:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
