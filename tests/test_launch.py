"""Stage 06a: the launch command on GPUs and several machines, checked against Paddle's own launcher code (no GPU needed),
and a real 2-node rendezvous on this machine (CPU, gloo)."""
import numpy as np
import pytest

from vertical_pretrain.config import get_config
from vertical_pretrain.launch import build_launch_command
from test_pretrain import corpus_root  # noqa: F401 (fixture: a tokenized People's Daily corpus in the stage-04 format)


def paddle_selected_devices(cmd, visible: str) -> list[str]:
    "What `paddle.distributed.launch` makes of our `--devices` under `CUDA_VISIBLE_DEVICES=visible` (its own code)."
    from paddle.distributed.launch.context.device import Device
    dev = Device()
    dev.labels = visible  # as Device.parse_device() sets them from CUDA_VISIBLE_DEVICES
    return dev.get_selected_devices(cmd[cmd.index("--devices") + 1])


def test_devices_index_within_a_foreign_cuda_visible_devices(monkeypatch):
    "Defect 5 (issue 18): a scheduler gave GPUs 4-7; launch.devices 0,1,2,3 are those four, and the variable is kept."
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    full = get_config("full")
    cmd = build_launch_command(full, "run.yaml", python="python")
    assert paddle_selected_devices(cmd, "4,5,6,7") == ["0", "1", "2", "3"]  # was ValueError: '0' is not in list
    two = build_launch_command(full.override({"launch.devices": "2,3"}), "run.yaml", python="python")
    assert paddle_selected_devices(two, "4,5,6,7") == ["2", "3"]
    with pytest.raises(ValueError, match=r"launch.devices='4,5'.*CUDA_VISIBLE_DEVICES='4,5,6,7'.*--set launch.devices=0,1,2,3"):
        build_launch_command(full.override({"launch.devices": "4,5"}), "run.yaml")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert paddle_selected_devices(build_launch_command(full, "run.yaml"), "0,1,2,3,4,5,6,7") == ["0", "1", "2", "3"]


def test_deterministic_flags_only_when_asked():
    "Defect 10 (issue 18): bit-exact GPU runs need cuDNN's and the embedding's deterministic kernels."
    from vertical_pretrain.launch import launch_env
    full = get_config("full")
    assert "FLAGS_cudnn_deterministic" not in launch_env(full)
    env = launch_env(full.override({"launch.deterministic": True}))
    assert env["FLAGS_cudnn_deterministic"] == env["FLAGS_embedding_deterministic"] == "1"


def readme_line(prefix: str) -> list[str]:
    "The arguments of the README's documented command line that starts with `prefix`."
    from conftest import REPO
    line = next(l.strip() for l in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if l.strip().startswith(prefix))
    return line.split()[2:]


def test_full_profile_documented_two_node_line_works(capsys):
    "Defect 7 (issue 18): micro 32 x 8 processes exceeded the global batch 128; the README's 2-node line must start."
    from vertical_pretrain.launch import fit_micro_batch, main
    from vertical_pretrain.pretrain import accumulate_steps
    args = readme_line("vertical-pretrain pretrain --profile full --set launch.nnodes=2")
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "train.micro_batch_size 32 -> 16" in out and "--nnodes 2 --master 10.0.0.1:8090" in out
    two = get_config("full", {"launch.nnodes": 2, "launch.master": "10.0.0.1:8090"})
    with pytest.raises(ValueError, match="must be a multiple"):
        accumulate_steps(two.train, 8)  # what every worker of the 2-node run failed with
    fitted = fit_micro_batch(two, echo=lambda _: None)
    assert (fitted.train.micro_batch_size, fitted.train.global_batch_size) == (16, 128)
    assert accumulate_steps(fitted.train, 8) == 1
    assert fit_micro_batch(get_config("full"), echo=print) == get_config("full")  # 4 GPUs: unchanged, nothing printed
    assert capsys.readouterr().out == ""


def test_each_machine_logs_to_its_own_dir(monkeypatch):
    "Defect 8 (issue 18): two machines sharing output/ both wrote logs/workerlog.0-3; each now has logs/<hostname>/."
    import socket
    from vertical_pretrain.launch import run_log_dir
    two = get_config("full", {"launch.nnodes": 2, "launch.master": "10.0.0.1:8090"})
    dirs = {}
    for host in ("gpu-a", "gpu-b"):
        monkeypatch.setattr(socket, "gethostname", lambda h=host: h)
        cmd = build_launch_command(two, "run.yaml")
        dirs[host] = cmd[cmd.index("--log_dir") + 1]
        assert dirs[host] == str(two.paths.run_dir / "logs" / host) == str(run_log_dir(two))
    assert dirs["gpu-a"] != dirs["gpu-b"]
    one = get_config("full")  # one machine: logs/ as before
    assert build_launch_command(one, "r.yaml")[4] == str(one.paths.run_dir / "logs") == str(run_log_dir(one))


