"""The whole chain on the smoke profile, through papermill, exactly as `make demo` runs it (smaller numbers):
every stage notebook, 2-process data parallelism on CPU, export, fine-tune comparison, summary; then the docs."""
import json
from pathlib import Path

import numpy as np
import pytest

from vertical_pretrain.config import base_model_dir, get_config
from vertical_pretrain.pipeline import STAGES, build_docs, run_pipeline

REPO = Path(__file__).resolve().parents[1]
PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = get_config("smoke", {"paths.data_root": str(tmp / "data"), "paths.output_root": str(tmp / "out"),
                               "pdf2text.input_path": str(PDF)})
    logs = []
    state = run_pipeline(cfg, progress=False, log=logs.append)
    return cfg, state, logs


def test_every_stage_ran_ok(smoke_run):
    cfg, state, logs = smoke_run
    for st in STAGES:
        assert state.get(st.key, {}).get("status") == "ok", (st.notebook, state.get(st.key), "\n".join(logs[-5:]))
        assert (cfg.paths.notebooks_dir / st.notebook).exists()
    assert (cfg.paths.run_dir / "config.yaml").exists()
    assert any("wall time" in line for line in logs)


def test_artifacts_follow_the_contracts(smoke_run):
    cfg, _, _ = smoke_run
    p = cfg.paths
    text = next(p.text_dir.glob("*.txt")).read_text(encoding="utf-8")
    assert "\n\n" in text, "documents are separated by blank lines"
    seg = next(p.seg_dir.glob("*.txt")).read_text(encoding="utf-8")
    assert seg.count("\n\n") == text.count("\n\n"), "segmentation keeps the document structure"
    first = json.loads(next(p.jsonl_dir.glob("*.jsonl")).open(encoding="utf-8").readline())
    assert set(first) == {"text"}
    prefix = p.ids_dir / cfg.pretraining_data.output_prefix
    ids = np.load(f"{prefix}_ids.npy")
    idx = np.load(f"{prefix}_idx.npz")
    assert idx["docs"][0] == 0 and idx["docs"][-1] == len(idx["lens"]) and idx["lens"].sum() == len(ids)
    assert list(p.ids_dir.glob("*_train_indexmap_*mns_*msl_*ssp_*s.npy"))


def test_two_process_training_logged_and_checkpointed(smoke_run):
    cfg, _, _ = smoke_run
    run = cfg.paths.run_dir
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in rows if r.get("split", "train") == "train"]
    assert max(r["step"] for r in train) == cfg.train.max_steps
    assert any(r.get("split") == "valid" for r in rows)
    logs = list((run / "logs").glob("workerlog.*"))
    assert len(logs) == cfg.launch.nproc == 2, "stage 06 runs 2 data-parallel processes"
    assert (cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json").exists()


def test_models_exported_and_compared(smoke_run):
    cfg, _, _ = smoke_run
    from paddlenlp.transformers import AutoModel, AutoTokenizer
    assert (base_model_dir(cfg) / "config.json").exists()
    exported = sorted(cfg.paths.run_dir.glob("model_ernie_*"))
    assert exported, "stage 07 exports the domain model"
    AutoModel.from_pretrained(str(exported[-1])); AutoTokenizer.from_pretrained(str(exported[-1]))
    cmp_dir = cfg.paths.run_dir / "finetune"
    md = (cmp_dir / "comparison.md").read_text(encoding="utf-8")
    rows = [l.split("|")[1].strip() for l in md.splitlines() if l.startswith("| ") and not l.startswith("| model")]
    assert rows == ["base", "domain", "tapt", "random-init", "char 1-3-gram TF-IDF + logistic regression", "majority class"], rows  # smoke turns stage 07a (TAPT) on
    assert "## Verdict" in md
    from vertical_pretrain.tapt import tapt_run_dir
    tapt = sorted(tapt_run_dir(cfg).glob("model_ernie_*"))  # stage 07a's export
    assert tapt and json.loads((tapt[-1] / "config.json").read_text())["architectures"] == ["ErnieForPretraining"]
    assert (cmp_dir / "comparison.png").stat().st_size > 0


def test_docs_from_the_executed_course_render(smoke_run, tmp_path):
    from browser import CHROMIUM, Page, page_report
    if CHROMIUM is None: pytest.skip("Debian's chromium is not installed")
    cfg, _, _ = smoke_run
    index = build_docs(tmp_path / "_docs", run_dir=cfg.paths.run_dir)
    shots = Path(__file__).parent / "artifacts"; shots.mkdir(exist_ok=True)
    with Page() as page:
        page.goto(index.as_uri())
        links = page_report(page)["links"]
        for st in STAGES:
            assert Path(st.notebook).with_suffix(".html").name in links
        page.goto((index.parent / "06_pretrain.html").as_uri(), settle=1.0)
        rep = page_report(page)
        assert rep["images"] and all(i["w"] > 100 for i in rep["images"]), "the loss curves render"
        page.screenshot(shots / "e2e_06_pretrain.png")
