"The papermill runner: order, skipping, failure reporting and resume, on small real notebooks."
import json
from pathlib import Path

import nbformat
import pytest

from vertical_pretrain.config import get_config
from vertical_pretrain.docs import render_readme
from vertical_pretrain.pipeline import PipelineError, run_pipeline
from vertical_pretrain.stages import Stage
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


def test_a_shared_data_folder_rewritten_by_another_run_reruns_the_stage_that_made_it(mini_pipeline, tmp_path):
    "Issue: a smoke run rewrote data_file/general, and the demo run then read it as if it were its own."
    nbs, _, cfg, log = mini_pipeline
    shared = tmp_path / "general" / "manifest_general_corpus.json"
    shared.parent.mkdir()
    shared.write_text('{"params": {"general_max_lines": 0}, "finished_at": "then"}')
    stages = [Stage("01", "01_a.ipynb", "a", ("pdf2text",), (), None, lambda c: [shared]),
              Stage("02", "02_b.ipynb", "b", ("train",), ("01",)), Stage("03", "03_c.ipynb", "c", ("finetune",), ())]
    lines = []
    run = lambda: run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False, log=lines.append)
    run(); run()
    assert _ran(log) == ["01", "02", "03"]
    shared.write_text('{"params": {"general_max_lines": 3000}, "finished_at": "now"}')  # another profile's run
    run()
    assert _ran(log) == ["01", "02", "03", "01", "02"]
    assert any("rewritten by another run" in l and "general_max_lines=3000" in l for l in lines), lines


def _slow_stage_cli(mini_pipeline, tmp_path, stage_02_body: str):
    """`vertical-pretrain pipeline` over the mini notebooks (pipeline.main in a script, as a user's shell runs it),
    with stage 02 replaced by `stage_02_body`. Returns (command, env, cwd, log)."""
    import os, sys
    nbs, _, _, log = mini_pipeline
    (nbs / "02_b.ipynb").unlink()
    _stage_nb(nbs / "02_b.ipynb", f"open({str(log)!r}, 'a').write('02\\n')\n" + stage_02_body)
    stages = ('[Stage("01", "01_a.ipynb", "a", ("pdf2text",)), Stage("02", "02_b.ipynb", "b", ("train",)), '
              'Stage("03", "03_c.ipynb", "c", ("finetune",))]')
    argv = ["--profile", "smoke", "-p", "paths.output_root", str(tmp_path / "out"), "-p", "paths.run_name", "t",
            "--skip-check", "--no-progress"]
    script = tmp_path / "drive.py"
    script.write_text("import sys\nfrom vertical_pretrain import pipeline, stages\nfrom vertical_pretrain.stages import Stage\n"
                      f"stages.STAGES[:] = {stages}\n"
                      f"sys.exit(pipeline.main({argv!r}))\n", encoding="utf-8")
    return [sys.executable, str(script)], {**os.environ, "VERTICAL_PRETRAIN_ROOT": str(nbs.parent)}, nbs.parent, log