def test_gpu_check_dry_run_prints_valid_commands_and_the_report_compares_losses(tmp_path, capsys):
    "bench/gpu_check.sh (issue 18): --dry-run on CPU prints every run; each is a valid `pretrain` command line."
    import importlib.util, json, os, shlex, subprocess, sys
    from conftest import REPO
    from vertical_pretrain.launch import main
    out = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--gpus", "0,1"], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}, check=True).stdout
    lines = [shlex.split(l) for l in out.splitlines()]
    assert lines[0][-3:-1] == ["--to", "05"] and "--report" in lines[-1]
    runs = [l[l.index("pretrain") + 1:] for l in lines if "pretrain" in l]
    assert len(runs) == 2 * 5 * 2  # 1 and 2 GPUs x 5 AMP modes x recompute off/on
    for args in runs:
        assert main(args + ["--dry-run"]) == 0, args  # every --set key exists and every value parses
    assert "--devices 0,1" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec); spec.loader.exec_module(gc)
    def write(name, losses):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(
            {"split": "train", "step": s + 1, "loss": v, "tokens_per_s": 1000.0, "max_mem_allocated_mb": 900.0}) + "\n"
            for s, v in enumerate(losses)), encoding="utf-8")
    write("fp32_rc0_1gpu", [9.0, 8.5, 8.0]); write("fp32_rc1_1gpu", [9.0, 8.5, 8.1])
    write("O2-bfloat16_rc0_1gpu", [9.01, 8.52, 8.03])
    rows = {r.split("|")[1].strip(): r for r in gc.report(tmp_path, "0", ["fp32", "O2-bfloat16"]).splitlines()[2:]}
    assert "ok" in rows["fp32_rc0_1gpu"] and "CHECK" in rows["fp32_rc1_1gpu"]  # recompute must not change fp32 losses
    assert "| ok (rtol 0.02)" in rows["O2-bfloat16_rc0_1gpu"] and "FAILED" in rows["O2-bfloat16_rc1_1gpu"]


def test_preflight_agrees_with_the_launcher_on_two_nodes():
    "The preflight (09b) checks the batch split the launcher will run, so the 2-node full line passes it too."
    from vertical_pretrain.check import TRAIN_STAGES, check_batches
    two = get_config("full", {"launch.nnodes": 2, "launch.master": "10.0.0.1:8090"})
    assert check_batches(two, set(TRAIN_STAGES)) == []
    assert "must be a multiple" in check_batches(two.override({"train.global_batch_size": 100}), set(TRAIN_STAGES))[0]


def test_two_node_line_parses_with_the_installed_paddle_launcher(monkeypatch):
    """Every flag of the 2-machine line is one the installed Paddle launcher defines (its own `parse_args`), with the values
    we mean; a host name in launch.master becomes an address, and --host is this machine's address toward the master."""
    import sys
    from paddle.distributed.launch.context.args_envs import parse_args
    from vertical_pretrain.launch import local_ip_toward
    two = get_config("full", {"launch.nnodes": 2, "launch.master": "localhost:8090"})
    cmd = build_launch_command(two, "run.yaml", python="python")
    assert cmd[:3] == ["python", "-m", "paddle.distributed.launch"]
    monkeypatch.setattr(sys, "argv", ["launch"] + cmd[3:])
    args, unknown = parse_args()
    assert unknown == []
    assert (args.master, args.nnodes, args.devices, args.host) == ("127.0.0.1:8090", "2", "0,1,2,3", "127.0.0.1")
    assert args.rank == -1  # no --rank: the master's launcher holds the rendezvous server and gets rank 0 (one line for all)
    assert args.log_dir == str(two.paths.run_dir / "logs" / __import__("socket").gethostname())
    assert [args.training_script] + args.training_script_args == ["python", "-u", "-m", "vertical_pretrain.pretrain",
                                                                   "--config", "run.yaml"]
    cpu = build_launch_command(two.override({"launch.device": "cpu", "launch.nproc": 1}), "run.yaml")
    monkeypatch.setattr(sys, "argv", ["launch"] + cpu[3:])
    assert parse_args()[0].nproc_per_node == 1
    assert local_ip_toward("127.0.0.1") == "127.0.0.1"
    for bad, msg in (("", "needs launch.master=<ip>:<port>"), ("10.0.0.1", "must be <ip>:<port>"),
                     ("10.0.0.1:99999", "must be <ip>:<port>"), ("no-such-host.invalid:8090", "cannot resolve")):
        with pytest.raises(ValueError, match=msg):
            build_launch_command(two.override({"launch.master": bad}), "run.yaml")


