"""Does the sentence-order head (SOP, `data.binary_head`) learn anything on our CPU budgets?

Not a speed benchmark (not in `make bench`): it reads the `metrics.jsonl` of finished pretraining runs and prints, per
run, the SOP loss of the train log and of every validation, against chance (ln 2 = 0.6931 nats: a head that always
says 50/50). A head that learned the task moves clearly below chance on the valid split; "no" means the SOP term only
added its gradient noise to these runs.

    python bench/sop_check.py output/demo_base output/demo [output/demo_replay ...]

Each run dir must hold `metrics.jsonl` (stage 05a / 06 / 06b). Rows: the first and last 10% of the logged train steps
(mean SOP loss), the best and the last validation, and the largest drop below chance seen on valid.
"""
import json
import math
import sys
from pathlib import Path

CHANCE = math.log(2)


def read(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try: out.append(json.loads(line))
        except json.JSONDecodeError: pass  # a torn last line of a killed run
    return out


def summary(run: Path) -> dict:
    recs = read(run / "metrics.jsonl")
    train = [r for r in recs if r.get("split") == "train" and "sop_loss" in r]
    valid = [r for r in recs if r.get("split") == "valid" and "sop_loss" in r and not r.get("corpus")]
    if not train: return {"run": run.name, "note": "no SOP loss logged (binary_head off?)"}
    k = max(1, len(train) // 10)
    mean = lambda rs: sum(r["sop_loss"] for r in rs) / len(rs)
    return {"run": run.name, "steps": train[-1]["step"], "train_first": mean(train[:k]), "train_last": mean(train[-k:]),
            "valid_best": min((r["sop_loss"] for r in valid), default=None),
            "valid_last": valid[-1]["sop_loss"] if valid else None, "n_valid": len(valid)}


def main(argv=None) -> int:
    runs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not runs:
        print(__doc__); return 2
    print(f"SOP loss in nats; chance = ln 2 = {CHANCE:.4f}\n")
    print("| run | steps | train SOP, first 10% | train SOP, last 10% | valid SOP, best | valid SOP, last | best valid below chance |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        s = summary(run)
        if "note" in s:
            print(f"| {s['run']} | | | | | | {s['note']} |"); continue
        f = lambda x: "-" if x is None else f"{x:.4f}"
        gap = "-" if s["valid_best"] is None else f"{CHANCE - s['valid_best']:+.4f}"
        print(f"| {s['run']} | {s['steps']} | {f(s['train_first'])} | {f(s['train_last'])} | {f(s['valid_best'])} | "
              f"{f(s['valid_last'])} | {gap} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
