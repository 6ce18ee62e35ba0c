"""Stage 08: the man-page task (its build, tools/build_manpages_task.py, and reading it, task.py), metrics, fine-tuning and the
base-vs-domain comparison (finetune.py, report.py); real Paddle, real files."""
import gzip
import importlib.util
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from vertical_pretrain import finetune as ft
from vertical_pretrain import report as rp
from vertical_pretrain import task as tk
from vertical_pretrain.config import FinetuneConfig, get_config

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "data_file" / "manpages_cls"
MANPAGES_SRC = REPO.parent / "shared" / "data" / "manpages-zh"


def _load_tool(name: str):
    "A script of tools/ as a module (the repo's developer tools are not part of the package)."
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bmt = _load_tool("build_manpages_task")  # the man-page task's build: roff parser, cleaning, split by page

# Four sections with their own topic words among shared filler: a bag-of-characters signal a tiny random model can learn.
WORDS = {"1": "命令 参数 选项 输出 终端 用户 显示 执行", "3": "函数 指针 返回 调用 结构 内存 变量 类型",
         "5": "配置 文件 字段 格式 注释 条目 路径 设置", "8": "系统 守护 进程 管理 服务 内核 启动 网络"}
FILL = "这是 一个 关于 的 说明 在 中 可以 我们 他们 工作 问题 发展 经济 人民 国家".split()
# Small batches (many steps) are what makes a tiny random-init model learn reliably here: over 2 models x 6 seeds the
# worst test accuracy was 0.75 (majority class: 0.25), most runs 1.0; about 4 s a run on 2 busy cores.
SMOKE_FT = dict(max_seq_len=32, batch_size=8, learning_rate=2e-3, epochs=15, patience=5, seeds=2, train_cap=100)


def write_pages(src: Path, pages: int = 10, paras: int = 6, seed: int = 0) -> Path:
    "Real gzip roff man pages (man1/5/3/8) of synthetic text."
    rng = random.Random(seed)
    for sec, ws in WORDS.items():
        ws = ws.split()
        d = src / f"man{sec}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(pages):
            body = []
            for j in range(paras):
                toks = rng.sample(ws, 4) + rng.sample(FILL, 4)
                rng.shuffle(toks)
                body.append(".PP\n" + "".join(toks) + f"，\\fB第{i}{j}段\\fR，见 ls(1)。")
            src_text = f".TH P{i} {sec}\n.SH NAME\np{i} \\- x\n.SH \"DESCRIPTION 描述\"\n" + "\n".join(body) + "\n.SH \"SEE ALSO\"\n.BR ls (1)\n"
            (d / f"p{i}.{sec}.gz").write_bytes(gzip.compress(src_text.encode("utf-8")))
    (src / "copyright").write_text("License: GFDL-1.2+\n", encoding="utf-8")
    return src


@pytest.fixture(scope="module")
def smoke_task(tmp_path_factory):
    "The smoke task: 4 classes x 10 pages x 6 paragraphs, split by page."
    root = tmp_path_factory.mktemp("task")
    stats = bmt.build_task(write_pages(root / "src"), root / "task", min_chars=10)
    return root / "task", stats


def make_tiny_model(out_dir: Path, tok_dir: Path, seed: int = 0, **config) -> Path:
    "A random-init tiny ERNIE saved like an exported model dir, with the conftest char tokenizer (`config`: more ErnieConfig fields)."
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForPretraining
    shutil.copytree(tok_dir, out_dir)
    vocab_size = sum(1 for _ in open(out_dir / "vocab.txt", encoding="utf-8"))
    paddle.seed(seed)
    with ft.quiet_paddlenlp():
        ErnieForPretraining(ErnieConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0, **config)).save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, char_tokenizer_dir):
    root = tmp_path_factory.mktemp("models")
    return {"base": make_tiny_model(root / "a", char_tokenizer_dir, 0), "domain": make_tiny_model(root / "b", char_tokenizer_dir, 1)}


def rows(task_dir: Path, split: str) -> list[dict]:
    return [json.loads(l) for l in open(task_dir / f"{split}.jsonl", encoding="utf-8")]


# ---------------------------------------------------------------- roff parsing
def test_parse_roff_strips_macros_escapes_and_definitions():
    src = "\n".join([
        '.de Vb \\" begin verbatim', ".ft CW", "..", '.if n \\{\\', '.ds C` ""', ".\\}",
        ".TH LS 1", ".SH NAME", "ls \\- 列出目录内容", ".SH DESCRIPTION",
        "列出", ".I FILE", "的信息\\(em默认为当前目录\\&.", ".TP", ".BR \\-a \", \" \\-\\-all",
        "不隐藏以 \\fB.\\fP 开头的项", ".TS", "l l.", "表格 内容", ".TE", ".Sh 另见", ".Xr dir 1 ,"])
    paras = bmt.parse_roff(src)
    assert paras == [("NAME", "ls - 列出目录内容"), ("DESCRIPTION", "列出 FILE 的信息—默认为当前目录."),
                     ("DESCRIPTION", "-a, --all 不隐藏以 . 开头的项"), ("另见", "dir ,")]


