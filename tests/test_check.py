"""The preflight (`vertical-pretrain check`): each check fails with its own line on a config made to fail it, the CLI
exits 1 with those lines and writes nothing, and the repo's demo/smoke configs pass. Real files, real PaddleNLP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vertical_pretrain.check import check_report, disk_estimate, run_checks, stage_keys
from vertical_pretrain.launch import world_size
from vertical_pretrain.config import get_config
from vertical_pretrain.stages import STAGES, select_stages

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"
TASK = REPO / "data_file" / "manpages_cls"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
OFFLINE_FIX = "--set model.model_name_or_path= --set base_model.enabled=true"


def good_config(tmp_path, **overrides):
    "The smoke profile on a small text book in tmp_path (offline base model, the repo's task): no problems."
    raw = tmp_path / "data" / "book" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "book.txt").write_text("第一章 软件包管理。\n\nDebian 使用 apt 安装软件包。\n" * 50, encoding="utf-8")
    base = {"paths.data_root": str(tmp_path / "data"), "paths.corpus": "book", "paths.output_root": str(tmp_path / "out"),
            "finetune.task_dir": str(TASK)}
    return get_config("smoke", {**base, **overrides})


def only(lines, *needles):
    "The one line that contains every needle (fails when there is none or several)."
    hits = [l for l in lines if all(n in l for n in needles)]
    assert len(hits) == 1, (needles, lines)
    return hits[0]


@pytest.fixture
def empty_ppnlp_home(tmp_path, monkeypatch):
    "PaddleNLP's cache is an empty folder: the tests cannot see a real cache."
    home = tmp_path / "ppnlp_home"
    home.mkdir()
    monkeypatch.setenv("PPNLP_HOME", str(home))
    return home


def test_good_config_passes(tmp_path):
    rep = check_report(good_config(tmp_path), nbs_dir=NBS)
    assert rep["problems"] == []
    assert rep["checks"] == ["settings", "notebooks", "inputs", "model and tokenizer", "start model", "task data", "corpus blend",
                             "sequence lengths", "batch sizes", "disk space", "gpu", "kernel"]
    assert rep["seconds"] < 10


# ---------------------------------------------------------------- 1. inputs
def test_missing_raw_dir(tmp_path):
    lines = run_checks(good_config(tmp_path, **{"paths.corpus": "nope"}), nbs_dir=NBS)
    line = only(lines, "paths.raw_dir", str(tmp_path / "data" / "nope" / "raw"), "does not exist")
    assert "fix:" in line and "pdf2text.input_path" in line


def test_empty_raw_dir_and_missing_input_path(tmp_path):
    cfg = good_config(tmp_path)
    (cfg.paths.raw_dir / "book.txt").unlink()
    (cfg.paths.raw_dir / ".hidden").write_text("x")  # hidden files are not inputs
    only(run_checks(cfg, nbs_dir=NBS), "paths.raw_dir", "empty folder")
    cfg2 = good_config(tmp_path, **{"pdf2text.input_path": str(tmp_path / "no_book.pdf")})
    only(run_checks(cfg2, nbs_dir=NBS), "pdf2text.input_path", "no_book.pdf", "does not exist")


def test_unsupported_file_in_raw(tmp_path):
    cfg = good_config(tmp_path)
    (cfg.paths.raw_dir / "cover.png").write_bytes(PNG)
    (cfg.paths.raw_dir / "broken.pdf").write_text("not a pdf at all", encoding="utf-8")
    lines = run_checks(cfg, nbs_dir=NBS)
    assert "PNG image" in only(lines, "cover.png") and "supported: PDF, TXT, DOCX, EPUB, HTML, Markdown, JSONL" in only(lines, "cover.png")
    assert "%PDF-" in only(lines, "broken.pdf")
    assert not [l for l in lines if "book.txt" in l]


def test_pdf_header_on_a_truncated_or_corrupt_file_fails_the_preflight(tmp_path, capfd):
    """A download cut short keeps its %PDF- header: check opens the xref/page tree as stage 01 would, instead of passing it.
    The one line per file is all the user sees: pypdf's own "EOF marker not found" log lines are not printed before it.
    An empty file gets a fix that fits it (not "convert it to a supported format")."""
    from vertical_pretrain.pdf2text import pdf_page_count
    demo = Path(__file__).resolve().parents[1] / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"
    cfg = good_config(tmp_path)
    (cfg.paths.raw_dir / "手册 v2.pdf").write_bytes(demo.read_bytes()[:150_000])  # the first 150 kB of a real book
    (cfg.paths.raw_dir / "scan.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    (cfg.paths.raw_dir / "空.pdf").write_bytes(b"")
    capfd.readouterr()
    lines = run_checks(cfg, nbs_dir=NBS)
    for name in ("手册 v2.pdf", "scan.pdf"):
        line = only(lines, name)
        assert "not a readable PDF" in line and "Fix: get an intact copy" in line, line
        assert "RecursionError" not in line, line
    empty = only(lines, "空.pdf")
    assert "the file is empty" in empty and "Fix: copy it again" in empty and "supported format" not in empty, empty
    assert "EOF marker" not in "".join(capfd.readouterr()), "pypdf's log lines leaked around the one-line error"
    assert not [l for l in lines if "book.txt" in l]
    assert pdf_page_count(demo) > 200  # an intact book passes and its pages are counted


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_input(tmp_path):
    cfg = good_config(tmp_path)
    (cfg.paths.raw_dir / "book.txt").chmod(0)
    only(run_checks(cfg, nbs_dir=NBS), "book.txt", "not readable")


# ---------------------------------------------------------------- 2. model, tokenizer, task
def test_local_model_dir_without_weights(tmp_path):
    d = tmp_path / "my_model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2, "max_position_embeddings": 512,
                                               "vocab_size": 100}))
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    lines = run_checks(good_config(tmp_path, **{"model.model_name_or_path": str(d)}), nbs_dir=NBS)
    line = only(lines, f"model.model_name_or_path={d}", "no weights")
    assert "model_state.pdparams" in line and "fix:" in line
    assert not [l for l in lines if "tokenizer" in l or "model config" in l]
    # with weights (any bytes: the check does not load them) the dir is fine
    (d / "model_state.pdparams").write_bytes(b"0")
    assert run_checks(good_config(tmp_path, **{"model.model_name_or_path": str(d)}), nbs_dir=NBS) == []


def test_local_model_dir_missing(tmp_path):
    lines = run_checks(good_config(tmp_path, **{"model.model_name_or_path": str(tmp_path / "gone")}), nbs_dir=NBS)
    only(lines, "model.model_name_or_path", "gone", "no such directory")


def test_hub_name_offline_gives_one_line(tmp_path, empty_ppnlp_home):
    lines = run_checks(good_config(tmp_path, **{"model.model_name_or_path": "ernie-3.0-medium-zh"}), nbs_dir=NBS)
    line = only(lines, "ernie-3.0-medium-zh")  # one line for the model and its tokenizer
    assert line.startswith("model.model_name_or_path=ernie-3.0-medium-zh: offline")
    assert str(empty_ppnlp_home / "models" / "ernie-3.0-medium-zh") in line and OFFLINE_FIX in line
    assert "--set model.model_name_or_path=/path/to/dir" in line
    assert lines == [line]  # the built-in config (2048 positions) fits, the rest of the smoke run is fine


def test_hub_name_in_cache_passes_offline(tmp_path, empty_ppnlp_home):
    cached = empty_ppnlp_home / "models" / "ernie-3.0-medium-zh"
    cached.mkdir(parents=True)
    (cached / "model_state.pdparams").write_bytes(b"0")
    (cached / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert run_checks(good_config(tmp_path, **{"model.model_name_or_path": "ernie-3.0-medium-zh"}), nbs_dir=NBS) == []


def test_unknown_hub_name(tmp_path, empty_ppnlp_home):
    lines = run_checks(good_config(tmp_path, **{"model.model_name_or_path": "ernie-9.9-giant-xx"}), nbs_dir=NBS)
    line = only(lines, "model.model_name_or_path=ernie-9.9-giant-xx", "not a model name PaddleNLP knows")
    assert OFFLINE_FIX in line


def test_offline_base_needs_stage_05a_or_its_output(tmp_path):
    cfg = good_config(tmp_path)
    assert run_checks(cfg, stages=select_stages("03a", "08"), nbs_dir=NBS) == []
    lines = run_checks(cfg, stages=select_stages("06", "08"), nbs_dir=NBS)
    assert "stage 05a is not selected" in only(lines, "model.model_name_or_path is empty")
    assert "stage 03a is not selected" in only(lines, "the offline vocab")
    # from scratch (no base at all): stage 08 has nothing to compare with
    scratch = good_config(tmp_path, **{"base_model.enabled": False})
    only(run_checks(scratch, nbs_dir=NBS), "base_model.enabled=false", "stage 08")


def test_task_dir_checked_only_with_the_stages_that_read_it(tmp_path):
    "Stage 08 fine-tunes on the task; stage 04 decontaminates the corpus against its dev/test (03c); 07a reads unlabeled.txt."
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.csv").write_text("text,label\n好,a\n", encoding="utf-8")
    (task / "dev.csv").write_text("text,label\n好,a\n", encoding="utf-8")
    cfg = good_config(tmp_path, **{"finetune.task_dir": str(task), "tapt.enabled": False})
    line = only(run_checks(cfg, nbs_dir=NBS), "finetune.task_dir")
    assert "no test split" in line and "test.jsonl / test.csv / test.tsv" in line
    assert "no test split" in only(run_checks(cfg, stages=select_stages("01", "07"), nbs_dir=NBS), "finetune.task_dir")  # 04
    assert run_checks(cfg.override({"decontam.enabled": False}), stages=select_stages("01", "07"), nbs_dir=NBS) == []
    (task / "test.csv").write_text("sentence,label\n好,a\n", encoding="utf-8")
    assert "test.csv:1: no column 'text'" in only(run_checks(cfg, nbs_dir=NBS), "finetune.task_dir")
    # TAPT (07a) reads the task's unlabeled.txt
    tapt = good_config(tmp_path, **{"finetune.task_dir": str(task), "tapt.enabled": True})
    only(run_checks(tapt, stages=select_stages("07a", "07a"), nbs_dir=NBS), "tapt.enabled=true", "unlabeled.txt")


# ---------------------------------------------------------------- 3. lengths
def test_max_seq_len_too_big(tmp_path):
    cfg = good_config(tmp_path, **{"data.max_seq_len": 256, "finetune.max_seq_len": 512})  # smoke model: 128 positions
    lines = run_checks(cfg, nbs_dir=NBS)
    a = only(lines, "data.max_seq_len=256 > max_position_embeddings=128")
    b = only(lines, "finetune.max_seq_len=512 > max_position_embeddings=128")
    assert "--set data.max_seq_len=128" in a and "--set finetune.max_seq_len=128" in b
    assert "model.max_position_embeddings" in a  # the offline base can also grow its position table
    # stage 08 alone does not look at the pretraining length
    assert [l for l in run_checks(cfg, stages=select_stages("08", "08"), nbs_dir=NBS) if "max_seq_len=" in l] == [b]


def test_max_seq_len_against_local_and_builtin_configs(tmp_path, empty_ppnlp_home):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model_state.pdparams").write_bytes(b"0")
    (d / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    (d / "model_config.json").write_text(json.dumps({"init_args": [{"max_position_embeddings": 64, "hidden_size": 32,
                                                                     "num_hidden_layers": 1}], "init_class": "ErnieModel"}))
    assert run_checks(good_config(tmp_path, **{"model.model_name_or_path": str(d)}), nbs_dir=NBS) == []  # 64 fits 64
    lines = run_checks(good_config(tmp_path, **{"model.model_name_or_path": str(d), "data.max_seq_len": 100}), nbs_dir=NBS)
    assert str(d) in only(lines, "data.max_seq_len=100 > max_position_embeddings=64")
    # a hub name: PaddleNLP's built-in config, read offline
    hub = run_checks(good_config(tmp_path, **{"model.model_name_or_path": "ernie-3.0-medium-zh", "data.max_seq_len": 4096}),
                     nbs_dir=NBS)
    assert "PaddleNLP's built-in config" in only(hub, "data.max_seq_len=4096 > max_position_embeddings=2048")


# ---------------------------------------------------------------- 4. batches
def test_batch_sizes_must_divide(tmp_path):
    cfg = good_config(tmp_path, **{"train.global_batch_size": 10, "train.micro_batch_size": 4, "launch.nproc": 2})
    line = only(run_checks(cfg, nbs_dir=NBS), "train.global_batch_size=10")
    assert "4 x 2" in line and "--set train.global_batch_size=8" in line and "launch.nproc" in line
    assert run_checks(good_config(tmp_path, **{"train.global_batch_size": 16}), nbs_dir=NBS) == []
    only(run_checks(good_config(tmp_path, **{"finetune.batch_size": 0}), nbs_dir=NBS), "finetune.batch_size=0")


def test_evaluate_settings_and_base_model_of_stage_07b(tmp_path):
    "Stage 07b runs after training: bad evaluate.* values and a from-scratch run without a base are caught before it."
    cfg = good_config(tmp_path, **{"evaluate.bootstrap_reps": 0, "evaluate.top_k": 0})
    lines = run_checks(cfg, nbs_dir=NBS)
    assert "fix: --set evaluate.bootstrap_reps=1000" in only(lines, "evaluate.bootstrap_reps=0")
    assert "fix: --set evaluate.top_k=5" in only(lines, "evaluate.top_k=0")
    scratch = good_config(tmp_path, **{"base_model.enabled": False, "model.model_name_or_path": ""})
    only(run_checks(scratch, stages=select_stages("07b", "07b"), nbs_dir=NBS), "stage 07b has no base model")


def test_world_size_follows_the_launcher(tmp_path):
    assert world_size(get_config("smoke", {"launch.nproc": 3})) == 3
    assert world_size(get_config("full", {"launch.devices": "0,1", "launch.nnodes": 2, "launch.master": "h:1"})) == 4


# ---------------------------------------------------------------- 5. disk
def test_disk_estimate_larger_than_free_space(tmp_path):
    cfg = good_config(tmp_path, **{"train.max_steps": 10 ** 9, "train.save_steps": 1})
    line = only(run_checks(cfg, nbs_dir=NBS), "disk:")
    assert "paths.data_root and paths.output_root" in line and "train.save_steps" in line
    assert "1000000001 checkpoints" in line and "4 x raw inputs" in line and "train.save_total_limit" in line
    capped = good_config(tmp_path, **{"train.max_steps": 10 ** 9, "train.save_steps": 1, "train.save_total_limit": 3})
    assert "domain: 4 checkpoints" in "; ".join(disk_estimate(capped, stage_keys())["parts"])  # 3 model_<step>/ + model_last/
    est = disk_estimate(good_config(tmp_path), stage_keys())
    book = (tmp_path / "data" / "book" / "raw" / "book.txt").stat().st_size
    assert est["data"] == 4 * book and est["output"] > est["params"] * 4 * 3  # checkpoints of 06 and the base run


# ---------------------------------------------------------------- 6. gpu
def test_gpu_requested_on_cpu_machine(tmp_path):
    lines = run_checks(good_config(tmp_path, **{"launch.device": "gpu", "launch.devices": "0", "train.global_batch_size": 8}),
                       nbs_dir=NBS)
    line = only(lines, "launch.device=gpu")
    assert "CPU build" in line and "--set launch.device=cpu" in line
    only(run_checks(good_config(tmp_path, **{"launch.device": "tpu"}), nbs_dir=NBS), "launch.device='tpu'")


# ---------------------------------------------------------------- 7. notebooks
def test_nbs_dir_without_notebooks(tmp_path):
    empty = tmp_path / "empty_nbs"
    empty.mkdir()
    line = only(run_checks(good_config(tmp_path), nbs_dir=empty), "stage notebooks not found")
    assert str(empty) in line and "VERTICAL_PRETRAIN_ROOT" in line and f"{len(STAGES)} of {len(STAGES)} missing" in line
    assert "1 of 1 missing" in only(run_checks(good_config(tmp_path), stages=select_stages("03", "03"), nbs_dir=empty), "notebooks")


# ---------------------------------------------------------------- CLI
def cli(args, cwd, **env):
    e = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_minloglevel": "2", **env}
    return subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "check", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=300)


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def test_cli_reports_every_problem_and_writes_nothing(tmp_path):
    work, home = tmp_path / "work", tmp_path / "ppnlp_home"
    work.mkdir(); home.mkdir()
    cfg = good_config(work, **{"model.model_name_or_path": "ernie-3.0-medium-zh", "data.max_seq_len": 4096,
                               "train.global_batch_size": 10, "launch.device": "gpu", "launch.devices": "0",
                               "train.max_steps": 10 ** 9, "train.save_steps": 1})
    (cfg.paths.raw_dir / "cover.png").write_bytes(PNG)
    cfg.save(work / "run.yaml")
    before = tree(work)
    r = cli(["--config", str(work / "run.yaml")], cwd=work, PPNLP_HOME=str(home), VERTICAL_PRETRAIN_ROOT=str(REPO))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(l.startswith("check: ") for l in lines), r.stderr
    for needle in ("cover.png", "ernie-3.0-medium-zh: offline", "data.max_seq_len=4096 > max_position_embeddings=2048",
                   "train.global_batch_size=10", "disk:", "launch.device=gpu"):
        only(lines, needle)
    assert r.stdout == ""
    assert tree(work) == before  # nothing written
    # PaddleNLP's own import makes its empty cache folders; no file lands there
    assert [p for p in home.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("profile", ["smoke", "demo"])
def test_cli_repo_profiles_pass(profile):
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True, text=True).stdout
    r = cli(["--profile", profile], cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("check: ok (12 checks, ") and r.stderr == ""  # 12: the start-model audit (issue 26)
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True).stdout == status


def test_cli_outside_the_repo_names_where_it_looked(tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    r = cli(["--profile", "smoke"], cwd=tmp_path, VERTICAL_PRETRAIN_ROOT=str(empty))
    assert r.returncode != 0
    line = only(r.stderr.splitlines(), "stage notebooks not found")
    assert str(empty / "nbs") in line and "VERTICAL_PRETRAIN_ROOT" in line and "repo checkout" in line
    assert list(empty.iterdir()) == []


def test_cli_stage_selection_and_bad_arguments(tmp_path):
    cfg = good_config(tmp_path, **{"train.global_batch_size": 10})
    cfg.save(tmp_path / "run.yaml")
    assert cli(["--config", str(tmp_path / "run.yaml"), "--to", "05"], cwd=REPO).returncode == 0  # no training stage
    r = cli(["--config", str(tmp_path / "run.yaml"), "--from", "05a", "--to", "06"], cwd=REPO)
    assert r.returncode == 1 and "check: train.global_batch_size=10" in r.stderr
    r = cli(["--profile", "smoke", "--from", "99x"], cwd=REPO)
    assert r.returncode == 1 and "check: unknown stage" in r.stderr


def test_url_problem_with_a_real_local_server(tmp_path):
    import functools, http.server, socket, threading
    from vertical_pretrain.check import url_problem
    (tmp_path / "w.pdparams").write_bytes(b"0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0)); silent.listen(1)
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert url_problem(f"{base}/w.pdparams") is None
        assert url_problem(f"{base}/gone.pdparams") == "HTTP 404"
        assert url_problem("http://no-such-host.invalid/x", timeout=1) is not None
        assert "timed out" in url_problem(f"http://127.0.0.1:{silent.getsockname()[1]}/x", timeout=0.5)
    finally:
        srv.shutdown(); silent.close()


# ---------------------------------------------------------------- the entry points check lengths before they start (issue 15, fault 2)
def pos32_model(d: Path) -> Path:
    "A model dir whose config has 32 positions (files present; the entry points must stop before loading the weights)."
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"architectures": ["ErnieForPretraining"], "model_type": "ernie", "vocab_size": 64,
                                               "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                               "intermediate_size": 64, "max_position_embeddings": 32}))
    (d / "model_state.pdparams").write_bytes(b"0")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "一", "二"]) + "\n", encoding="utf-8")
    return d


def test_pretrain_launcher_stops_before_starting_processes(tmp_path):
    from vertical_pretrain.dataset import corpus_prefix
    from vertical_pretrain.launch import launch
    cfg = good_config(tmp_path, **{"model.model_name_or_path": str(pos32_model(tmp_path / "m")), "data.max_seq_len": 64})
    prefix = Path(str(corpus_prefix(cfg)))
    prefix.parent.mkdir(parents=True)
    for ext in ("_ids.npy", "_idx.npz"): Path(str(prefix) + ext).write_bytes(b"0")  # stage 04's files exist
    lines = []
    assert launch(cfg, echo=lines.append) == 2
    assert len(lines) == 1 and "data.max_seq_len=64 > max_position_embeddings=32" in lines[0], lines
    assert "fix: --set data.max_seq_len=32" in lines[0] and not (cfg.paths.run_dir / "logs").exists()


def test_tapt_stops_before_any_stage(tmp_path, capsys):
    from vertical_pretrain.config import tapt_config
    from vertical_pretrain.tapt import main
    task = tmp_path / "task"
    task.mkdir()
    (task / "unlabeled.txt").write_text("第一句。\n\n第二句。\n", encoding="utf-8")
    over = {"model.model_name_or_path": str(pos32_model(tmp_path / "m")), "tapt.enabled": True, "tapt.start_from": "base",
            "finetune.task_dir": str(task), "data.max_seq_len": 64}
    cfg = good_config(tmp_path, **over)
    rc = main(["--profile", "smoke"] + [a for k, v in {**over, "paths.data_root": cfg.paths.data_root,
                                                      "paths.output_root": cfg.paths.output_root}.items() for a in ("--set", f"{k}={v}")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data.max_seq_len=64 > max_position_embeddings=32" in err[0], err
    assert "fix: --set data.max_seq_len=32" in err[0]
    assert not tapt_config(cfg).paths.corpus_dir.exists()  # not even the task text was copied


def test_a_damaged_book_in_a_subfolder_is_checked_like_stage_01_reads_it(tmp_path):
    "The preflight lists the inputs the way stage 01 does (subfolders too) and gives each bad one a single fix."
    cfg = good_config(tmp_path)
    (cfg.paths.raw_dir / "sub").mkdir()
    (cfg.paths.raw_dir / "sub" / "cover.png").write_bytes(PNG)
    line = only(run_checks(cfg, nbs_dir=NBS), "cover.png")
    assert "sub/cover.png" in line and line.lower().count("fix:") == 1, line


def test_bad_blend_one_line_each(tmp_path):
    "data.blend: a corpus without ids (not built by a selected stage), a bad weight, a bad replay weight: one line each."
    cfg = good_config(tmp_path, **{"data.blend": ["0.8 book", "0.2 nowhere"]})
    line = only(run_checks(cfg, nbs_dir=NBS), "'nowhere' has no stage-04 ids")  # 'book' is built by stage 04 of this run
    assert "-p paths.corpus nowhere" in line
    assert not [l for l in run_checks(cfg, nbs_dir=NBS) if "'book'" in l]
    assert "weight must be" in only(run_checks(good_config(tmp_path, **{"data.blend": ["0.8 book", "-1 x"]}), nbs_dir=NBS), "data.blend[1]")
    assert "fix:" in only(run_checks(good_config(tmp_path, **{"replay.general_weight": 0}), nbs_dir=NBS), "replay.general_weight")
    r = cli(["--profile", "smoke", "--set", "data.blend=0.8 debian_reference,0.2 nowhere"], cwd=REPO)
    assert r.returncode == 1 and "'nowhere' has no stage-04 ids" in r.stderr


def test_steps_from_data_pass_the_preflight_with_replay_on(tmp_path):
    "Newcomer report: `check --set train.max_steps=auto --set train.epochs=2` died in the disk estimate (replay's steps)."
    cfg = good_config(tmp_path, **{"train.max_steps": "auto", "train.epochs": 2.0, "replay.enabled": True})
    lines = run_checks(cfg, nbs_dir=NBS)
    assert lines == [], lines
    est = disk_estimate(cfg, stage_keys())
    assert est["output"] > 0


# ---------------------------------------------------------------- 8. kernel
def test_a_python3_kernelspec_from_another_environment_is_caught_by_the_cli(foreign_python3_kernel, tmp_path):
    env = {**os.environ, "JUPYTER_PATH": foreign_python3_kernel}
    cmd = [sys.executable, "-m", "vertical_pretrain.cli", "check", "--profile", "smoke", "--from", "01", "--to", "01"]
    bad = subprocess.run(cmd + ["--set", "pipeline.kernel=python3"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    line = only(bad.stderr.splitlines(), "pipeline.kernel='python3' did not start")
    assert "No module named ipykernel_launcher" in line and "leave pipeline.kernel empty" in line
    # the default kernel is this Python, whatever `python3` means in the user's Jupyter dirs
    good = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert good.returncode == 0 and "check: ok" in good.stdout, good.stderr


def test_an_unknown_kernel_name_is_one_line(tmp_path):
    lines = run_checks(good_config(tmp_path, **{"pipeline.kernel": "no-such-kernel"}), stages=select_stages("01", "01"),
                       nbs_dir=NBS)
    assert "no such Jupyter kernel" in only(lines, "pipeline.kernel='no-such-kernel'")


def test_a_kernel_that_imports_another_checkout_is_named(tmp_path, monkeypatch):
    "A registered kernel whose Python finds another copy of the package: the stages would run other code."
    import json, shutil, sys
    import vertical_pretrain
    other = tmp_path / "other_checkout"
    shutil.copytree(Path(vertical_pretrain.__file__).parent, other / "vertical_pretrain")
    spec = tmp_path / "jupyter" / "kernels" / "old_checkout"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "old checkout",
        "language": "python", "env": {"PYTHONPATH": str(other)}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    line = only(run_checks(good_config(tmp_path, **{"pipeline.kernel": "old_checkout"}), stages=select_stages("01", "01"),
                           nbs_dir=NBS), "pipeline.kernel='old_checkout'")
    assert f"imports vertical_pretrain from {other / 'vertical_pretrain'}" in line and "make install registers" in line, line
