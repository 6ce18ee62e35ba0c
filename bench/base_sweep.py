"""Dev-only search over the offline base model's pretraining settings (stage 05a), by validation MLM loss.

Each run trains the demo profile's base model (general corpus, from scratch, 2 gloo processes) in its own run dir
`output/exp_<name>/` with the given overrides and prints its valid MLM/SOP loss at every evaluation, next to the
unigram line of the corpus (the loss of a model that ignores context; see stage 05 `unigram_reference`).
Needs stages 03a/04 of the demo profile (run `make demo` or `vertical-pretrain pipeline --profile demo --to 05` first).

The runs behind the demo settings (bench/README.md), about 2.5-6 min each on 2 idle cores:
    C="train.eval_freq=50 model.hidden_dropout_prob=0 model.attention_probs_dropout_prob=0 data.max_seq_len=64 train.min_lr=1e-4"
    .venv/bin/python bench/base_sweep.py s64_lr1e3 train.max_steps=600 train.max_lr=1e-3 $C
    .venv/bin/python bench/base_sweep.py s64_lr2e3 train.max_steps=600 train.max_lr=2e-3 $C
    .venv/bin/python bench/base_sweep.py s64_lr1e3_gb16 train.max_steps=600 train.max_lr=1e-3 train.global_batch_size=16 train.micro_batch_size=8 $C
    .venv/bin/python bench/base_sweep.py s64_lr1e3_1500 train.max_steps=1500 train.max_lr=1e-3 $C
"""
import sys, time

from vertical_pretrain.config import base_config, get_config
from vertical_pretrain.launch import launch
from vertical_pretrain.pretrain import context_report, read_metrics


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        print(__doc__); return 2
    name, kv = argv[0], dict(a.split("=", 1) for a in argv[1:])
    model_keys = {k: v for k, v in kv.items() if k.startswith(("model.", "base_model."))}  # read before base_config
    b = base_config(get_config("demo", model_keys))
    b = b.override({"paths.run_name": f"exp_{name}", "train.save_steps": 10 ** 9,
                    **{k: v for k, v in kv.items() if k not in model_keys}})
    t0 = time.time()
    rc = launch(b, echo=lambda line: None)
    recs = read_metrics(b.paths.run_dir)
    val = [(r["step"], round(r["lm_loss"], 3), round(r["sop_loss"], 3)) for r in recs if r["split"] == "valid"]
    print(f"== {name}: exit {rc}, {time.time() - t0:.0f}s, {kv}\n   valid (step, MLM, SOP): {val}\n   {context_report(b.paths.run_dir)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