def test_decode_page_falls_back_to_gb18030(tmp_path):
    p = tmp_path / "x.1.gz"
    p.write_bytes(gzip.compress(".SH 描述\n中文手册页\n".encode("gb2312")))
    text, enc = bmt.read_page(p)
    assert enc == "gb18030" and "中文手册页" in text
    (tmp_path / "bad.1.gz").write_bytes(b"x.1.gz")  # a lost symlink
    assert bmt.read_page(tmp_path / "bad.1.gz") == (None, "not_gzip")


# The tests below lived in nbs/03b_task.ipynb next to the build code before it moved to tools/build_manpages_task.py.
ROFF_DEMO = r'''.\" a comment
.de Sh \" Subsection
.PP
\fB\\$1\fR
..
.TH FOPEN 3 2002-01-03 "BSD MANPAGE"
.SH NAME
fopen, fdopen \- 打开流
.SH "DESCRIPTION 描述"
函数
.B fopen
打开文件名为
.I path
指向的字符串的文件，
将一个流与它关联。
.TP
.BR r+ " 或 " w
打开文本文件，用于\fB读写\fR\(em流被定位于文件的开始\&.
.if n \{\
.ds C` ""
.\}
.SH
SEE ALSO
.Xr fclose 3 ,
.BR umask (2)
'''


def test_parse_roff_man_macros_escapes_and_mdoc_refs():
    assert bmt.parse_roff(ROFF_DEMO) == [("NAME", "fopen, fdopen - 打开流"),
                                         ("DESCRIPTION 描述", "函数 fopen 打开文件名为 path 指向的字符串的文件，将一个流与它关联。"),
                                         ("DESCRIPTION 描述", "r+ 或 w 打开文本文件，用于读写—流被定位于文件的开始."),
                                         ("SEE ALSO", "fclose , umask(2)")]
    assert bmt.split_args('"a b" c "say ""hi""" ""') == ["a b", "c", 'say "hi"', ""]


def test_clean_paragraph_and_page_paragraphs():
    assert bmt.clean_paragraph("打开流，参见 fopen(3) 和 umask (2) 以及 Tk_Main(3tk) 的说明文字") == "打开流，参见 fopen 和 umask 以及 Tk_Main 的说明文字"
    assert bmt.clean_paragraph("Write all measured values out as a gnuplot file 中文") is None  # mostly English
    assert bmt.clean_paragraph("太短了") is None
    assert bmt.decode_page("中文页面".encode("gbk")) == ("中文页面", "gb18030")
    assert bmt.page_paragraphs(ROFF_DEMO, min_chars=5) == ["函数 fopen 打开文件名为 path 指向的字符串的文件，将一个流与它关联。",
                                                          "r+ 或 w 打开文本文件，用于读写—流被定位于文件的开始."]  # NAME is mostly ASCII, SEE ALSO dropped


def write_fake_pages(root: Path, per_section: int = 4, paras: int = 3) -> Path:
    "4 sections x `per_section` gzip roff pages, plus a lost symlink, a .so redirect, a GBK page and a duplicate paragraph."
    words = {"1": "命令行参数选项输出显示", "3": "函数返回指针调用参数", "5": "配置文件格式字段", "8": "系统守护进程管理员"}
    for sec, w in words.items():
        d = root / f"man{sec}"; d.mkdir(parents=True, exist_ok=True)
        for i in range(per_section):
            body = "\n".join(f".PP\n第{i}页第{j}段：这一段描述{w}，编号 {sec}{i}{j}，另见 \\fBls\\fR(1)。" for j in range(paras))
            src = f'.TH P{i} {sec}\n.SH NAME\np{i} \\- 页面\n.SH "DESCRIPTION 描述"\n{body}\n.SH "SEE ALSO"\n全部页面都一样的参见段落内容（{sec}）。\n'
            (d / f"p{i}.{sec}.gz").write_bytes(gzip.compress(src.encode("gbk" if (sec, i) == ("5", 0) else "utf-8")))
    (root / "man1" / "alias.1.gz").write_bytes(b"p0.1.gz")  # a lost symlink
    (root / "man1" / "so.1.gz").write_bytes(gzip.compress(b".so man1/p0.1\n"))
    (root / "man1" / "dup.1.gz").write_bytes(gzip.compress(".SH 描述\n第0页第0段：这一段描述命令行参数选项输出显示，编号 100，另见 \\fBls\\fR(1)。\n".encode()))
    (root / "copyright").write_text("License: GFDL-1.2+\n")
    return root


