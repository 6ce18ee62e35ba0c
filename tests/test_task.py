"""Reading a fine-tune task's files (task.py) as users write them: TSV without quoting (pytorch/text#612), labels typed
by hand (Tencent/NeuralNLP-NeuralClassifier#36); and what `vertical-pretrain check` says about them."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vertical_pretrain import task as tk
from vertical_pretrain.check import run_checks
from vertical_pretrain.config import get_config

REPO = Path(__file__).resolve().parents[1]

# a novel's dialogue: the first text opens a quote that closes in a later paragraph, as prose does
DIALOGUE = [("ls 列出目录内容。", "命令"), ('"我们走吧，他说，然后关上了门。', "对白"), ("printf 按格式输出。", "命令"),
            ("fstab 的每一行描述一个文件系统。", "配置"), ('她回答："好的"，接着打开终端。', "对白"), ("mount 挂载文件系统。", "命令"),
            ("/etc/hosts 把主机名映射到地址。", "配置")]


def write_tsv(path: Path, rows, header=("text", "label")) -> Path:
    "A plain TSV as `cut`, `paste`, Excel's 'Text (Tab delimited)' of quote-free cells or a hand-written script make it."
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check_lines(task_dir: Path) -> list[str]:
    "The preflight's problem lines about the task (smoke profile, no TAPT)."
    cfg = get_config("smoke", {"finetune.task_dir": str(task_dir), "tapt.enabled": False})
    return [l for l in run_checks(cfg, nbs_dir=REPO / "nbs") if "finetune.task_dir" in l]


def test_tsv_text_starting_with_a_quote_is_one_example_a_line(tmp_path):
    "pytorch/text#612: CSV quoting swallowed rows 3-5 into row 2's text (4 of 7 examples, 2 of 3 classes), check said ok."
    for s in ("train", "dev", "test"): write_tsv(tmp_path / f"{s}.tsv", DIALOGUE)
    t = tk.load_task(tmp_path)
    for s in ("train", "dev", "test"):
        assert [(r["text"], r["label"]) for r in t[s]] == DIALOGUE
    assert t["labels"] == ["命令", "对白", "配置"]
    assert check_lines(tmp_path) == []


def test_quoted_tsv_says_so_in_its_header(tmp_path):
    "A TSV whose header fields are all quoted is read with CSV quoting: tabs, newlines and quotes inside texts."
    rows = [("printf\t格式化输出", "命令"), ("第一行\n第二行", "配置"), *DIALOGUE]
    for s in ("train", "dev", "test"):
        with open(tmp_path / f"{s}.tsv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL).writerows([("text", "label"), *rows])
    t = tk.load_task(tmp_path)
    assert [(r["text"], r["label"]) for r in t["dev"]] == rows


@pytest.mark.parametrize("body, line, why", [
    # a text broken over two lines: 8 lines, 7 rows
    ("ls 列出目录内容。\t命令\nprintf 按格式\n输出。\t命令\n", 3, "1 fields but the header has 2"),
    # pandas' default QUOTE_MINIMAL quoted one text, but the header does not say the file is quoted
    ('ls 列出目录内容。\t命令\n"她回答：""好的""。"\t对白\n', 3, "quoted the CSV way but the header is not quoted"),
])
def test_unquoted_tsv_whose_lines_are_not_rows_is_an_error(tmp_path, body, line, why):
    for s in ("train", "dev", "test"): write_tsv(tmp_path / f"{s}.tsv", DIALOGUE)
    (tmp_path / "dev.tsv").write_text("text\tlabel\n" + body, encoding="utf-8")
    with pytest.raises(ValueError, match=f"dev.tsv:{line}: .*{why}"):
        tk.load_task(tmp_path)


def test_quoted_tsv_with_a_stray_quote_is_an_error_in_check(tmp_path):
    "A quote the writer did not double (read leniently before: the text silently lost it) is file:line in the preflight."
    for s in ("train", "dev", "test"): write_tsv(tmp_path / f"{s}.tsv", DIALOGUE)
    (tmp_path / "test.tsv").write_text('"text"\t"label"\n"ls 列出目录内容。"\t"命令"\n""我们走吧，他说。"\t"对白"\n'
                                       '"mount 挂载文件系统。"\t"命令"\n', encoding="utf-8")
    line, = check_lines(tmp_path)
    assert f"{tmp_path / 'test.tsv'}:3: " in line and "\n" not in line


def test_check_cli_names_the_tsv_line(tmp_path):
    "As a user meets it: `vertical-pretrain check` exits 1 with one line naming the file and the line."
    for s in ("train", "dev", "test"): write_tsv(tmp_path / f"{s}.tsv", DIALOGUE)
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in DIALOGUE[:3])
                                        + "printf 按格式\n输出。\t命令\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_minloglevel": "2"}
    r = subprocess.run([sys.executable, "-m", "vertical_pretrain.cli", "check", "--profile", "smoke",
                        "--set", f"finetune.task_dir={tmp_path}", "--set", "tapt.enabled=false"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    problems = [l for l in (r.stdout + r.stderr).splitlines() if "finetune.task_dir" in l]
    assert len(problems) == 1 and f"{tmp_path / 'train.tsv'}:5: 1 fields but the header has 2" in problems[0], r.stdout + r.stderr


# ---------------------------------------------------------------- labels typed by hand
REVIEWS = [("物流很快，包装完好。", "好评"), ("质量太差，用了两天就坏了。", "差评"), ("客服态度很好，推荐购买。", "好评"),
           ("和描述不符，申请退货。", "差评"), ("性价比高，还会回购。", "好评")]


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:  # as Excel saves "CSV UTF-8"
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def test_label_with_a_trailing_space_is_the_same_class(tmp_path):
    "NeuralNLP-NeuralClassifier#36: `好评 ` from a hand-typed Excel cell made a 2-class task a 3-class one."
    for s in ("train", "dev", "test"): write_csv(tmp_path / f"{s}.csv", REVIEWS)
    write_csv(tmp_path / "train.csv", [(t, l + " " if i == 2 else l) for i, (t, l) in enumerate(REVIEWS)])
    write_csv(tmp_path / "dev.csv", [(t, "\u3000" + l if i == 1 else l) for i, (t, l) in enumerate(REVIEWS)])  # full-width space
    t = tk.load_task(tmp_path)
    assert t["labels"] == ["好评", "差评"]  # sorted; was ['\u3000差评', '好评', '好评 ', '差评']
    (tmp_path / "labels.json").write_text('{"labels": ["好评 ", "差评"]}', encoding="utf-8")  # a hand-written label list
    t = tk.load_task(tmp_path)
    assert t["labels"] == ["好评", "差评"]
    assert [r["label"] for r in t["train"]] == [l for _, l in REVIEWS] == [r["label"] for r in t["dev"]]
    assert tk.targets(t["train"], t["labels"], False).tolist() == [0, 1, 0, 1, 0]
    assert check_lines(tmp_path) == []


def test_labels_that_differ_in_width_or_inner_spaces_are_refused_with_their_rows(tmp_path):
    for s in ("train", "dev", "test"): write_csv(tmp_path / f"{s}.csv", REVIEWS)
    write_csv(tmp_path / "dev.csv", [*REVIEWS, ("还行吧。", "好 评"), ("一般。", "ｏｋ"), ("不错。", "ok")])
    with pytest.raises(ValueError) as e:
        tk.load_task(tmp_path)
    msg, dev = str(e.value), tmp_path / "dev.csv"
    assert "\n" not in msg and "differ only in spaces or full-/half-width" in msg
    assert f"'好 评' ({dev}:7: 1 row)" in msg and f"'好评' ({tmp_path / 'train.csv'}:2, {tmp_path / 'train.csv'}:4, " in msg
    assert f"'ｏｋ' ({dev}:8: 1 row) vs 'ok' ({dev}:9: 1 row)" in msg
    line, = check_lines(tmp_path)  # the preflight says the same line
    assert f"'好 评' ({dev}:7: 1 row)" in line
