"""The full-size model on CPU: seconds per pretraining step and peak memory of ernie-3.0-medium-zh's exact configuration
(the offline stand-in of nbs/05b_standin: random weights, same-size vocab, 76.1M parameters with the MLM/SOP heads),
run by the `full` profile's code path with launch.device=cpu, gloo, 1 and 2 processes.

python bench/bench_fullsize.py [--nproc 1,2] [--seq 128] [--micro 4] [--steps 4]

Seconds per step = global batch / samples/s of each logged step (metrics.jsonl), the first step (warm-up) left out.
A watcher polls the launcher's process tree every 0.2 s with psutil:
- peak RSS: of the largest single process (a trainer) and of the sum over the tree (trainers, DataLoader workers and
  the launcher; pages shared between processes count in each, so the sum is an upper bound);
- CPU seconds per step: CPU time (user + system) of the whole tree between the end of step 1 and the end of the last
  step (seen as new lines of metrics.jsonl), divided by the steps. On a shared machine the wall time per step grows with
  the load; the CPU time per step much less, so wall / CPU says how much of the machine the run got."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_inputs(root: Path, lines: int = 3000):
    "The stand-in (vocab from 2,000 general-corpus lines: the parameter count does not depend on it) and its stage-04 ids."
    from vertical_pretrain.pretraining_data import create_pretraining_data
    from vertical_pretrain.standin import make_standin
    from vertical_pretrain.vocab import people_daily_docs
    standin = root / "ernie-3.0-medium-zh"
    rep = make_standin(standin, general_max_lines=2000)
    docs = ["\n".join("".join(p) for p in d) for d in people_daily_docs(lines)]
    (root / "in.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    create_pretraining_data(root / "in.jsonl", root / "data" / "c" / "ids" / "corpus", str(standin), progress=False, log=None)
    return standin, rep


def watch(pid: int, metrics: Path, stop: threading.Event, peak: dict, steps: list):
    """Poll `pid` and its descendants until `stop`: peak RSS (largest process, sum) into `peak`, and at every new train
    record of `metrics` a (records, wall, tree CPU seconds) tuple into `steps`."""
    import psutil
    try: root = psutil.Process(pid)
    except psutil.NoSuchProcess: return
    cpu_seen = {}  # pid -> last CPU seconds: a process that exits keeps its share
    while not stop.is_set():
        try: procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess: break
        rss = []
        for p in procs:
            try:
                with p.oneshot():
                    rss.append(p.memory_info().rss); t = p.cpu_times(); cpu_seen[p.pid] = t.user + t.system
            except psutil.NoSuchProcess: pass
        if rss: peak["max_proc"], peak["sum"] = max(peak["max_proc"], max(rss)), max(peak["sum"], sum(rss))
        n = sum('"split": "train"' in l for l in metrics.read_text().splitlines()) if metrics.is_file() else 0
        if n and (not steps or n > steps[-1][0]): steps.append((n, time.time(), sum(cpu_seen.values())))
        stop.wait(0.2)


def run(root: Path, standin: Path, nproc: int, seq: int, micro: int, steps: int) -> dict:
    from vertical_pretrain.launch import build_launch_command, launch_env
    from vertical_pretrain.pretrain import read_metrics
    from vertical_pretrain.standin import full_profile_on_cpu
    cfg = full_profile_on_cpu(standin, max_seq_len=seq, micro_batch_size=micro, nproc=nproc, max_steps=steps, overrides={
        "paths.data_root": str(root / "data"), "paths.corpus": "c", "paths.output_root": str(root / "out"),
        "paths.run_name": f"full_{nproc}p", "data.max_repeat_epochs": 10000, "train.logging_freq": 1,
        "train.eval_freq": 0, "train.eval_iters": 1, "train.save_steps": 0, "train.checkpoint_steps": 0, "train.continue_training": False})
    path = cfg.save(root / f"full_{nproc}p.yaml")
    cmd = build_launch_command(cfg, path)
    # the threads launch_env gives when OMP_NUM_THREADS is unset: the cores shared among the processes
    env = {**os.environ, **launch_env(cfg), "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)),
           "PYTHONPATH": str(REPO), "GLOG_minloglevel": "2"}
    t0, peak, stop, marks = time.time(), {"max_proc": 0, "sum": 0}, threading.Event(), []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    th = threading.Thread(target=watch, args=(proc.pid, cfg.paths.run_dir / "metrics.jsonl", stop, peak, marks), daemon=True)
    th.start()
    out = proc.communicate()[0]
    stop.set(); th.join()
    if proc.returncode != 0:
        logs = "".join(f.read_text()[-2000:] for f in sorted((cfg.paths.run_dir / "logs").glob("workerlog.*")))
        raise RuntimeError(f"x{nproc} failed:\n{out[-3000:]}\n{logs}")
    recs = [r for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"][1:]  # step 1 is the warm-up
    sec = [cfg.train.global_batch_size / r["samples_per_s"] for r in recs]
    (n0, w0, c0), (n1, w1, c1) = marks[0], marks[-1]  # logging_freq 1: one train record per step
    return {"sec_per_step": sum(sec) / len(sec), "cpu_per_step": (c1 - c0) / max(1, n1 - n0), "min_sec": min(sec), "tokens_per_s": sum(r["tokens_per_s"] for r in recs) / len(recs),
            "wall": time.time() - t0, "peak_proc_gb": peak["max_proc"] / 2 ** 30, "peak_sum_gb": peak["sum"] / 2 ** 30,
            "global": cfg.train.global_batch_size, "threads": env.get("OMP_NUM_THREADS", "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4, help="steps per run; the first is a warm-up and not timed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        standin, rep = make_inputs(root)
        print(f"model: {rep['name']} stand-in, {rep['parameters']:,} parameters (ErnieModel; 76,061,250 with the pretraining "
              f"heads), vocab {rep['config']['vocab_size']:,}; seq {args.seq}, micro batch {args.micro} per process; "
              f"{os.cpu_count()} cores\n")
        print("| procs | threads/proc | global batch | s/step (mean) | s/step (best) | CPU s/step (all processes) | tokens/s | "
              "peak RSS, largest process | peak RSS, process tree | wall (incl. startup) | load avg before / after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for nproc in map(int, args.nproc.split(",")):
            before = os.getloadavg()[0]
            r = run(root, standin, nproc, args.seq, args.micro, args.steps)
            print(f"| {nproc} | {r['threads']} | {r['global']} | {r['sec_per_step']:.1f} | {r['min_sec']:.1f} | {r['cpu_per_step']:.1f} | "
                  f"{r['tokens_per_s']:,.0f} | {r['peak_proc_gb']:.2f} GB | {r['peak_sum_gb']:.2f} GB | {r['wall']:.0f} s | "
                  f"{before:.1f} / {os.getloadavg()[0]:.1f} |", flush=True)
    print(f"\nsteps timed: {args.steps - 1} per row (step 1 is the warm-up). The machine is shared: a load average above "
          f"the {os.cpu_count()} cores means other jobs took CPU time from these figures.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
