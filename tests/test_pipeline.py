"The papermill runner: order, skipping, failure reporting and resume, on small real notebooks."
import json
from pathlib import Path

import nbformat
import pytest

from vertical_pretrain.config import get_config
from vertical_pretrain.docs import render_readme
from vertical_pretrain.pipeline import PipelineError, Stage, run_pipeline
from vertical_pretrain.config import project_root

PARAMS = 'profile = "demo"\nconfig_path = None\noverrides = {}'


def _stage_nb(path: Path, body: str):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# stage"), p, nbformat.v4.new_code_cell(
        "from vertical_pretrain.config import Config\ncfg = Config.load(config_path).override(overrides)"),
        nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def mini_pipeline(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    # each stage appends its key to a log file, so we can see which stages really ran
    log = tmp_path / "ran.log"
    body = "open({log!r}, 'a').write('{key}\\n')\n"
    _stage_nb(nbs / "01_a.ipynb", body.format(log=str(log), key="01"))
    _stage_nb(nbs / "02_b.ipynb", body.format(log=str(log), key="02") +
              "assert cfg.train.max_steps > 0, f'train.max_steps must be positive, got {cfg.train.max_steps}'\n")
    _stage_nb(nbs / "03_c.ipynb", body.format(log=str(log), key="03"))
    stages = [Stage("01", "01_a.ipynb", "a", ("pdf2text",)), Stage("02", "02_b.ipynb", "b", ("train",)),
              Stage("03", "03_c.ipynb", "c", ("finetune",))]
    cfg = get_config("smoke", {"paths.output_root": str(tmp_path / "out"), "paths.run_name": "t"})
    return nbs, stages, cfg, log


def _ran(log: Path):
    return log.read_text().split() if log.exists() else []


def test_runs_in_order_saves_config_and_skips_when_done(mini_pipeline):
    nbs, stages, cfg, log = mini_pipeline
    state = run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lambda *a: None)
    assert _ran(log) == ["01", "02", "03"]
    assert all(state[k]["status"] == "ok" for k in ("01", "02", "03"))
    run = cfg.paths.run_dir
    assert (run / "config.yaml").exists()
    assert sorted(p.name for p in (run / "notebooks").glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"]
    # the executed copy got the injected parameters
    executed = nbformat.read(str(run / "notebooks" / "02_b.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lambda *a: None)
    assert _ran(log) == ["01", "02", "03"], "a rerun with the same config must skip every stage"
    run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, force=True, from_stage="02", check=False, log=lambda *a: None)
    assert _ran(log) == ["01", "02", "03", "02", "03"]


def test_bad_parameter_stops_at_the_right_notebook_and_resume_skips_finished(mini_pipeline):
    nbs, stages, cfg, log = mini_pipeline
    bad = cfg.override({"train.max_steps": -1})
    with pytest.raises(PipelineError) as e:
        run_pipeline(bad, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lambda *a: None)
    msg = str(e.value)
    assert "02_b.ipynb" in msg and "train.max_steps must be positive" in msg and "cell [" in msg
    kept = bad.paths.run_dir / "notebooks" / "02_b.ipynb"
    assert kept.exists() and "AssertionError" in kept.read_text()
    state = json.loads((bad.paths.run_dir / "pipeline_state.json").read_text())
    assert state["02"]["status"] == "failed"
    assert _ran(log) == ["01", "02"]
    run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lambda *a: None)
    assert _ran(log) == ["01", "02", "02", "03"], "after the fix, stage 01 is not redone"


def test_cli_exits_nonzero_with_the_stage_named(mini_pipeline, capsys, monkeypatch):
    from vertical_pretrain import pipeline
    nbs, stages, cfg, log = mini_pipeline
    monkeypatch.setattr(pipeline, "STAGES", stages)
    monkeypatch.chdir(nbs.parent)
    monkeypatch.setenv("VERTICAL_PRETRAIN_ROOT", str(nbs.parent))
    rc = pipeline.main(["--profile", "smoke", "-p", "train.max_steps", "-3", "-p", "paths.output_root", str(nbs.parent / "out"),
                        "--no-progress", "--skip-check"])
    assert rc == 1
    assert "02_b.ipynb" in capsys.readouterr().err


def test_readme_is_generated_from_index_notebook():
    assert (project_root() / "README.md").read_text(encoding="utf-8") == render_readme()


def test_new_input_file_reruns_its_stage_and_the_stages_that_depend_on_it_only(mini_pipeline, tmp_path):
    "Inputs are fingerprinted by content; a stage reruns when a stage it depends on ran, not merely because it comes later."
    nbs, _, cfg, log = mini_pipeline
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.pdf").write_bytes(b"%PDF-1.4 book a")
    books = lambda c: sorted(raw.iterdir())
    stages = [Stage("01", "01_a.ipynb", "a", ("pdf2text",), (), books), Stage("02", "02_b.ipynb", "b", ("train",), ("01",)),
              Stage("03", "03_c.ipynb", "c", ("finetune",), ())]
    lines = []
    run = lambda: run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lines.append)
    run()
    assert _ran(log) == ["01", "02", "03"]
    run()
    assert _ran(log) == ["01", "02", "03"]
    (raw / "b.docx").write_bytes(b"PK another book")
    run()
    assert _ran(log) == ["01", "02", "03", "01", "02"], "03 does not read the books"
    assert any("inputs changed: 1 added (b.docx)" in l for l in lines) and any("upstream stage 01 ran since" in l for l in lines)
    import os
    os.utime(raw / "a.pdf", ns=(10**9, 10**9))  # a new mtime, same content: nothing to do
    run()
    assert _ran(log) == ["01", "02", "03", "01", "02"]
    (raw / "a.pdf").write_bytes(b"%PDF-1.4 book a, second edition")
    run()
    assert _ran(log)[-2:] == ["01", "02"] and any("1 changed (a.pdf)" in l for l in lines)


def test_missing_notebooks_are_an_error_before_any_stage_runs(mini_pipeline, tmp_path):
    nbs, stages, cfg, log = mini_pipeline
    (nbs / "03_c.ipynb").unlink()
    with pytest.raises(PipelineError, match="stage notebooks not found.*03_c.ipynb"):
        run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lambda *a: None)
    assert _ran(log) == []
