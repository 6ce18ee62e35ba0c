"""SHA-256 of a pipeline run's artifacts, to show that a refactor changed no behaviour (developer tool).

Usage: python tools/run_digest.py --profile smoke [--set key=value ...] > before.json ; ... ; diff before.json after.json

Covers every corpus folder the run wrote (text/, seg/, jsonl/, ids/ incl. the cached index maps; manifests and logs
excluded: they hold times and absolute paths) and the losses of every run dir's metrics.jsonl (exact floats: compare
on the same machine)."""
import argparse
import hashlib
import json
import sys
from pathlib import Path

from vertical_pretrain.config import add_config_args, config_from_args, resolve_path

KINDS = ("text", "seg", "jsonl", "ids")
SKIP = ("manifest_", ".lock")


def digest_tree(folder: Path) -> dict:
    "{relative path: sha256} of the data files below `folder` (manifests and lock files skipped)."
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith(SKIP) and not any(s.startswith(".") for s in p.relative_to(folder).parts):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_losses(metrics: Path) -> list:
    "[(split, corpus, step, loss, lm_loss, sop_loss)] of a metrics.jsonl, timing fields dropped."
    rows = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append([r.get("split"), r.get("corpus"), r.get("step"), r.get("loss"), r.get("lm_loss"), r.get("sop_loss"),
                     r.get("unigram_lm_loss")])
    return rows


def main(argv=None) -> int:
    p = add_config_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    cfg = config_from_args(p.parse_args(argv))
    data_root, out_root = resolve_path(cfg.paths.data_root), resolve_path(cfg.paths.output_root)
    res = {"corpora": {}, "losses": {}}
    for corpus in sorted(d for d in data_root.iterdir() if d.is_dir()):
        for kind in KINDS:
            if (corpus / kind).is_dir(): res["corpora"][f"{corpus.name}/{kind}"] = digest_tree(corpus / kind)
    for m in sorted(out_root.rglob("metrics.jsonl")):
        res["losses"][str(m.parent.relative_to(out_root))] = run_losses(m)
    json.dump(res, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
