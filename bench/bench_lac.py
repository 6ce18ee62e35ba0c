"""Throughput of word segmentation: our LAC runtime's two engines (ONNX Runtime, the new default; numpy, the old one)
vs jieba, in the same run.

Input: the 2,000-line Debian Reference dev fixture (tests/fixtures/lac_golden_dev.jsonl, ~85k chars).
- "in-process": one `run`/`cut` over the lines after the model is loaded (what the model itself costs). The engines
  and jieba take turns round by round (best of --rounds each), so a load change on this shared machine hits all of
  them; both wall time and the process's CPU time are reported (CPU time is steadier when other jobs share the cores).
- "segment_corpus": the whole stage on a file of the fixture repeated --repeat times, process start-up,
  model loading, encoding detection and atomic writing included, with 1 and 2 workers (default engine).
The original LAC 2.1.2 (paddle 1.8.5) was measured at ~13.6k chars/s in seg mode on this 2-core machine
(shared/README.md); it cannot run on Paddle 3, so that number is a recorded reference, not re-measured.
Ratio columns: against jieba in-process and against jieba segment_corpus with 1 worker, both measured in this run.
BLAS and ONNX Runtime run 1 thread per process.

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
        jieba_seg = get_segmenter("jieba")
        runners = {}
        for mode in ("seg", "lac"):
            for engine, label in (("onnx", "new: onnx"), ("numpy", "old: numpy")):
                m = LAC(mode=mode, engine=engine)
                m.run(texts[:50])
                runners[f"LAC {mode} ({label})"] = m.run
        runners["jieba"] = jieba_seg.batch
        outputs = {}
        best = {name: (float("inf"), float("inf")) for name in runners}
        for _ in range(args.rounds):
            for name, fn in runners.items():
                w0, c0 = time.perf_counter(), time.process_time()
                outputs[name] = fn(texts)
                w, c = time.perf_counter() - w0, time.process_time() - c0
                best[name] = (min(best[name][0], w), min(best[name][1], c))
        for name, (w, c) in best.items():
            rows.append((name, "in-process", 1, n_chars, w, c))
        same = {mode: outputs[f"LAC {mode} (new: onnx)"] == outputs[f"LAC {mode} (old: numpy)"] for mode in ("seg", "lac")}

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "corpus.txt"
        body = []
        for i, t in enumerate(texts * args.repeat):
            body.append(t)
            if i % 8 == 7:
                body.append("")              # documents of 8 sentences
        src.write_text("\n".join(body) + "\n", encoding="utf-8")
        for backend, label in (("lac", "LAC seg (new: onnx)"), ("jieba", "jieba")):
            for workers in (1, 2):
                t0 = time.perf_counter()
                rep = segment_corpus(src, Path(d) / f"out_{backend}_{workers}.txt", backend=backend,
                                     workers=workers, show_progress=False, chunk_chars=50_000)
                rows.append((label, "segment_corpus", workers, rep["chars"], time.perf_counter() - t0, None))

    jieba_in = next(r for r in rows if r[0] == "jieba" and r[1] == "in-process")
    anchor_in_wall, anchor_in_cpu = n_chars / jieba_in[4], n_chars / jieba_in[5]
    anchor = next(c / s for name, how, w, c, s, _ in rows if name == "jieba" and how == "segment_corpus" and w == 1)
    print(f"fixture: {len(texts)} lines, {n_chars} chars; segment_corpus file: fixture x{args.repeat}; "
          f"{os.cpu_count()} cores; load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f} "
          "(other processes on the machine make the 2-worker rows unreliable)")
    print(f"new (onnx) and old (numpy) engines give identical output on the fixture: seg {same['seg']}, lac {same['lac']}\n")
    print("| segmenter | how | workers | chars | seconds | chars/s | CPU chars/s | vs original LAC 13.6k "
          "| vs jieba in-process (wall / CPU) | vs jieba corpus 1w |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, how, workers, chars, secs, cpu in rows:
        cps = chars / secs
        vs_lac = f"{cps / ORIGINAL_LAC_SEG_CHARS_PER_S:.2f}x" if name.startswith("LAC seg") else ""
        cpu_cps = f"{chars / cpu:,.0f}" if cpu else ""
        vs_in = f"{cps / anchor_in_wall:.2f}x / {chars / cpu / anchor_in_cpu:.2f}x" if cpu else ""
        print(f"| {name} | {how} | {workers} | {chars} | {secs:.2f} | {cps:,.0f} | {cpu_cps} | {vs_lac} | {vs_in} "
              f"| {cps / anchor:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
