"""Training never outlives what started it, and one checkpoint folder has one trainer (issue 28, part A).

Everything is real: the papermill pipeline and its kernel, `paddle.distributed.launch` with 2 gloo workers, the
`vertical-pretrain` command line, signals from the OS. Processes are found by the run's unique config path in their
command lines (/proc), the way a user would find them with `pgrep -f`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import REPO
from test_pretrain import SUBPROCESS_ENV, base_cfg, corpus_root  # noqa: F401 (corpus_root is a fixture)
from vertical_pretrain.pretrain import read_metrics, read_trainer_state

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc to find processes")


def procs_with(text: str) -> list[int]:
    "Pids of the live (not zombie) processes whose command line contains `text`, this test's process excluded."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid(): continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError: continue
        if text in cmd and state != "Z": out.append(int(d.name))
    return out


def workers_of(cfg) -> list[int]:
    "The training workers of a run (not its launcher, whose command line also names the worker module)."
    return [p for p in procs_with(f"vertical_pretrain.pretrain --config {cfg.paths.run_dir}")
            if b"paddle.distributed.launch" not in Path(f"/proc/{p}/cmdline").read_bytes()]


def wait_for(cond, timeout: float, what: str, proc=None):
    "Poll `cond()` every 0.1 s until it is truthy; fail naming `what` (and the stderr of `proc` if it ended)."
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v: return v
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended first (exit {proc.returncode}): {proc.stderr.read()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def last_step(cfg) -> int:
    st = cfg.paths.checkpoint_dir / "model_last" / "trainer_state.json"
    return read_trainer_state(st.parent)["step"] if st.is_file() else 0


def long_run(corpus_root, tok, name: str, steps: int = 100_000, nproc: int = 2):
    "A 2-process run that checkpoints every 2 steps and is far from done when it is killed; saved to <name>.yaml."
    cfg = base_cfg(corpus_root, tok, name, **{"train.max_steps": steps, "train.checkpoint_steps": 2, "train.save_steps": 0,
                                             "train.eval_freq": 0, "launch.nproc": nproc})
    return cfg, cfg.save(corpus_root / f"{name}.yaml")


def _stage_06_pipeline(tmp_path, cfg_path) -> list[str]:
    "`vertical-pretrain pipeline` over one stage notebook that launches the real 2-process training, as stage 06 does."
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nconfig_path = None\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from vertical_pretrain.config import Config\nfrom vertical_pretrain.launch import launch\n"
        "assert launch(Config.load(config_path)) == 0")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nbs / "06_t.ipynb"))
    script = tmp_path / "drive.py"
    script.write_text("import sys\nfrom vertical_pretrain import pipeline, stages\nfrom vertical_pretrain.stages import Stage\n"
                      "stages.STAGES[:] = [Stage('06', '06_t.ipynb', 'pretrain', ('train',))]\n"
                      f"sys.exit(pipeline.main(['--config', {str(cfg_path)!r}, '--skip-check', '--no-progress']))\n")
    return [sys.executable, str(script)]


@pytest.mark.timeout(600)
def test_kill_9_of_the_stage_kernel_ends_the_training_and_a_rerun_resumes_alone(corpus_root, char_tokenizer_dir, tmp_path):
    cfg, cfg_path = long_run(corpus_root, char_tokenizer_dir, "orphan", steps=60)
    cmd = _stage_06_pipeline(tmp_path, cfg_path)
    env = {**SUBPROCESS_ENV, "VERTICAL_PRETRAIN_ROOT": str(tmp_path)}
    p = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last_step(cfg) >= 4, 240, "the first checkpoints", p)
    assert len(workers_of(cfg)) == 2
    kernel = [k for k in procs_with("ipykernel_launcher") if f"{p.pid}" == (Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[1])]
    assert len(kernel) == 1, kernel
    killed_at = last_step(cfg)
    os.kill(kernel[0], signal.SIGKILL)  # what the out-of-memory killer does
    out, err = p.communicate(timeout=120)
    t_end = time.time()
    # every training process ends within seconds: the launcher and both workers (and nothing else of this run)
    wait_for(lambda: not procs_with(str(cfg.paths.run_dir)), 10, "the training processes to end")
    assert time.time() - t_end < 10
    assert p.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "stage 06 (06_t.ipynb): its kernel was killed by SIGKILL (by the OS's out-of-memory killer?" in lines[0]
    assert f"kernel log: {cfg.paths.run_dir / 'logs' / 'kernel_06.log'}" in lines[0]
    assert "no training process it started is left running" in lines[0] and "resume with: vertical-pretrain pipeline" in lines[0]
    state = json.loads((cfg.paths.run_dir / "pipeline_state.json").read_text())
    assert state["06"]["status"] == "failed" and state["06"]["error"] == "the kernel was killed by SIGKILL"
    stopped_at = last_step(cfg)
    assert killed_at <= stopped_at < 60, "the killed run trained on"
    time.sleep(3)
    assert last_step(cfg) == stopped_at, "a checkpoint was written after the pipeline ended"
    # a rerun at once resumes alone and finishes; each step is logged by one trainer only
    rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {cfg.paths.checkpoint_dir / 'model_last'} at step {stopped_at}" in rerun.stdout
    assert last_step(cfg) == 60
    steps = [r["step"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"]
    assert steps == list(range(1, 61)), steps


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_the_pretrain_command_ends_its_workers(corpus_root, char_tokenizer_dir, sig):
    cfg, cfg_path = long_run(corpus_root, char_tokenizer_dir, f"term_{sig.name}")
    p = subprocess.Popen([sys.executable, "-m", "vertical_pretrain.cli", "pretrain", "--config", str(cfg_path)],
                         env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last_step(cfg) >= 2, 240, "the first checkpoint", p)
    assert len(workers_of(cfg)) == 2
    p.send_signal(sig)  # as a batch scheduler (SIGTERM) or a closed terminal (SIGHUP) sends it: to this process only
    p.wait(timeout=30)
    wait_for(lambda: not procs_with(str(cfg.paths.run_dir)), 10, "the launcher and the workers to end")
    step = last_step(cfg)
    time.sleep(2)
    assert last_step(cfg) == step < 100_000


@pytest.mark.timeout(400)
def test_a_second_trainer_on_the_same_run_dir_refuses_with_the_live_pid(corpus_root, char_tokenizer_dir):
    cfg, cfg_path = long_run(corpus_root, char_tokenizer_dir, "twice", nproc=1)
    first = subprocess.Popen([sys.executable, "-m", "vertical_pretrain.pretrain", "--config", str(cfg_path)],
                             env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: last_step(cfg) >= 2, 240, "the first trainer's checkpoint", first)
        # through the command line (refused before any process starts) ...
        cli = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "pretrain", "--config", str(cfg_path)],
                             env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2, cli.stdout + cli.stderr
        line = [l for l in cli.stdout.splitlines() if "is locked by" in l]
        assert len(line) == 1 and f"is locked by pid {first.pid} (" in line[0], cli.stdout
        assert "another trainer is writing this run's checkpoints" in line[0]
        # ... and a worker started by hand, past the launcher: the trainer's own lock
        direct = subprocess.run([sys.executable, "-m", "vertical_pretrain.pretrain", "--config", str(cfg_path)],
                                env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
        assert direct.returncode == 3 and f"is locked by pid {first.pid} (" in direct.stderr, direct.stderr[-2000:]
        assert "Traceback" not in direct.stderr
        assert first.poll() is None, "the first trainer must be left alone"
    finally:
        first.kill(); first.wait()
    steps = [r["step"] for r in read_metrics(cfg.paths.run_dir) if r["split"] == "train"]
    assert steps == list(range(1, len(steps) + 1)), "only the first trainer logged steps"


@pytest.mark.timeout(300)
def test_a_trainer_started_by_hand_outlives_its_shell(corpus_root, char_tokenizer_dir):
    "`nohup python -m vertical_pretrain.pretrain ... &`, then the shell ends: only launched workers die with their parent."
    cfg, cfg_path = long_run(corpus_root, char_tokenizer_dir, "by_hand", nproc=1)
    shell = subprocess.Popen(["bash", "-c", f"nohup {sys.executable} -m vertical_pretrain.pretrain --config {cfg_path} "
                              ">/dev/null 2>&1 & echo $!; sleep 600"], env=SUBPROCESS_ENV, stdout=subprocess.PIPE, text=True)
    pid = int(shell.stdout.readline())
    try:
        wait_for(lambda: last_step(cfg) >= 2, 240, "the trainer's first checkpoint")  # it is running, under its shell
        shell.kill(); shell.wait()  # the terminal closes
        time.sleep(3)
        assert pid in procs_with(str(cfg_path)), "a trainer the user started by hand was killed with its shell"
    finally:
        os.kill(pid, signal.SIGKILL)