def test_build_task_on_handwritten_pages(tmp_path):
    st = bmt.build_task(write_fake_pages(tmp_path / "src"), tmp_path / "task", train_cap=5, min_chars=10)
    split_rows = {s: rows(tmp_path / "task", s) for s in ("train", "dev", "test")}
    pages = {s: {r["page"] for r in rs} for s, rs in split_rows.items()}
    assert not (pages["train"] & pages["dev"]) and not (pages["train"] & pages["test"]) and not (pages["dev"] & pages["test"])
    assert st["skipped_files"] == {"not_gzip": 1, "so_redirect": 1}
    assert st["encodings"]["gb18030"] == 1
    assert st["dedupe"]["duplicates_removed"] == 1  # dup.1 repeats p0.1's first paragraph
    assert all(v <= 5 for v in st["counts"]["train"]["examples"].values())
    assert not any("(1)" in r["text"] for rs in split_rows.values() for r in rs)  # section numbers of cross refs are gone
    assert (tmp_path / "task" / "copyright").exists() and (tmp_path / "task" / "README.md").exists()
    un = (tmp_path / "task" / "unlabeled.txt").read_text(encoding="utf-8")
    assert un.strip() and all(r["text"] not in un for r in split_rows["test"] + split_rows["dev"])  # no test page text in the TAPT corpus
    from vertical_pretrain.tapt import tapt_corpus  # stage 07a turns unlabeled.txt into a corpus
    assert tapt_corpus(tmp_path / "task", tmp_path / "tapt").read_text(encoding="utf-8") == un
    assert bmt.build_task(tmp_path / "src", tmp_path / "task", train_cap=5, min_chars=10) == st  # manifest matches: skipped


