"Atomic writes on a real full filesystem, and directory locks between real processes."
import errno
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
