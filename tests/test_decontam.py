"""Decontamination (issue 27 part 2): the fine-tune task's dev/test texts never reach a pretraining run.

Real stages 01-04 with a real tokenizer, the real launch (gloo) and trainer; the checks decode the ids training reads.
Nothing mocked."""
import json
import re
from pathlib import Path

import numpy as np

from test_dedup import paragraphs, run_01_03, stage_cfg, write_book, write_task
from vertical_pretrain import pretraining_data
from vertical_pretrain.dataset import IndexedCorpus, corpus_prefix
from vertical_pretrain.decontam import run_reports, task_key, view_dir, without_contaminated
from vertical_pretrain.dedup import normalize_text
from vertical_pretrain.launch import main as launch_main
from vertical_pretrain.modeldir import load_tokenizer
from vertical_pretrain.pretrain import read_trainer_state
from vertical_pretrain.report import decontam_section
from vertical_pretrain.task import load_task

N = 13


def sentences(doc: str) -> list[str]:
    return [s for s in re.split(r"(?<=。)", doc.replace("\n", "")) if s]


def longest_sentence(doc: str) -> str:
    return max(sentences(doc), key=len)


def decoded(prefix, tok_dir) -> str:
    "The corpus at `prefix` as the normalised text its tokens spell (## marks dropped, [UNK] left out): what training reads."
    tok, c = load_tokenizer(tok_dir), IndexedCorpus(prefix)
    toks = tok.convert_ids_to_tokens(np.asarray(c.ids).tolist())
    return normalize_text("".join(x.removeprefix("##") for x in toks if x != tok.unk_token))


def shares_gram(text: str, corpus_norm: str, n: int = N) -> bool:
    t = normalize_text(text)
    return any(t[k:k + n] in corpus_norm for k in range(len(t) - n + 1))


def corpus_with_task(root: Path, tok_dir, docs, **over):
    """A corpus `c` of `docs` and a task whose test rows 0 and 1 are sentences of docs[3] and docs[7] (row 1 with two
    characters changed), dev row 0 a sentence of docs[12]; train row 0 a sentence of docs[20] (train is no contamination)."""
    s7 = longest_sentence(docs[7])
    edited = s7[:2] + "某" + s7[3:-3] + "某" + s7[-2:]
    task = write_task(root / "task", train=[(longest_sentence(docs[20]), "a"), ("训练集里的另一条文本，和语料无关", "b")],
                      dev=[(longest_sentence(docs[12]), "a"), ("开发集的一条文本，语料里没有这句话", "b")],
                      test=[(longest_sentence(docs[3]), "a"), (edited, "b"), ("测试集的一条文本，语料里也没有", "a")])
    cfg = stage_cfg(root, **{"finetune.task_dir": str(task), "pretraining_data.tokenizer_name_or_path": str(tok_dir),
                             "replay.enabled": False, "tapt.enabled": False, **over})
    write_book(cfg.paths.raw_dir / "book.txt", docs)
    run_01_03(cfg)
    return cfg


def test_contaminated_examples_are_cut_from_the_view_training_reads(tmp_path, char_tokenizer_dir):
    docs = paragraphs(30, 300)
    cfg = corpus_with_task(tmp_path, char_tokenizer_dir, docs)
    res = pretraining_data.run_stage(cfg, progress=False, log=None)
    rep = res["decontam"]
    assert rep["splits"]["test"]["overlapped"] == [0, 1] and rep["splits"]["dev"]["overlapped"] == [0]
    assert rep["splits"]["test"]["examples"] == 3 and rep["chars_removed"] > 0 and rep["action"] == "remove"
    plain, view = cfg.paths.ids_dir / "corpus", corpus_prefix(cfg)
    assert view == view_dir(cfg.paths.ids_dir, task_key(cfg)[0]) / "corpus" and view != plain
    task = load_task(cfg.finetune.task_dir)
    held_out = [r["text"] for s in ("dev", "test") for r in task[s]]
    before, after = decoded(plain, char_tokenizer_dir), decoded(view, char_tokenizer_dir)
    assert [shares_gram(t, before) for t in held_out] == [True, False, True, True, False]  # the leak, in stage 04's own ids
    assert not any(shares_gram(t, after) for t in held_out)  # none of it in the view
    assert shares_gram(task["train"][0]["text"], after)  # train text stays: TAPT and the domain may read it
    # the comparison report's verdict says so
    sec, verdict = decontam_section(run_reports(cfg))
    assert verdict == [f"2 of 3 test examples overlapped the domain corpus c; {rep['chars_removed']:,} characters were removed from it"]
    assert "## Decontamination" in sec and "2 of 3 test examples" in sec
    # a rerun with the same task skips; stage 04's own ids were never rewritten for the task
    again = pretraining_data.run_stage(cfg, progress=False, log=None)
    assert again["skipped"] and again["decontam"]["skipped"]
    # another run's task on the same corpus gets its own view beside the first; neither overwrites the other
    other = write_task(tmp_path / "task2", train=[("另一个任务的训练文本", "a")], dev=[("另一个任务的开发集文本", "a")],
                       test=[(longest_sentence(docs[25]), "a")])
    cfg2 = cfg.override({"finetune.task_dir": str(other)})
    first = Path(f"{view}_ids.npy").read_bytes()
    assert pretraining_data.run_stage(cfg2, progress=False, log=None)["decontam"]["splits"]["test"]["overlapped"] == [0]
    assert corpus_prefix(cfg2).parent != view.parent and corpus_prefix(cfg) == view
    assert Path(f"{view}_ids.npy").read_bytes() == first
    assert shares_gram(other_test := longest_sentence(docs[25]), after) and not shares_gram(other_test, decoded(corpus_prefix(cfg2), char_tokenizer_dir))