def test_build_task_script_main(tmp_path, capsys):
    write_fake_pages(tmp_path / "src")
    assert bmt.main(["--src_dir", str(tmp_path / "src"), "--output_dir", str(tmp_path / "task_cli"), "--train_cap", "5",
                     "--profile", "smoke"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == json.loads((tmp_path / "task_cli" / "stats.json").read_text(encoding="utf-8"))["totals"]
    assert bmt.main(["--src_dir", str(tmp_path / "no_such_dir"), "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no man pages under"), err


# ---------------------------------------------------------------- the task
def test_build_task_splits_by_page_and_reports_counts(smoke_task, tmp_path):
    task_dir, stats = smoke_task
    pages = {s: {r["page"] for r in rows(task_dir, s)} for s in ("train", "dev", "test")}
    assert all(pages[s] for s in pages)
    assert not (pages["train"] & pages["dev"]) and not (pages["train"] & pages["test"]) and not (pages["dev"] & pages["test"])
    # counts in stats.json match the files, per split and label
    for s in ("train", "dev", "test"):
        got = {}
        for r in rows(task_dir, s): got[r["label"]] = got.get(r["label"], 0) + 1
        assert got == stats["counts"][s]["examples"]
    assert stats["labels"] == ["1", "3", "5", "8"]
    readme = (task_dir / "README.md").read_text(encoding="utf-8")
    assert "| 8 |" in readme and "GFDL" in readme
    assert (task_dir / "copyright").read_text() == "License: GFDL-1.2+\n"
    # SEE ALSO is dropped and section numbers of cross references are removed
    assert not any("(1)" in r["text"] for s in pages for r in rows(task_dir, s))
    # TAPT text holds train pages only
    unlabeled = (task_dir / "unlabeled.txt").read_text(encoding="utf-8")
    assert all(r["text"] not in unlabeled for r in rows(task_dir, "test") + rows(task_dir, "dev"))
    assert any(r["text"] in unlabeled for r in rows(task_dir, "train"))
    from vertical_pretrain.tapt import tapt_corpus
    tapt = tapt_corpus(task_dir, tmp_path / "tapt")
    assert tapt == tmp_path / "tapt" / "text" / "manpages_cls.txt" and tapt.read_text(encoding="utf-8") == unlabeled


def test_build_task_caps_train_and_is_deterministic(smoke_task, tmp_path):
    task_dir, _ = smoke_task
    src = task_dir.parent / "src"
    st = bmt.build_task(src, tmp_path / "capped", train_cap=5, min_chars=10)
    assert st["counts"]["train"]["examples"] == {"1": 5, "3": 5, "5": 5, "8": 5}
    again = bmt.build_task(src, tmp_path / "capped2", train_cap=5, min_chars=10)
    assert (tmp_path / "capped" / "train.jsonl").read_bytes() == (tmp_path / "capped2" / "train.jsonl").read_bytes()
    assert again["counts"] == st["counts"]


def test_build_task_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no man pages"):
        bmt.build_task(tmp_path / "empty", tmp_path / "out")
    src = write_pages(tmp_path / "src", pages=2)
    with pytest.raises(ValueError, match="need >= 3"):
        bmt.build_task(src, tmp_path / "out", min_chars=10)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_committed_task_is_split_by_page():
    stats = json.loads((TASK / "stats.json").read_text(encoding="utf-8"))
    assert stats["labels"] == ["1", "3", "5", "7", "8"]
    pages = {}
    for s in ("train", "dev", "test"):
        rs = rows(TASK, s)
        pages[s] = {r["page"] for r in rs}
        assert len(rs) == stats["totals"][s]
        assert {r["label"] for r in rs} == set(stats["labels"])
        assert all(r["page"].startswith(f"man{r['label']}/") or (r["label"] == "3" and r["page"].startswith("man2/")) for r in rs)
    assert not (pages["train"] & pages["dev"] or pages["train"] & pages["test"] or pages["dev"] & pages["test"])
    assert max(stats["counts"]["train"]["examples"].values()) <= stats["params"]["train_cap"]
    assert "GFDL-1.2+" in (TASK / "copyright").read_text(encoding="utf-8")
    texts = [r["text"] for s in ("train", "dev", "test") for r in rows(TASK, s)]
    assert len(texts) == len(set(texts))  # deduplicated


@pytest.mark.skipif(not MANPAGES_SRC.is_dir(), reason="manpages-zh source not beside the repo")
def test_committed_task_rebuilds_identically(tmp_path):
    p = json.loads((TASK / "stats.json").read_text(encoding="utf-8"))["params"]
    bmt.build_task(MANPAGES_SRC, tmp_path / "t", **{k: p[k] for k in ("train_cap", "eval_cap", "dev_frac", "test_frac",
                                                                     "max_per_page", "min_chars", "min_cjk_ratio", "max_chars", "seed")})
    for f in ("train.jsonl", "dev.jsonl", "test.jsonl", "unlabeled.txt", "labels.json"):
        assert (tmp_path / "t" / f).read_bytes() == (TASK / f).read_bytes(), f


# ---------------------------------------------------------------- metrics
def test_multilabel_metrics_hand_computed():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.array([[.9, .2, .4], [.6, .7, .1], [.8, .3, .2], [.1, .1, .95]])
    m = ft.multilabel_metrics(y, (probs >= 0.5).astype(int))
    # per label TP/FP/FN: A 2/1/0, B 1/0/1, C 1/0/1 -> F1 4/5, 2/3, 2/3; micro TP 4 FP 1 FN 2
    assert m["micro_f1"] == pytest.approx(8 / 11)
    assert m["macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 2 / 3) / 3)
    assert m["per_label_f1"] == pytest.approx([4 / 5, 2 / 3, 2 / 3], abs=1e-6)
    assert m["subset_accuracy"] == 0.25
    th = ft.tune_thresholds(y, probs)
    assert list(th) == [0.65, 0.3, 0.4]  # perfect-F1 intervals (0.6,0.8], (0.2,0.3], (0.2,0.4]; ties go nearest 0.5
    s = ft.score(np.log(probs / (1 - probs)), y, True, th)
    assert s["micro_f1"] == pytest.approx(1.0) and s["thresholds"] == [0.65, 0.3, 0.4]


def test_multiclass_metrics_and_majority():
    m = ft.multiclass_metrics([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert m["accuracy"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    b = ft.majority_baseline(np.array([2, 2, 0, 1, 2]), 3)
    assert b["predicts"] == 2 and b["accuracy"] == pytest.approx(0.6)


# ---------------------------------------------------------------- fine-tuning
def test_finetune_beats_majority_and_writes_metrics(smoke_task, tiny_models, tmp_path):
    task_dir, _ = smoke_task
    m = ft.finetune(tiny_models["base"], task_dir, tmp_path / "run", seed=0, fcfg=FinetuneConfig(**SMOKE_FT), name="base", progress=False)
    base = m["baseline"]["test"]
    assert base["accuracy"] == pytest.approx(0.25)  # balanced smoke test set
    assert m["test"]["accuracy"] >= base["accuracy"] + 0.25, m["test"]
    assert m["test"]["macro_f1"] > base["macro_f1"] + 0.25
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["seed"] == 0 and saved["model"] == "base" and saved["problem"] == "multi_class"
    assert 1 <= saved["best_epoch"] <= saved["epochs_run"] <= SMOKE_FT["epochs"]
    assert saved["dev"]["macro_f1"] == max(h["dev_macro_f1"] for h in saved["history"])  # test used the best dev epoch
    assert saved["params"]["learning_rate"] == SMOKE_FT["learning_rate"]


def test_finetune_dropout_replaces_the_pretraining_value(tiny_models):
    import paddle
    def rates(m): return {round(l.p, 6) for l in m.sublayers() if isinstance(l, paddle.nn.Dropout)}
    _, plain = ft.load_classifier(tiny_models["base"], 3)
    assert plain.config.hidden_dropout_prob == 0.0 and rates(plain) == {0.0}  # the tiny models are saved without dropout
    _, m = ft.load_classifier(tiny_models["base"], 3, dropout=0.25)
    assert (m.config.hidden_dropout_prob, m.config.attention_probs_dropout_prob) == (0.25, 0.25) and 0.25 in rates(m)


def test_finetune_is_deterministic_and_stops_early(smoke_task, tiny_models):
    task_dir, _ = smoke_task
    fc = FinetuneConfig(**{**SMOKE_FT, "epochs": 6, "patience": 1, "learning_rate": 1e-6})  # too small an lr to improve
    a = ft.finetune(tiny_models["domain"], task_dir, None, seed=3, fcfg=fc, progress=False)
    b = ft.finetune(tiny_models["domain"], task_dir, None, seed=3, fcfg=fc, progress=False)
    assert a["test"] == b["test"] and a["history"] == b["history"]
    assert a["epochs_run"] < 6  # dev F1 stalls -> patience 1 stops it


def test_multilabel_finetune(tmp_path, tiny_models):
    rng = random.Random(0)
    topics = {"a": "函数指针返回", "b": "配置文件字段", "c": "系统进程服务"}
    def make(n):
        out = []
        for _ in range(n):
            labs = sorted(rng.sample(list(topics), rng.choice([1, 2])))
            out.append({"text": "".join(topics[l] for l in labs) + "".join(rng.sample(FILL, 4)), "labels": labs})
        return out
    for s, n in (("train", 60), ("dev", 20), ("test", 20)):
        (tmp_path / f"{s}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make(n)), encoding="utf-8")
    m = ft.finetune(tiny_models["base"], tmp_path, tmp_path / "out", seed=0,
                    fcfg=FinetuneConfig(**{**SMOKE_FT, "epochs": 8, "patience": 8, "learning_rate": 3e-3}), progress=False)
    assert m["problem"] == "multi_label" and m["labels"] == ["a", "b", "c"] and m["baseline"] is None
    assert m["test"]["thresholds"] == m["dev"]["thresholds"]  # tuned on dev, reused on test
    assert all(0.05 <= t <= 0.95 for t in m["test"]["thresholds"])
    assert {"micro_f1", "macro_f1", "subset_accuracy"} <= set(m["test"])
    assert m["test"]["micro_f1"] > 0.5


def test_load_task_rejects_bad_rows(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="train.jsonl:2: not JSON"):
        tk.load_task(tmp_path)


# ---------------------------------------------------------------- task files as CSV / TSV
TRICKY = ["ls 列出目录，支持 \"-l\" 选项", "第一行\n第二行, 带逗号", "\"引号开头\"的一段", "printf\t格式化输出"]


def write_table(path: Path, header: list[str], records: list[list], delimiter: str = ",", encoding: str = "utf-8",
                quote_all: bool = False) -> Path:
    "A CSV/TSV file as a spreadsheet program writes it (the csv module, quoting where needed, or every field)."
    import csv
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(records)
    return path


def write_jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return path


def split_rows(seed: int, multi: bool):
    "[(text, label or [labels])] for one split: the tricky texts plus some plain ones."
    rng = random.Random(seed)
    texts = TRICKY + [f"第{seed}{i}段：{rng.choice(FILL)}{rng.choice(FILL)}" for i in range(6)]
    return [(t, sorted(rng.sample("abc", rng.randint(1, 2))) if multi else rng.choice(["1", "3", "5"])) for t in texts]


def test_csv_multiclass_task_gives_the_jsonl_rows(tmp_path):
    j, c = tmp_path / "jsonl", tmp_path / "csv"
    j.mkdir(); c.mkdir()
    for k, s in enumerate(("train", "dev", "test")):
        rs = split_rows(k, multi=False)
        write_jsonl(j / f"{s}.jsonl", [{"text": t, "label": l} for t, l in rs])
        write_table(c / f"{s}.csv", ["类别", "内容"], [[l, t] for t, l in rs], encoding="utf-8-sig")  # Excel's BOM
    want = tk.load_task(j)
    got = tk.load_task(c, FinetuneConfig(text_column="内容", label_column="类别"))
    for s in ("train", "dev", "test"):
        assert got[s] == want[s] and len(got[s]) == 10
    assert (got["labels"], got["multi_label"]) == (want["labels"], False)
    assert got["train"][1]["text"] == "第一行\n第二行, 带逗号"  # quoted newline and comma stay in the text
    assert got["files"]["dev"].endswith("dev.csv") and want["files"]["dev"].endswith("dev.jsonl")
    # JSONL with the same custom keys: the same rows again
    jc = tmp_path / "jsonl_custom"
    jc.mkdir()
    for s in ("train", "dev", "test"):
        write_jsonl(jc / f"{s}.jsonl", [{"内容": r["text"], "类别": r["label"]} for r in want[s]])
    assert tk.load_task(jc, FinetuneConfig(text_column="内容", label_column="类别"))["test"] == want["test"]


def test_tsv_multilabel_task_gives_the_jsonl_rows(tmp_path):
    j, t = tmp_path / "jsonl", tmp_path / "tsv"
    j.mkdir(); t.mkdir()
    for k, s in enumerate(("train", "dev", "test")):
        rs = split_rows(10 + k, multi=True)
        write_jsonl(j / f"{s}.jsonl", [{"text": x, "labels": ls} for x, ls in rs])
        # GB18030 like a Windows export, with an extra column that is kept as a field; texts with tabs and newlines:
        # every field quoted, the header too, so the TSV says it is quoted (task.tsv_is_quoted)
        write_table(t / f"{s}.tsv", ["id", "sentence", "tags"], [[i, x, "|".join(ls)] for i, (x, ls) in enumerate(rs)],
                    delimiter="\t", encoding="gb18030", quote_all=True)
    fc = FinetuneConfig(text_column="sentence", label_column="tags", label_delimiter="|")
    want, got = tk.load_task(j), tk.load_task(t, fc)
    for s in ("train", "dev", "test"):
        assert [{k: v for k, v in r.items() if k != "id"} for r in got[s]] == want[s]
        assert [r["id"] for r in got[s]] == [str(i) for i in range(10)]
    assert got["multi_label"] and want["multi_label"] and got["labels"] == want["labels"] == ["a", "b", "c"]
    assert got["train"][3]["text"] == "printf\t格式化输出"
    y = tk.targets(got["train"], got["labels"], True)
    assert y.shape == (10, 3) and (y.sum(1) >= 1).all()
    # a JSONL label string split on the delimiter is the same multi-label row
    jd = tmp_path / "jsonl_delim"
    jd.mkdir()
    for s in ("train", "dev", "test"):
        write_jsonl(jd / f"{s}.jsonl", [{"sentence": r["text"], "tags": "|".join(r["labels"])} for r in want[s]])
    assert tk.load_task(jd, fc)["dev"] == want["dev"]


def test_task_file_errors_name_file_and_line(tmp_path):
    fc = FinetuneConfig(text_column="内容", label_column="类别")
    d = tmp_path / "t"
    d.mkdir()
    write_table(d / "train.csv", ["内容", "类别"], [["好", "a"], ["多行\n文本", "b"], ["  ", "a"]])
    for s in ("dev", "test"): write_table(d / f"{s}.csv", ["内容", "类别"], [["好", "a"]])
    # the empty text is on physical line 5 (the quoted record before it spans lines 3-4)
    with pytest.raises(ValueError, match=r"train\.csv:5: empty text in '内容'"):
        tk.load_task(d, fc)
    write_table(d / "train.csv", ["内容", "类别"], [["好", "a"]])
    with pytest.raises(ValueError, match=r"train\.csv:1: no column 'text' in the header \['内容', '类别'\]; set finetune\.text_column"):
        tk.load_task(d)  # default columns
    with pytest.raises(ValueError, match=r"train\.csv:1: no column 'label'.*finetune\.label_column"):
        tk.load_task(d, FinetuneConfig(text_column="内容"))
    write_jsonl(d / "dev.jsonl", [{"内容": "好", "类别": "a"}])
    with pytest.raises(ValueError, match="the dev split exists as dev.jsonl and dev.csv; keep one"):
        tk.load_task(d, fc)
    (d / "dev.jsonl").unlink()
    (d / "test.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"no test split \(test.jsonl / test.csv / test.tsv\)"):
        tk.load_task(d, fc)
    (d / "test.tsv").write_text("内容\t类别\n好\ta\t多余\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.tsv:2: 3 fields but the header has 2"):
        tk.load_task(d, fc)
    (d / "test.tsv").write_text("内容\t类别\n好\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.tsv:2: '类别' must be a non-empty label"):
        tk.load_task(d, fc)
    write_jsonl(d / "train.jsonl", [{"内容": "好"}])
    (d / "train.csv").unlink()
    with pytest.raises(ValueError, match=r"train\.jsonl:1: no '类别' field \(finetune\.label_column"):
        tk.load_task(d, fc)


def test_run_key_follows_the_csv_files(tmp_path):
    fc = FinetuneConfig()
    for s in ("train", "dev", "test"): write_table(tmp_path / f"{s}.csv", ["text", "label"], [["好", "a"], ["坏", "b"]])
    key = ft._run_key("m", tk.load_task(tmp_path, fc), 0, fc)
    assert set(key["task_files"]) == {"train", "dev", "test"} and key["task_files"]["dev"]["size"] > 0
    write_table(tmp_path / "dev.csv", ["text", "label"], [["好", "a"], ["坏", "b"], ["中", "a"]])
    assert ft._run_key("m", tk.load_task(tmp_path, fc), 0, fc)["task_files"]["dev"] != key["task_files"]["dev"]


def test_finetune_cli_reads_a_csv_task_with_configured_columns(smoke_task, tiny_models, tmp_path):
    from vertical_pretrain.cli import main
    task_dir, _ = smoke_task
    csv_dir = tmp_path / "csv_task"
    csv_dir.mkdir()
    for s in ("train", "dev", "test"):
        write_table(csv_dir / f"{s}.csv", ["section", "paragraph"], [[r["label"], r["text"]] for r in rows(task_dir, s)])
    rc = main(["finetune", "--model_dir", str(tiny_models["base"]), "--task_dir", str(csv_dir), "--output_dir", str(tmp_path / "one"),
               "--profile", "smoke", "--set", "finetune.max_seq_len=32", "--set", "finetune.epochs=1",
               "--set", "finetune.text_column=paragraph", "--set", "finetune.label_column=section"])
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert rc == 0 and m["n_dev"] == len(rows(task_dir, "dev")) and m["labels"] == tk.load_task(task_dir)["labels"]


# ---------------------------------------------------------------- comparison
def test_probe_features_are_the_mean_of_the_encoder_output_over_real_tokens(tiny_models):
    "mean_pooled_features: a text's features do not depend on its batch (padding), and equal the mean of ErnieModel's output."
    import paddle
    tok = ft.load_tokenizer(str(tiny_models["base"]))
    with ft.quiet_paddlenlp("ERROR"):
        enc_model = ft.load_model(tiny_models["base"], "Model")
    texts = [{"text": "命令行参数"}, {"text": "系统守护进程管理员服务"}, {"text": "函数"}]
    enc = ft.encode(tok, texts, 32)
    batched = ft.mean_pooled_features(enc_model, enc, 3, tok.pad_token_id)
    assert batched.shape == (3, 32) and batched.dtype == np.float32
    for i, r in enumerate(texts):
        ids = paddle.to_tensor([enc["input_ids"][i]])
        seq = enc_model(ids, token_type_ids=paddle.zeros_like(ids))[0].numpy()[0]
        np.testing.assert_allclose(batched[i], seq.mean(0), atol=1e-5)


def test_compare_writes_one_row_per_model_and_all_seeds(smoke_task, tiny_models, tmp_path):
    task_dir, _ = smoke_task
    fc = FinetuneConfig(**{**SMOKE_FT, "epochs": 4})
    s = ft.compare(tiny_models, task_dir, tmp_path / "finetune", seeds=2, fcfg=fc, progress=False)
    out = tmp_path / "finetune"
    for name in tiny_models:
        for k in range(2):
            m = json.loads((out / name / f"seed_{k}" / "metrics.json").read_text(encoding="utf-8"))
            assert (m["seed"], m["model"]) == (k, name)
    md = (out / "comparison.md").read_text(encoding="utf-8")
    fine_tune_md, probe_md = md.split("## Linear probe (frozen features)")
    table = [l for l in fine_tune_md.splitlines() if l.startswith("| ") and not l.startswith("| model")]
    assert [l.split("|")[1].strip() for l in table] == ["base", "domain", "char 1-3-gram TF-IDF + logistic regression", "majority class"]
    # one linear-probe row per model, the numbers `linear_probe` gives on its own (deterministic), Δ against the base's
    probe_rows = [l.split("|") for l in probe_md.split("## ")[0].splitlines() if l.startswith("| ") and not l.startswith("| model")]
    assert [r[1].strip() for r in probe_rows] == ["base", "domain"]
    task = tk.load_task(task_dir, fc)
    for name, r in zip(tiny_models, probe_rows):
        assert s["probe"][name] == ft.linear_probe(tiny_models[name], task, fc)
        assert r[2].strip() == f"{s['probe'][name]['test']['macro_f1'] * 100:.2f}"
        assert s["probe"][name]["test"]["n"] == len(task["test"])
    assert probe_rows[1][4].strip() == f"{(s['probe']['domain']['test']['macro_f1'] - s['probe']['base']['test']['macro_f1']) * 100:+.2f}"
    assert any(v.startswith("Linear probe (frozen mean-pooled features") for v in rp.verdict(s))
    assert [l.split("|")[2].strip() for l in table[:2]] == ["2", "2"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    j = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert j["models"]["domain"]["seeds"] == [0, 1] and len(j["models"]["base"]["test_macro_f1"]) == 2
    d = j["models"]["domain"]["vs_base"]["macro_f1"]
    assert d["delta"] == pytest.approx(np.mean(j["models"]["domain"]["test_macro_f1"]) - np.mean(j["models"]["base"]["test_macro_f1"]))
    assert d["exceeds_spread"] == (abs(d["delta"]) > d["spread"])
    assert s["models"].keys() == j["models"].keys()
    assert j["linear"]["test"]["n"] == len(tk.load_task(task_dir)["test"]) and "For scale:" in md
    # the report is re-made from comparison.json alone (no fine-tuning): the same page, plus another stage's section if given
    again = rp.write_report(j, tmp_path / "report", ft.recipe(fc), task_dir)
    assert again["md"].read_text(encoding="utf-8") == md
    extra = "## Held-out MLM loss\n\n| model | loss |\n|---|---|\n| base | 5.1 |\n"
    md2 = rp.comparison_markdown(j, ft.recipe(fc), task_dir, extra_sections=[extra], extra_verdict=["domain adapted."])
    assert md2.index("| majority class |") < md2.index("## Held-out MLM loss") < md2.index("## Verdict") < md2.index("- domain adapted.")
    # a model no better than always answering the most frequent class is named in the verdict (real rows, then one forced)
    floor = [n for n, r in j["models"].items() if r["test_accuracy_mean"] <= j["baseline"]["accuracy"]]
    assert any("most frequent class" in v for v in rp.verdict(j)) == bool(floor)
    stuck = json.loads(json.dumps(j))
    stuck["models"]["domain"]["test_accuracy_mean"] = j["baseline"]["accuracy"]
    line = next(v for v in rp.verdict(stuck) if "most frequent class" in v)
    assert line.startswith("WARNING: domain") and f"{j['baseline']['accuracy'] * 100:.2f}" in line
    # a rerun reuses the finished runs (same inputs and params): metrics files are not rewritten
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed_*/metrics.json")}
    ft.compare(tiny_models, task_dir, out, seeds=2, fcfg=fc, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed_*/metrics.json")} == before
    # two spawned worker processes give the same runs as one process, one after the other
    par = ft.compare(tiny_models, task_dir, tmp_path / "parallel", seeds=2, fcfg=FinetuneConfig(**{**SMOKE_FT, "epochs": 4, "workers": 2}),
                     progress=False)
    for name in tiny_models:
        assert par["models"][name]["test_macro_f1"] == s["models"][name]["test_macro_f1"]
        assert par["models"][name]["epochs_run"] == s["models"][name]["epochs_run"]


def test_run_stage_and_cli(smoke_task, tiny_models, tmp_path, capsys):
    from vertical_pretrain.cli import main
    task_dir, _ = smoke_task
    cfg = get_config("smoke", {"paths.output_root": str(tmp_path / "output"), "finetune.task_dir": str(task_dir),
                               **{f"finetune.{k}": v for k, v in {**SMOKE_FT, "epochs": 2, "seeds": 1}.items()}})
    s = ft.run_stage(cfg, {"base": str(tiny_models["base"])}, progress=False)
    out = tmp_path / "output" / "smoke" / "finetune"
    assert (out / "manifest_finetune.json").is_file() and (out / "base" / "seed_0" / "metrics.json").is_file()
    assert ft.run_stage(cfg, {"base": str(tiny_models["base"])}, progress=False) == json.loads((out / "comparison.json").read_text())
    assert s["models"]["base"]["n_seeds"] == 1
    # CLI: bad model dir -> clear error, exit 2; good run -> exit 0 and the table
    assert main(["compare", "--models", f"base={tmp_path}/missing", "--task_dir", str(task_dir), "--seeds", "1",
                 "--output_dir", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    rc = main(["finetune", "--model_dir", str(tiny_models["domain"]), "--task_dir", str(task_dir), "--seed", "1",
               "--output_dir", str(tmp_path / "one"), "--profile", "smoke", "--set", "finetune.max_seq_len=32"])
    assert rc == 0 and json.loads((tmp_path / "one" / "metrics.json").read_text())["seed"] == 1
    assert main(["build-task", "--src_dir", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "t")]) == 2


def test_runs_are_placed_on_the_configured_devices(smoke_task, tiny_models, tmp_path, capsys):
    "Issue 18, defect 9: fine-tune runs go to launch.device/devices (one worker per GPU) and record where they ran."
    task_dir, _ = smoke_task
    cfg = get_config("smoke", {"paths.output_root": str(tmp_path / "output"), "finetune.task_dir": str(task_dir),
                               **{f"finetune.{k}": v for k, v in {**SMOKE_FT, "epochs": 1, "seeds": 1, "workers": 2}.items()}})
    assert ft.finetune_devices(cfg) == ["cpu"]
    gpu = cfg.override({"launch.device": "gpu", "launch.devices": "2,3", "train.use_amp": True})
    assert ft.finetune_devices(gpu, cuda=True) == ["gpu:2", "gpu:3"]  # indexes within CUDA_VISIBLE_DEVICES, as in 06a
    assert ft.finetune_devices(gpu, cuda=False) == ["cpu"]
    assert "WARNING: launch.device=gpu but this Paddle build has no CUDA: fine-tuning on CPU" in capsys.readouterr().err
    ft.run_stage(cfg, dict(tiny_models), progress=False)  # 2 runs in 2 spawned workers, each bound to a device
    runs = [json.loads(p.read_text()) for p in (tmp_path / "output" / "smoke" / "finetune").glob("*/seed_0/metrics.json")]
    assert len(runs) == len(tiny_models) and {(m["device"], m["amp"]) for m in runs} == {("cpu", None)}


# ---------------------------------------------------------------- shapes checked before training (issue 15, fault 2)
def test_finetune_and_compare_stop_before_training_when_max_seq_len_exceeds_positions(smoke_task, tiny_models, char_tokenizer_dir,
                                                                                      tmp_path, capsys):
    from vertical_pretrain.cli import main
    task_dir, _ = smoke_task
    short = make_tiny_model(tmp_path / "pos32", char_tokenizer_dir, max_position_embeddings=32)
    rc = main(["finetune", "--model_dir", str(short), "--task_dir", str(task_dir), "--output_dir", str(tmp_path / "one"),
               "--profile", "smoke", "--set", "finetune.max_seq_len=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1, err  # one line, not Paddle's "OP(embedding) expected >= 0 and < 32, but got 32"
    assert "finetune.max_seq_len=64 > max_position_embeddings=32" in err[0] and "fix: --set finetune.max_seq_len=32" in err[0]
    assert str(short) in err[0] and not (tmp_path / "one").exists()  # names the model's config; nothing trained or written
    # compare checks every model before the first run: the fitting model is not fine-tuned either
    rc = main(["compare", "--models", f"base={tiny_models['base']}", f"short={short}", "--task_dir", str(task_dir), "--seeds", "1",
               "--output_dir", str(tmp_path / "cmp"), "--profile", "smoke", "--set", "finetune.max_seq_len=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "finetune.max_seq_len=64 > max_position_embeddings=32" in err[0], err
    assert not (tmp_path / "cmp").exists()


def test_default_demo_task_on_a_users_corpus_is_flagged():
    "A user's own book fine-tuned on the demo's default task: the report says those rows are not about their domain."
    demo = get_config("demo")
    assert ft.task_relevance(demo) == []  # the demo book and its own task
    mine = demo.override({"paths.corpus": "my_manuals"})
    (line,) = ft.task_relevance(mine)
    assert line.startswith("WARNING") and "my_manuals" in line and "finetune.task_dir" in line
    assert ft.task_relevance(mine.override({"finetune.task_dir": "data_file/my_task"})) == []  # their own task
    blend = demo.override({"data.blend": ["0.8 my_manuals", "0.2 general"]})
    assert "corpus is my_manuals:" in ft.task_relevance(blend)[0]  # general text is replay, not a domain
