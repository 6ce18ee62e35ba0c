"""GPU checklist (issue 18): what to run the first time a machine with a GPU and paddlepaddle-gpu is available.

20 steps of the `full` profile's code path (ernie-3.0-medium-zh, max_seq_len 256, global batch 128) for every AMP mode
(fp32, O1/O2 x float16/bfloat16), recompute off and on, on 1 GPU and on all the given GPUs; then one table with
tokens/s, peak GPU memory and each run's largest loss difference from the fp32 / 1-GPU / no-recompute run.

    bench/gpu_check.sh [--dry-run] [--gpus 0,1,2,3] [--steps 20] [--modes fp32,O1-float16,...] [--out output/gpu_check]

Expected, and what the table checks (`launch.deterministic=true` is set for every run):
- recompute on = off, and N GPUs = 1 GPU, in fp32: same losses (rtol 1e-4; dropout is seeded per global micro-batch,
  so the process count does not change the masks);
- AMP runs: the same curve within 2e-2 relative (float16/bfloat16 rounding), and no step without a loss.
The data stages (01-05 of the `full` profile) run first through the pipeline; they are skipped when already done.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

MODES = {"fp32": {"train.use_amp": False},
         "O1-float16": {"train.use_amp": True, "train.amp_level": "O1", "train.amp_dtype": "float16"},
         "O2-float16": {"train.use_amp": True, "train.amp_level": "O2", "train.amp_dtype": "float16"},
         "O1-bfloat16": {"train.use_amp": True, "train.amp_level": "O1", "train.amp_dtype": "bfloat16"},
         "O2-bfloat16": {"train.use_amp": True, "train.amp_level": "O2", "train.amp_dtype": "bfloat16"}}
RTOL_SAME, RTOL_AMP = 1e-4, 2e-2


def runs(gpus: str, modes: list[str]) -> list[dict]:
    "Every run of the checklist: name, GPU ids, config overrides."
    sets = [gpus.split(",")[0]] + ([gpus] if "," in gpus else [])
    return [{"name": f"{m}_rc{rc}_{len(g.split(','))}gpu", "gpus": g, "set": {**MODES[m], "train.use_recompute": bool(rc)}}
            for g in sets for m in modes for rc in (0, 1)]


def commands(args) -> list[list[str]]:
    "The shell commands, in order: data stages, one pretraining run each, the report."
    cli = [sys.executable, "-m", "vertical_pretrain.cli"]
    out = [cli + ["pipeline", "--profile", "full", "--to", "05", "--no-progress"]]
    for r in runs(args.gpus, args.modes):
        over = {"paths.output_root": args.out, "paths.run_name": r["name"], "train.max_steps": args.steps,
                "train.logging_freq": 1, "train.eval_freq": 0, "train.save_steps": 0, "train.checkpoint_steps": 0,
                "train.continue_training": False, "launch.deterministic": True, **r["set"]}
        out.append(cli + ["pretrain", "--profile", "full", "--devices", r["gpus"]]
                   + [a for k, v in over.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")])
        out.append(["rm", "-rf", str(Path(args.out) / r["name"] / "checkpoints")])  # ~1 GB per run; metrics.jsonl stays
    out.append([sys.executable, str(Path(__file__).resolve()), "--report", "--out", args.out, "--gpus", args.gpus,
                "--modes", ",".join(args.modes)])
    return out


def report(out_dir, gpus: str, modes: list[str]) -> str:
    "The table of the finished runs (markdown), also written to <out>/gpu_check.md."
    def train_recs(name):
        p = Path(out_dir) / name / "metrics.jsonl"
        return [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines() if '"split": "train"' in l] if p.is_file() else []
    all_runs = runs(gpus, modes)
    ref = {r["step"]: r["loss"] for r in train_recs(all_runs[0]["name"])}
    rows = ["| run | steps | tokens/s | peak GPU MiB | max rel. loss diff vs " + all_runs[0]["name"] + " | check |",
            "|---|---|---|---|---|---|"]
    for r in all_runs:
        recs = train_recs(r["name"])
        if not recs: rows.append(f"| {r['name']} | 0 | | | | FAILED: no metrics (see {out_dir}/{r['name']}/logs) |"); continue
        tps = [x["tokens_per_s"] for x in recs[1:]] or [recs[0]["tokens_per_s"]]  # the first step compiles and warms up
        mem = max(x.get("max_mem_allocated_mb", 0.0) for x in recs)
        diff = max((abs(x["loss"] - ref[x["step"]]) / abs(ref[x["step"]]) for x in recs if x["step"] in ref), default=float("nan"))
        tol = RTOL_SAME if not r["set"]["train.use_amp"] else RTOL_AMP
        ok = diff <= tol and len(recs) == len(ref)
        rows.append(f"| {r['name']} | {len(recs)} | {sum(tps) / len(tps):,.0f} | {mem:,.0f} | {diff:.2e} | "
                    f"{'ok' if ok else 'CHECK'} (rtol {tol:g}) |")
    text = "\n".join(rows) + "\n"
    (Path(out_dir) / "gpu_check.md").write_text(text, encoding="utf-8")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", default="0,1,2,3", help="GPU ids (indexes within CUDA_VISIBLE_DEVICES); 1 GPU = the first")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    p.add_argument("--out", default="output/gpu_check", help="output root of the runs")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report", action="store_true", help="only print the table of finished runs")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad: p.error(f"unknown mode(s) {bad}; choose from {list(MODES)}")
    if args.report: print(report(args.out, args.gpus, args.modes), end=""); return 0
    cmds = commands(args)
    if args.dry_run:
        for c in cmds: print(shlex.join(c))
        return 0
    failed = []
    for c in cmds[:-1]:
        print("$ " + shlex.join(c), flush=True)
        if subprocess.run(c).returncode and c[0] != "rm":
            if c is cmds[0]: print("gpu_check: the data stages failed; fix them first", file=sys.stderr); return 1
            failed.append(c)  # keep going: one failing mode must not hide the others
    print(report(args.out, args.gpus, args.modes), end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