def test_drop_test_keeps_the_corpus_and_drops_the_examples(tmp_path, char_tokenizer_dir):
    docs = paragraphs(30, 300)
    cfg = corpus_with_task(tmp_path, char_tokenizer_dir, docs, **{"decontam.action": "drop_test"})
    rep = pretraining_data.run_stage(cfg, progress=False, log=None)["decontam"]
    assert rep["view"] is None and corpus_prefix(cfg) == cfg.paths.ids_dir / "corpus"
    keys = [k for _, _, r in run_reports(cfg) for k in r["overlap_keys"]]
    task = without_contaminated(load_task(cfg.finetune.task_dir), keys)
    assert [r["text"] for r in task["test"]] == ["测试集的一条文本，语料里也没有"] and len(task["dev"]) == 1
    assert task["contaminated"]["dropped"] == {"dev": [0], "test": [0, 1]}
    assert decontam_section(run_reports(cfg))[1] == ["2 of 3 test examples overlapped the domain corpus c; they were dropped from the test set"]
    # report only: a WARNING in the verdict, the corpus and the task both unchanged
    rcfg = cfg.override({"decontam.action": "report"})
    pretraining_data.run_stage(rcfg, progress=False, log=None)
    assert decontam_section(run_reports(rcfg))[1][0].startswith("WARNING: 2 of 3 test examples overlapped the domain corpus c and were kept")


def test_launch_checks_every_corpus_before_training(tmp_path, char_tokenizer_dir, capfd):
    """A blend of the domain corpus and a second corpus whose stage 04 ran with decontamination off (as the offline
    base's general corpus is made): the launch builds the second corpus's view first, and training reads the views."""
    docs = paragraphs(40, 300)
    over = {"paths.output_root": str(tmp_path / "out"), "base_model.enabled": False, "model.model_name_or_path": "",
            "data.num_workers": 0, "train.max_steps": 2, "train.eval_freq": 2, "train.logging_freq": 1}
    cfg = corpus_with_task(tmp_path, char_tokenizer_dir, docs[:30], **over)
    pretraining_data.run_stage(cfg, progress=False, log=None)
    g = cfg.override({"paths.corpus": "g", "decontam.enabled": False})
    write_book(g.paths.raw_dir / "g.txt", docs[30:] + [docs[12]])  # g holds dev row 0's document too
    run_01_03(g)
    pretraining_data.run_stage(g, progress=False, log=None)
    assert run_reports(cfg.override({"data.blend": ["0.5 c", "0.5 g"]}))[1][2] is None  # g not checked yet
    run = cfg.override({"data.blend": ["0.5 c", "0.5 g"]})
    path = run.save(tmp_path / "run.yaml")
    rc = launch_main(["--config", str(path), "--nproc", "1"])
    out = capfd.readouterr().out
    assert rc == 0, out[-3000:]
    assert "decontam: g: 1 of 2 dev examples" in out
    g_rep = run_reports(run)[1][2]
    assert g_rep["splits"]["dev"]["overlapped"] == [0] and g_rep["view"]
    dev0 = load_task(cfg.finetune.task_dir)["dev"][0]["text"]
    assert shares_gram(dev0, decoded(g.paths.ids_dir / "corpus", char_tokenizer_dir))
    assert not shares_gram(dev0, decoded(corpus_prefix(run, "g"), char_tokenizer_dir))
    state = read_trainer_state(run.paths.checkpoint_dir / "model_last")
    assert state["step"] == 2 and state["data"]["blend"] == ["0.5 c", "0.5 g"]