def _terminal_sigint():
    """In the child: SIGINT's default disposition, as a terminal user's shell gives it. A test run started as a background
    job of a non-interactive shell (CI scripts do this) inherits SIGINT ignored, and the child would never see Ctrl-C."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_foreign_python3_kernelspec_does_not_matter_and_a_kernel_that_dies_is_one_line(
        mini_pipeline, foreign_python3_kernel, monkeypatch):
    from vertical_pretrain.pipeline import KernelDied
    nbs, stages, cfg, log = mini_pipeline
    monkeypatch.setenv("JUPYTER_PATH", foreign_python3_kernel)
    run_pipeline(cfg, nbs_dir=nbs, stages=stages, progress=False, check=False)  # pipeline.kernel "": this Python
    assert _ran(log) == ["01", "02", "03"]
    with pytest.raises(KernelDied) as e:  # a user who names that kernel: the cause in one line, not in the kernel log
        run_pipeline(cfg.override({"pipeline.kernel": "python3"}), nbs_dir=nbs, stages=stages, force=True, progress=False,
                     check=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("stage 01 (01_a.ipynb): its kernel exited with status 1")
    assert "No module named ipykernel_launcher" in msg and "kernel_01.log" in msg
    state = json.loads((cfg.paths.run_dir / "pipeline_state.json").read_text())
    assert state["01"]["status"] == "failed"


def test_a_second_pipeline_on_the_same_run_fails_fast_and_the_first_finishes(mini_pipeline, tmp_path):
    import subprocess, time
    cmd, env, cwd, log = _slow_stage_cli(mini_pipeline, tmp_path, "import time; time.sleep(6)\n")
    first = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "02" not in _ran(log):
        assert first.poll() is None, first.communicate()
        time.sleep(0.2)
    t0 = time.time()
    second = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    assert second.returncode == 1 and time.time() - t0 < 20
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and f"is locked by pid {first.pid}" in err[0] and "drive.py" in err[0] and " since " in err[0], err
    out, errs = first.communicate(timeout=120)
    assert first.returncode == 0, errs
    assert _ran(log) == ["01", "02", "03"]
    state = json.loads((tmp_path / "out" / "t" / "pipeline_state.json").read_text())
    assert all(state[k]["status"] == "ok" for k in ("01", "02", "03"))


_SLEEPING_STAGE = "import time\nfor _ in range(600): time.sleep(0.1)\n"
# what stage 08 does: worker processes (fine-tune runs in a process pool) busy when Ctrl-C comes
_POOL_STAGE = ("import sys, time\nfrom concurrent.futures import ProcessPoolExecutor\nfrom tqdm.auto import tqdm\n"
               "ex = ProcessPoolExecutor(2); futs = [ex.submit(time.sleep, 60) for _ in range(2)]\n"
               "for i in tqdm(range(10 ** 6), mininterval=0): print(i, file=sys.stderr if i % 2 else sys.stdout); time.sleep(0.001)\n")

@pytest.mark.parametrize("body", [_SLEEPING_STAGE, _POOL_STAGE], ids=["sleeping", "process-pool"])
def test_ctrl_c_stops_with_one_line_exit_130_and_marks_the_stage(mini_pipeline, tmp_path, body):
    import os, signal, subprocess, time
    cmd, env, cwd, log = _slow_stage_cli(mini_pipeline, tmp_path, body)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        log.unlink(missing_ok=True)
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=_terminal_sigint)
        while "02" not in _ran(log):
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        t0 = time.time()
        os.killpg(p.pid, sig)  # what Ctrl-C in a terminal does: the whole process group
        out, err = p.communicate(timeout=30)
        assert p.returncode == code and time.time() - t0 < 15, (p.returncode, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"interrupted in stage 02 (02_b.ipynb) by {signal.Signals(sig).name}" in err
        assert "Resume with: vertical-pretrain pipeline --profile smoke" in err
        state = json.loads((tmp_path / "out" / "t" / "pipeline_state.json").read_text())
        assert state["02"]["status"] == "interrupted" and "03" not in _ran(log)
        time.sleep(1)
        alive = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout.split()
        assert alive == [], f"processes of the run still alive: {alive}"


def test_another_profile_rewriting_the_general_corpus_is_detected_and_rebuilt(tmp_path):
    "Issue 19: a smoke run after a demo run rewrote data_file/general; the demo's next run must rebuild, not read it."
    from vertical_pretrain.stages import STAGES
    common = {"paths.data_root": str(tmp_path / "data"), "paths.output_root": str(tmp_path / "out"),
              "vocab.vocab_size": 800}
    demo = get_config("smoke", {**common, "paths.run_name": "demo_like", "vocab.general_max_lines": 300})
    smoke = get_config("smoke", {**common, "paths.run_name": "smoke_like", "vocab.general_max_lines": 120})
    manifest = tmp_path / "data" / "general" / "text" / "manifest_general_corpus.json"
    run = lambda c, lines: run_pipeline(c, from_stage="03a", to_stage="03a", progress=False, check=False, log=lines.append)
    first, second, third = [], [], []
    run(demo, first)
    assert json.loads(manifest.read_text())["params"]["general_max_lines"] == 300
    run(smoke, second)  # the other profile's run rewrites the shared general corpus with its own settings
    assert json.loads(manifest.read_text())["params"]["general_max_lines"] == 120
    state = run(demo, third)
    assert state["_last_run_stages"] == ["03a"]
    assert any("rewritten by another run" in l and "general_max_lines=120" in l for l in third), third
    assert json.loads(manifest.read_text())["params"]["general_max_lines"] == 300  # rebuilt with this run's settings


def test_a_fresh_run_knows_the_folders_it_will_write_before_anything_exists(tmp_path):
    "The locks are taken before stage 01: nothing (no domain model for TAPT, no corpus) may be required to name them."
    from vertical_pretrain.pipeline import locked_dirs
    from vertical_pretrain.stages import STAGES
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.output_root": str(tmp_path / "out"),
                               "paths.corpus": "my_books"})
    got = [str(p.relative_to(tmp_path)) for p in locked_dirs(cfg, STAGES)]
    assert got == ["data/general", "data/manpages_tapt", "data/my_books", "out/smoke", "out/smoke_base", "out/smoke_replay",
                   "out/smoke_tapt"]
    off = cfg.override({"tapt.enabled": False})  # TAPT off: its folders are neither locked nor created
    assert [str(p.relative_to(tmp_path)) for p in locked_dirs(off, STAGES)] == ["data/general", "data/my_books", "out/smoke",
                                                                              "out/smoke_base", "out/smoke_replay"]
    off = off.override({"replay.enabled": False})  # replay (06b) off: nor is its run dir
    assert [str(p.relative_to(tmp_path)) for p in locked_dirs(off, STAGES)] == ["data/general", "data/my_books", "out/smoke",
                                                                              "out/smoke_base"]


def test_resume_lines_say_where_training_started_and_why_it_started_over(tmp_path):
    "The pipeline log repeats the trainer's resume point, and a restart from step 0 with the reason (issue 12 leftover)."
    from vertical_pretrain.pipeline import resume_lines
    moved = ("/x/vertical_pretrain/pretrain.py:447: UserWarning: the checkpoint was trained with another recipe "
             "(data.corpus_sha256: 'aa' -> 'bb'); the old checkpoints (1.2 GB) were moved to "
             "/o/demo/checkpoints.config-changed-20261130-0700 and training starts from step 0; delete that folder when you no "
             "longer need them")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("train()", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=" > resuming from /o/demo/checkpoints/model_last at step 50; 2 process(es)\n"),
        # Python echoes the warning's source line after it: not a second message
        nbformat.v4.new_output("stream", name="stderr", text=moved + "\n  warnings.warn(f\"{stale}; the old checkpoints "
                               "({fmt_bytes(dir_bytes(aside))}) were moved to {aside} and training \"\n"),
        nbformat.v4.new_output("stream", name="stdout", text=" > removed model_100, model_150 (train.save_total_limit=2 keeps "
                               "the newest model_<step>/)\n"),
        nbformat.v4.new_output("stream", name="stdout", text="unrelated line\n$ python -m paddle.distributed.launch ...\n"
                               "train.max_steps=auto -> 15 = ceil(2 epochs x 58 train samples per epoch / global batch 8)\n")])])
    path = tmp_path / "06.ipynb"
    nbformat.write(nb, str(path))
    assert resume_lines(path) == [
        "resuming from /o/demo/checkpoints/model_last at step 50",
        "the checkpoint was trained with another recipe (data.corpus_sha256: 'aa' -> 'bb'); the old checkpoints (1.2 GB) "
        "were moved to /o/demo/checkpoints.config-changed-20261130-0700 and training starts from step 0; delete that folder "
        "when you no longer need them",
        "removed model_100, model_150 (train.save_total_limit=2 keeps the newest model_<step>/)",
        "train.max_steps=auto -> 15 = ceil(2 epochs x 58 train samples per epoch / global batch 8)"]
    nbformat.write(nbformat.v4.new_notebook(), str(path))
    assert resume_lines(path) == []
