"""Dev-only sweep of stage-08 fine-tune settings (model selection never looks at test).

Runs `vertical_pretrain.finetune.finetune` for each (model, setting, seed) and prints a table of the
best-dev-epoch dev macro-F1 / accuracy (mean over seeds), best epoch, first/last train loss and seconds.
Test numbers are written to each run's metrics.json by finetune() but are deliberately not read here.

`--models random-init` uses stage 08's control row: a same-size, randomly initialised ERNIE (config + tokenizer of the
base model dir, weights freshly initialised) to check whether pretraining helped at all.

Runs already in --out are reused (delete the dir to rerun). One base-model run of 15 epochs at
max_seq_len 64 takes ~105 s on one idle core (~7 s/epoch, of which the 1,002-example dev pass is a part).

Example (the sweep reported for the demo profile, ~25 min on 2 shared cores):
    .venv/bin/python bench/finetune_sweep.py --out /tmp/ft_sweep --seeds 0 1 --models base random-init \
        --settings lr1e-3_e15:learning_rate=1e-3,epochs=15,patience=5 lr3e-4_e15:learning_rate=3e-4,epochs=15,patience=5
    .venv/bin/python bench/finetune_sweep.py --out /tmp/ft_sweep --seeds 0 1 --models base \
        --settings lr1e-3_e20:learning_rate=1e-3,epochs=20,patience=5 lr2e-3_e15:learning_rate=2e-3,epochs=15,patience=5 \
                   lr5e-4_e15:learning_rate=5e-4,epochs=15,patience=5 \
                   lr1e-3_e15_len128:learning_rate=1e-3,epochs=15,patience=5,max_seq_len=128 \
                   lr1e-3_e15_bs8:learning_rate=1e-3,epochs=15,patience=5,batch_size=8
"""
import argparse, json, sys, time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vertical_pretrain.config import get_config
from vertical_pretrain.finetune import default_models, finetune
from vertical_pretrain.task import load_task

def parse_setting(spec: str) -> tuple[str, dict]:
    "'name:key=val,key=val' -> (name, {key: typed val})."
    name, _, kv = spec.partition(":")
    out = {}
    for item in filter(None, kv.split(",")):
        k, v = item.split("=")
        out[k] = float(v) if ("." in v or "e" in v) else int(v)
    return name, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/ft_sweep")
    p.add_argument("--models", nargs="+", default=["base"], help="base | domain | random-init | tapt | a model dir")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--settings", nargs="+", default=["demo:"], help="name:field=value,... over the demo profile's finetune config")
    args = p.parse_args(argv)
    cfg = get_config("demo")
    dirs = {k: Path(v) for k, v in default_models(cfg).items()}  # the rows of stage 08 (random-init is built on first use)
    out = Path(args.out)
    task = load_task(cfg.finetune.task_dir, cfg.finetune)
    rows = []
    for m in args.models:
        mdir = dirs.get(m, Path(m))
        for spec in args.settings:
            name, kw = parse_setting(spec)
            fcfg = replace(cfg.finetune, **kw)
            res = []
            for seed in args.seeds:
                d = out / m / name / f"seed_{seed}"
                if (d / "metrics.json").exists():
                    r = json.loads((d / "metrics.json").read_text())
                else:
                    t0 = time.time()
                    r = finetune(mdir, cfg.finetune.task_dir, d, seed=seed, fcfg=fcfg, name=m, progress=False, task=task)
                    r["seconds"] = time.time() - t0
                    (d / "metrics.json").write_text(json.dumps(r, ensure_ascii=False, indent=1))
                res.append(r)
                h = r["history"]
                print(f"{m:7s} {name:22s} seed {seed}: dev F1 {r['dev']['macro_f1']*100:5.2f} acc {r['dev']['accuracy']*100:5.2f} "
                      f"best ep {r['best_epoch']}/{r['epochs_run']} loss {h[0]['train_loss']:.3f}->{h[-1]['train_loss']:.3f} "
                      f"{r.get('seconds', 0):.0f}s", flush=True)
            f1 = [r["dev"]["macro_f1"] * 100 for r in res]; acc = [r["dev"]["accuracy"] * 100 for r in res]
            rows.append((m, name, kw, np.mean(f1), np.std(f1, ddof=1) if len(f1) > 1 else 0.0, np.mean(acc),
                         [r["best_epoch"] for r in res], np.mean([r["history"][-1]["train_loss"] for r in res]),
                         np.mean([r.get("seconds", 0) for r in res])))
    print("\n| model | setting | overrides | dev macro-F1 | dev acc | best epochs | last train loss | s/run |\n|---|---|---|---|---|---|---|---|")
    for m, name, kw, f, fs, a, be, tl, s in rows:
        print(f"| {m} | {name} | {kw} | {f:.2f} ± {fs:.2f} | {a:.2f} | {be} | {tl:.3f} | {s:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
