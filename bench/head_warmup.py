"""Does a random MLM head hurt continued pretraining, and does head warm-up help? (issue 26, part 4)

The released `ernie-3.0-medium-zh` weights lack the MLM head's transform layer and the SOP head (PaddleNLP #2049), so
`from_pretrained` starts those at random in front of a pretrained encoder. This runs the demo's own question offline:

- (a) the demo's offline base as it is (every head loaded): today's continued pretraining;
- (b) the same base with the heads a release lacks removed (`standin.release_like(..., "medium-release")`), no warm-up
  (`train.head_warmup_steps=0`);
- (c) that released-like base with head warm-up (`train.head_warmup_steps=auto`).

Each continues pretraining on the demo book with the run's own settings (stage 06, 2 processes), is exported (07),
then all three and the base are evaluated the way stages 07b and 08 do: held-out MLM loss on domain and general text
with 95% bootstrap CIs (paired deltas against the base), a linear probe (frozen mean-pooled features, logistic
regression), and the fine-tune comparison over `finetune.seeds` seeds.

    python bench/head_warmup.py --profile demo            # after `vertical-pretrain pipeline --profile demo --to 05a`
    python bench/head_warmup.py --profile smoke           # the same in about two minutes, for a quick look

Writes `output/<profile>_head_warmup/`: the three runs, `adaptation/`, `finetune/` and `head_warmup.md` (the table
below plus both reports). Not a timing benchmark: it is not part of `make bench`.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from vertical_pretrain import export
from vertical_pretrain.config import add_config_args, base_model_dir, base_tokenizer_dir, config_from_args, resolve_path
from vertical_pretrain.evaluate_mlm import _fmt as value_ci  # 07b's 'value [lo, hi]' cell
from vertical_pretrain.evaluate_mlm import default_corpora, run_evaluation
from vertical_pretrain.finetune import compare
from vertical_pretrain.launch import launch
from vertical_pretrain.modeldir import WEIGHTS_NAME, audit_line, audit_start_model, load_weights
from vertical_pretrain.stages import require_stages
from vertical_pretrain.standin import release_like

VARIANTS = {  # name: (start from the released-like base?, train.head_warmup_steps)
    "a_heads_loaded": (False, "auto"),  # auto is off here: the audit finds every head loaded
    "b_release_no_warmup": (True, 0),
    "c_release_warmup": (True, "auto"),
}


def released_like(base: Path, out: Path) -> Path:
    "A copy of the model dir `base` whose weights have the key set of the released medium model (no MLM transform, no SOP head)."
    if (out / WEIGHTS_NAME).is_file(): return out
    import paddle
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp)
    weights, _ = load_weights(base / WEIGHTS_NAME)
    paddle.save({k: paddle.to_tensor(v) for k, v in release_like(weights, "medium-release").items()}, str(tmp / WEIGHTS_NAME))
    tmp.rename(out)
    return out


def start_loss(run_dir: Path):
    "The step-0 valid MLM loss of the start model (`<run>/start_model.json`, written before step 1); None if absent."
    f = run_dir / "start_model.json"
    loss = json.loads(f.read_text(encoding="utf-8")).get("start_loss") if f.is_file() else None
    return loss["valid_lm_loss"] if loss else None


def last_valid_loss(run_dir: Path):
    recs = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    valid = [r for r in recs if r.get("split") == "valid" and not r.get("corpus") and r.get("step", 0) > 0]
    return valid[-1].get("lm_loss", valid[-1].get("loss")) if valid else None


def main(argv=None) -> int:
    p = add_config_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--out", default=None, help="default output/<profile>_head_warmup")
    a = p.parse_args(argv)
    cfg = config_from_args(a)
    require_stages("06", cfg)  # the book's ids and the offline base of this profile
    out = resolve_path(a.out) if a.out else resolve_path(cfg.paths.output_root) / f"{cfg.profile}_head_warmup"
    out.mkdir(parents=True, exist_ok=True)
    base = base_model_dir(cfg)
    released = released_like(base, out / "base_medium_release")
    print("base:", audit_line(audit_start_model(base), "base"))
    print("released-like:", audit_line(audit_start_model(released), "released-like"))
    t0, models, runs = time.time(), {"base": str(base)}, {}
    for name, (rel, warm) in VARIANTS.items():
        vcfg = cfg.override({"paths.output_root": str(out), "paths.run_name": name,
                             "model.model_name_or_path": str(released if rel else base),
                             "pretraining_data.tokenizer_name_or_path": str(base_tokenizer_dir(cfg)),  # the book's ids as they are
                             "train.head_warmup_steps": warm})
        print(f"== {name}: start {vcfg.model.model_name_or_path}, train.head_warmup_steps={warm}", flush=True)
        if launch(vcfg) != 0: print(f"{name}: pretraining failed; see {vcfg.paths.run_dir / 'logs'}"); return 1
        models[name] = export.run_stage(vcfg)["model_dir"]
        runs[name] = vcfg.paths.run_dir
    adapt = run_evaluation(models, default_corpora(cfg), out / "adaptation", tokenizer=str(base_tokenizer_dir(cfg)),
                           data_cfg=cfg.data, ecfg=cfg.evaluate, reference="base")
    ft = compare(models, resolve_path(cfg.finetune.task_dir), out / "finetune", seeds=cfg.finetune.seeds, fcfg=cfg.finetune)
    P = ft["primary"]
    rows = {(r["model"], r["corpus"]): r for r in adapt["rows"] if r["kind"] == "mlm"}
    head = (f"| model | start valid loss | last valid loss | held-out domain loss [95% CI] | held-out general loss [95% CI] | "
            f"linear probe test {P} | fine-tune test {P} |\n|---|---|---|---|---|---|---|\n")
    fmt = lambda x: "–" if x is None else f"{x:.3f}"
    lines = []
    for name in models:
        m, probe, run = ft["models"][name], (ft.get("probe") or {}).get(name), runs.get(name)
        cells = [name, fmt(start_loss(run)) if run else "–", fmt(last_valid_loss(run)) if run else "–",
                 value_ci(rows.get((name, "domain"), {}).get("loss")), value_ci(rows.get((name, "general"), {}).get("loss")),
                 f"{probe['test'][P] * 100:.2f}" if probe else "–",
                 f"{m[f'test_{P}_mean'] * 100:.2f} ± {(m[f'test_{P}_std'] or 0) * 100:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = head + "\n".join(lines) + "\n"
    cmd = "python bench/head_warmup.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = (f"# Head warm-up: the demo base with and without its pretraining heads\n\n`{cmd}` ({time.time() - t0:.0f} s)\n\n"
          f"{table}\n## Held-out MLM (07b)\n\n{(out / 'adaptation' / 'adaptation.md').read_text(encoding='utf-8')}\n"
          f"\n## Fine-tune comparison (08)\n\n{(out / 'finetune' / 'comparison.md').read_text(encoding='utf-8')}")
    (out / "head_warmup.md").write_text(md, encoding="utf-8")
    print(table)
    print(f"-> {out / 'head_warmup.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
