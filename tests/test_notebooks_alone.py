"""Each stage notebook runs on its own, as a learner or a papermill user runs it (issue 25, item 3).

On a fresh copy of the checkout (its tracked files, the package included, on PYTHONPATH), papermill runs a
stage notebook with only `-p profile smoke`, in the kernel its metadata names:
(a) with its prerequisites missing it fails in its first cells with one line naming the missing stages and the command,
    and nothing was created or deleted under data_file/ or output/;
(b) after that command, the same papermill call passes (02 after `--to 01`, 06 after `--to 05a`);
(c) then every other stage notebook, in the pipeline's order, runs alone the same way (the stages before it have run).
About 5 minutes on 2 cores: the smoke chain once, notebook by notebook, as a learner meets it; CI runs it.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vertical_pretrain.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    "A learner's fresh checkout: this working tree's tracked files (12 MB; the notebooks read tests/fixtures/), no output/."
    d = tmp_path_factory.mktemp("alone") / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, d / f)
    from jupyter_client.kernelspec import KernelSpecManager
    if "vertical_pretrain" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("the vertical_pretrain Jupyter kernel is not registered (make install registers it)")
    return d


def _env(clone):
    return {**os.environ, "VERTICAL_PRETRAIN_ROOT": str(clone), "PYTHONPATH": str(clone)}  # its own copy of the package


def _papermill(clone, nb, out):
    "papermill nbs/<nb> <out> -p profile smoke, in the kernel the notebook names: (exit code, stderr)."
    r = subprocess.run([sys.executable, "-m", "papermill", f"nbs/{nb}", str(out), "-p", "profile", "smoke",
                        "--no-progress-bar"], cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=600)
    return r.returncode, r.stderr


def _run(clone, command):
    "Run a `vertical-pretrain ...` command line as a learner would (through this Python)."
    argv = command.split()
    assert argv[0] == "vertical-pretrain", command
    r = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", *argv[1:], "--no-progress"], cwd=clone,
                       env=_env(clone), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _files(clone) -> dict:
    "Every file under data_file/ and output/ with its size and mtime."
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for top in ("data_file", "output")
            for p in (clone / top).rglob("*") if p.is_file()}


def _fails_first(clone, nb, tmp_path) -> str:
    "papermill `nb` fails with StagesMissing before touching any data; returns the command its one line names."
    before = _files(clone)
    rc, err = _papermill(clone, nb, tmp_path / nb)
    assert rc != 0
    lines = [l for l in err.splitlines() if l.startswith("StagesMissing: ")]
    assert len(lines) >= 1, err[-3000:]
    m = re.search(r"; run: (vertical-pretrain pipeline --profile smoke --to \w+)$", lines[-1])
    assert m, lines[-1]
    assert _files(clone) == before and not (clone / "output").exists()  # nothing deleted, nothing created
    return m.group(1)


def test_stage_notebooks_alone(clone, tmp_path):
    # (a) 04 and 06 on a fresh clone: one line with the command, before anything is deleted or started
    assert _fails_first(clone, "04_pretraining_data.ipynb", tmp_path) == "vertical-pretrain pipeline --profile smoke --to 03a"
    cmd06 = _fails_first(clone, "06_pretrain.ipynb", tmp_path)
    assert cmd06 == "vertical-pretrain pipeline --profile smoke --to 05a"
    # (b) 02: run what its box says, then the notebook alone with only -p profile smoke
    cmd02 = _fails_first(clone, "02_segment.ipynb", tmp_path)
    _run(clone, cmd02)
    rc, err = _papermill(clone, "02_segment.ipynb", tmp_path / "02.ipynb")
    assert rc == 0, err[-3000:]
    assert (clone / "data_file/debian_reference/seg/manifest_segment.json").is_file()  # 02 did its work (it used to do nothing)
    # (b) 06 after `--to 05a`: trains, and its launch cell shows the command and the steps, not the launcher's noise
    _run(clone, cmd06)
    rc, err = _papermill(clone, "06_pretrain.ipynb", tmp_path / "06.ipynb")
    assert rc == 0, err[-3000:]
    nb = nbformat.read(tmp_path / "06.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "launch_or_raise(cfg)" in c.source)
    shown = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert "$ " in shown and "LAUNCH INFO" not in shown and "Modified FLAGS" not in shown, shown
    log = (clone / "output/smoke/logs/launch.log").read_text(encoding="utf-8")
    assert "LAUNCH INFO" in log  # the log file keeps everything
    assert (clone / "output/smoke/checkpoints/model_last/model_state.pdparams").is_file()
    # (c) every other stage notebook alone, in order, with only -p profile smoke
    for st in STAGES:
        if st.notebook in ("02_segment.ipynb", "06_pretrain.ipynb"): continue
        rc, err = _papermill(clone, st.notebook, tmp_path / st.notebook)
        assert rc == 0, (st.notebook, err[-3000:])
    assert (clone / "output/smoke/finetune/comparison.md").is_file()  # 08 compared the models; 10 summed up after it