def test_readme_two_machine_paddle_lines_are_what_the_launcher_builds(monkeypatch):
    "The README's machine A / machine B `paddle.distributed.launch` lines are build_launch_command's, host by host."
    import socket
    from conftest import REPO
    import vertical_pretrain.launch as vl
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    documented = [" ".join(l.split()) for l in text.splitlines() if l.startswith("python -m paddle.distributed.launch")]
    two = get_config("full", {"launch.nnodes": 2, "launch.master": "10.0.0.1:8090"})
    built = []
    for host, ip in (("gpu-a", "10.0.0.1"), ("gpu-b", "10.0.0.2")):
        monkeypatch.setattr(socket, "gethostname", lambda h=host: h)
        monkeypatch.setattr(vl, "local_ip_toward", lambda master, ip=ip: ip)
        cmd = " ".join(build_launch_command(two, "output/full/config.yaml", python="python"))
        built.append(cmd.replace(str(two.paths.run_dir.parent.parent) + "/", ""))
    assert documented == built


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc, seconds: float) -> bool:
    "True once something accepts connections on 127.0.0.1:port; False when `proc` ended or time ran out."
    import socket, time
    end = time.time() + seconds
    while time.time() < end and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0: return True
        time.sleep(0.2)
    return False


def finish(procs, seconds: float) -> list[str]:
    "The outputs of `procs` (each in its own session); on a timeout every process group is killed and the test fails."
    import os, signal, subprocess, time
    end, outs = time.time() + seconds, []
    try:
        for p in procs: outs.append(p.communicate(timeout=max(1.0, end - time.time()))[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            try: os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError: pass
        pytest.fail(f"a launcher did not finish within {seconds:.0f} s (rendezvous hang?); killed")
    return outs


@pytest.mark.timeout(420)
def test_two_launchers_with_nnodes_2_train_like_one_launcher_of_2_processes(corpus_root, char_tokenizer_dir, tmp_path):
    """Issue 16 part 6: the multi-machine rendezvous for real, on this machine. Two `vertical-pretrain pretrain` launchers
    with --nnodes 2 --master 127.0.0.1:<port>, one CPU process each (gloo), each with its own output dir (two machines
    without a shared disk; the data dir is shared), train 3 steps. The master's launcher is started first, so it holds the
    rendezvous server and its process is global rank 0 (Paddle's HTTPMaster sorts the server's pod first): it alone writes
    metrics.jsonl, whose losses equal a 2-process single-launcher run's. All three runs use train.max_steps=auto and each
    launcher saves the same resolved number in its config.yaml."""
    import os, subprocess, sys
    import yaml
    from conftest import REPO
    from test_pretrain import SUBPROCESS_ENV, base_cfg, train_losses
    from vertical_pretrain.dataset import train_samples_per_epoch
    from vertical_pretrain.pretrain import read_metrics
    over = {"train.eval_freq": 0, "train.save_steps": 0, "train.checkpoint_steps": 3, "train.logging_freq": 1}
    probe = base_cfg(corpus_root, char_tokenizer_dir, "probe", **over)
    G, n = probe.train.global_batch_size, train_samples_per_epoch(probe)
    over.update({"train.max_steps": "auto", "train.epochs": 2.5 * G / n})  # ceil(2.5 G samples / G) = 3 steps
    exe = [sys.executable, "-m", "vertical_pretrain.cli", "pretrain", "--config"]
    env = {**SUBPROCESS_ENV, "PYTHONPATH": str(REPO)}

    one = base_cfg(corpus_root, char_tokenizer_dir, "one_node", **over, **{"paths.output_root": str(tmp_path / "one")})
    ref = subprocess.run(exe + [str(one.save(tmp_path / "one.yaml")), "--nproc", "2"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    assert f"train.max_steps=auto -> 3 = ceil({over['train.epochs']:g} epochs x {n} train samples per epoch / global batch {G} " \
           "(micro 4 x accumulate 1 x 2 processes))" in ref.stdout

    port = free_port()
    nodes = {name: base_cfg(corpus_root, char_tokenizer_dir, "two_nodes", **over,
                            **{"paths.output_root": str(tmp_path / name), "launch.nproc": 1, "launch.nnodes": 2,
                               "launch.master": f"127.0.0.1:{port}"}) for name in ("master", "other")}
    def start(name):
        return subprocess.Popen(exe + [str(nodes[name].save(tmp_path / f"{name}.yaml"))], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    master = start("master")
    if not wait_for_port(port, master, 120):  # the master's launcher binds the rendezvous server first
        out = finish([master], 30)[0]
        pytest.fail(f"the master's launcher never listened on 127.0.0.1:{port}:\n{out[-3000:]}")
    other = start("other")
    out_master, out_other = finish([master, other], 300)
    assert master.returncode == 0 and other.returncode == 0, out_master[-3000:] + "\n-----\n" + out_other[-3000:]
    for name in nodes:
        cmd_line = next(l for l in (out_master if name == "master" else out_other).splitlines() if l.startswith("$ "))
        assert f"--nproc_per_node 1 --nnodes 2 --master 127.0.0.1:{port}" in cmd_line
        saved = yaml.safe_load((nodes[name].paths.run_dir / "config.yaml").read_text(encoding="utf-8"))
        assert saved["train"]["max_steps"] == 3 and saved["launch"]["nnodes"] == 2  # the resolved number, not 'auto'
    assert yaml.safe_load((one.paths.run_dir / "config.yaml").read_text(encoding="utf-8"))["train"]["max_steps"] == 3
    assert "1 process(es)" not in out_master and "2 process(es) x micro 4 x accumulate 1" in out_master  # one world of 2
    assert read_metrics(nodes["other"].paths.run_dir) == []  # the other machine's process is rank 1: it writes no metrics
    l1, l2 = train_losses(one.paths.run_dir), train_losses(nodes["master"].paths.run_dir)
    assert sorted(l1) == sorted(l2) == [1, 2, 3]
    np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-6)
    assert l1[1] != l1[3]  # it trained


@pytest.mark.timeout(300)
def test_mkl_avx2_kernels_on_amd_train_the_same_losses(corpus_root, char_tokenizer_dir, monkeypatch):
    """Issue 16 part 5: on an AMD CPU the workers get MKL_DEBUG_CPU_TYPE=5 (MKL's AVX2 kernels, ~1.7-1.9x tokens/s in
    bench/bench_train.py); the user's own value is kept. A 6-step run with MKL's default kernels and one with AVX2 log
    the same losses within rtol 1e-5 (float32 rounding; measured differences are ~1e-7)."""
    import json, os, subprocess, sys
    from conftest import REPO
    from test_pretrain import base_cfg
    from vertical_pretrain.launch import cpu_vendor, launch_env
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    cfg = base_cfg(corpus_root, char_tokenizer_dir, "mkl", **{"train.logging_freq": 1, "launch.nproc": 1})
    want = {"MKL_DEBUG_CPU_TYPE": "5"} if cpu_vendor() == "AuthenticAMD" else {}
    assert {k: v for k, v in launch_env(cfg).items() if k == "MKL_DEBUG_CPU_TYPE"} == want
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "")
    assert "MKL_DEBUG_CPU_TYPE" not in launch_env(cfg)  # the user's choice (here: MKL's default) wins
    losses = {}
    for value in ("", "5"):
        run = cfg.override({"paths.run_name": f"mkl{value or 'default'}"})
        path = run.save(corpus_root / f"mkl{value}.yaml")
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_DEBUG_CPU_TYPE": value}
        p = subprocess.run([sys.executable, "-m", "vertical_pretrain.pretrain", "--config", str(path)], env=env,
                           capture_output=True, text=True, timeout=240)
        assert p.returncode == 0, p.stderr[-3000:]
        recs = [json.loads(l) for l in (run.paths.run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[value] = [(r["split"], r["step"], r["loss"]) for r in recs if "loss" in r]
    assert [x[:2] for x in losses[""]] == [x[:2] for x in losses["5"]] and len(losses[""]) >= 6
    np.testing.assert_allclose([x[2] for x in losses["5"]], [x[2] for x in losses[""]], rtol=1e-5)
