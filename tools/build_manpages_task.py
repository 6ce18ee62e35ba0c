"""Build the demo fine-tune task `data_file/manpages_cls/` from Debian's `manpages-zh` (developer tool, not part of the package).

The task ships built in the repo; this script is only needed to rebuild it, e.g. after changing a cleaning rule or with
another release of manpages-zh. It reads the gzip roff pages under `<src_dir>/man1..man8/`, keeps the Chinese body
paragraphs, labels each by its man section and splits train/dev/test by page (the design is explained in
nbs/03b_task.ipynb, section 2). It imports `vertical_pretrain` for what it shares with the package: the text decoder
(`textio`), the atomic writers and the manifest (`fileio`), the config flags and the fixed seeded subset `task._sample`
(the same one `task.cap_per_class` takes, so a rebuilt task is byte-identical).

Usage: python tools/build_manpages_task.py --src_dir ../shared/data/manpages-zh [--output_dir DIR] [--train_cap N] ...
       (`vertical-pretrain build-task ...` runs this script from a repo checkout)
Errors (no pages, a label with too few pages) are one line `error: ...`, exit 2, and nothing half-written.
"""
import argparse
import collections
import gzip
import json
import random
import re
import shutil
import sys
from pathlib import Path

from tqdm.auto import tqdm

from vertical_pretrain.config import add_config_args, cli_errors, config_from_args, resolve_path
from vertical_pretrain.fileio import atomic_dir, stage_is_done, write_manifest
from vertical_pretrain.task import TASK_ERRORS, _sample  # _sample: the package's seeded subset, so rebuilds match
from vertical_pretrain.textio import CJK, HAN_RE, TextDecodeError, decode_text


# ---------------------------------------------------------------- roff source -> paragraphs
# Only paragraph boundaries and text matter, not layout: requests and macros that break a paragraph end it, font
# macros keep their text, everything else (.if .de .nr .ds .ta ...) is layout and dropped; inline escapes become the
# characters they stand for. groff -Tutf8 would wrap at 80 columns and is not installed everywhere.
# Named glyphs (\(xx, \[xx]) and predefined strings (\*(xx) that carry text; unknown names vanish.
_GLYPHS = {"em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
           "bu": "•", "co": "©", "rg": "®", "tm": "™", "de": "°", "ga": "`", "ul": "_", "sl": "/", "bv": "|", "br": "|",
           "ti": "~", "ha": "^", "pl": "+", "eq": "=", "<=": "≤", ">=": "≥", "!=": "≠", "mu": "×", "di": "÷",
           "->": "→", "<-": "←", "pd": "∂", "*p": "π", "*b": "β", "*a": "α", "*W": "Ω", "PI": "π", "TX": "TeX",
           'L"': "“", 'R"': "”", "--": "—", "Aq": "'", "R": "®", "C`": "", "C'": "", "Tr": ""}

_ESC = re.compile(r"""\\(?:
    (?P<comment>["\#].*$)                              # \" comment to end of line
  | f(?:\(..|\[[^\]]*\]|.)                            # font change
  | s[-+]?(?:\(\d\d|\[[^\]]*\]|\d)                     # size change
  | \*(?:\((?P<s2>..)|\[(?P<sl>[^\]]*)\]|(?P<s1>.))    # predefined string
  | \((?P<g2>..)                                        # glyph \(xx
  | \[(?P<gl>[^\]]*)\]                                  # glyph \[name]
  | [nkgmMVY](?:\(..|\[[^\]]*\]|.)                      # registers, colours, environment
  | [hvwlLDoHSxXbNRZ](?P<q>['"|]).*?(?P=q)              # escapes with a quoted argument (motion, width, ...)
  | (?P<lit>[-e\\.'`\ 0~])                              # literal characters
  | [&|^%c{}adprtuz!:/,)]                               # zero-width or layout only
  | (?P<other>.)
)""", re.X)
_LITERAL = {"e": "\\", "\\": "\\", "0": " ", "~": " ", " ": " "}

def _escape_repl(m) -> str:
    if m.group("comment") is not None: return ""
    name = m.group("s2") or m.group("sl") or m.group("s1") or m.group("g2") or m.group("gl")
    if name is not None: return _GLYPHS.get(name, "")
    if m.group("lit") is not None: return _LITERAL.get(m.group("lit"), m.group("lit"))
    o = m.group("other")
    return o if o is not None and not o.isalpha() else ""

def strip_escapes(s: str) -> str:
    "Replace roff inline escapes (fonts, sizes, glyphs, strings, comments) by the text they stand for."
    return _ESC.sub(_escape_repl, s)

def split_args(s: str) -> list[str]:
    "Split macro arguments the roff way: blanks separate, double quotes group, `\"\"` inside quotes is a quote."
    out, cur, inq, started, i = [], [], False, False, 0
    while i < len(s):
        ch = s[i]
        if inq:
            if ch == '"':
                if s[i + 1:i + 2] == '"': cur.append('"'); i += 2; continue
                inq = False
            else: cur.append(ch)
        elif ch == '"' and not cur: inq = started = True
        elif ch in " \t":
            if cur or started: out.append("".join(cur)); cur, started = [], False
        else: cur.append(ch)
        i += 1
    if cur or started: out.append("".join(cur))
    return out

# Macros that end a paragraph (man, mdoc, pod2man, Tcl/Tk man pages).
_BREAK = {"PP", "LP", "P", "TP", "TQ", "HP", "IP", "sp", "Sp", "Pp", "Lp", "Bl", "El", "It", "Bd", "Ed", "bp", "Vb", "Ve",
          "CS", "CE", "DS", "DE", "EX", "EE", "nf", "fi", "SS", "Ss", "RS", "RE", "in", "ti", "AP", "OP", "SO", "SE"}
_ALTERNATING = {"BR", "IR", "BI", "RB", "IB", "RI"}  # alternating fonts: arguments are glued together
_INLINE = {"B", "I", "SM", "SB", "Nm", "Ar", "Fl", "Op", "Oo", "Oc", "Xr", "Pa", "Dq", "Pq", "Sq", "Ql", "Em", "Ic", "Tn",
           "Sx", "Dl", "Va", "Fn", "Fa", "Ft", "Fd", "Cm", "Li", "Ev", "Sy", "Er", "Ad", "Dv", "An", "Cd", "Nd", "Qq", "UR",
           "MT", "Aq", "Bq", "Brq", "Nx", "Bx", "Ux", "At", "St", "Vt", "Lk", "Mt", "Pf", "So", "Sc"}
_MDOC_CALLABLE = _INLINE | {"No", "Ns", "Pc", "Po", "Qo", "Qc", "Ao", "Ac", "Bo", "Bc"}  # macro names inside mdoc args
_CJK_GAP = re.compile(rf"(?<=[{CJK}])\s+(?=[{CJK}])")  # textio.CJK: Han, CJK punctuation, kana, full-width forms

def _join_lines(parts: list[str]) -> str:
    s = re.sub(r"\s+", " ", " ".join(strip_escapes(p) for p in parts)).strip()
    return _CJK_GAP.sub("", s)  # roff turns a newline into a space; Chinese text has none

def parse_roff(src: str) -> list[tuple[str, str]]:
    "Paragraphs of a man page's roff source as `(section heading, text)` pairs, macros and escapes removed."
    out, para = [], []
    heading, skip_until, brace, in_table, want_heading = "", None, 0, False, False

    def flush():
        nonlocal para
        text = _join_lines(para)
        if text: out.append((heading, text))
        para = []

    for line in src.replace("\r\n", "\n").split("\n"):
        if skip_until is not None:  # inside .de/.ig: skip to the closing '..'
            if line.strip().startswith(skip_until): skip_until = None
            continue
        if brace > 0:  # inside an .if/.ie \{ ... \} block
            brace += line.count("\\{") - line.count("\\}")
            continue
        if in_table:
            if line.startswith(".TE"): in_table = False
            continue
        if line[:1] in (".", "'"):
            m = re.match(r"(\S+)\s*(.*)$", line[1:].lstrip())
            if not m: continue
            name, rest = m.groups()
            if name.startswith(('\\"', "\\#")): continue
            if name in ("de", "de1", "am", "ig"): skip_until = ".."; continue
            if name in ("if", "ie", "el", "while"):
                brace = max(0, line.count("\\{") - line.count("\\}"))
                continue
            if name == "TS": flush(); in_table = True; continue
            if name in ("SH", "Sh"):
                flush()
                args = split_args(rest)
                if args: heading = strip_escapes(" ".join(args)).strip()
                else: want_heading = True  # the heading is on the next line
                continue
            if name in _BREAK:
                flush()
                args = split_args(rest)
                if name == "IP" and args and strip_escapes(args[0]).strip() not in ("", "•", "-", "*"):
                    para.append(args[0])  # .IP tag: the tag opens the paragraph
                if name == "It" and args: para.append(" ".join(a for a in args if a not in _MDOC_CALLABLE))
                continue
            if name in _ALTERNATING: para.append("".join(split_args(rest))); continue
            if name in _INLINE:
                args = [a for a in split_args(rest) if a not in _MDOC_CALLABLE]
                if name == "Xr":  # .Xr name section -> name (the section number would leak the label)
                    args = [a for i, a in enumerate(args) if not (i == 1 and a[:1].isdigit())]
                para.append(" ".join(args)); continue
            continue  # any other request (.br .if .nr .ta .ft .ne .TH ...): layout only
        if want_heading:
            heading, want_heading = strip_escapes(line).strip().strip('"'), False
            continue
        if not line.strip(): flush(); continue
        para.append(line)
    flush()
    return out


# ---------------------------------------------------------------- pages -> clean paragraphs
# Section headings whose text leaks the label or is translation boilerplate, not page content.
DROP_HEADINGS = (r"SYNOPSIS|总览|概要|大纲|SEE ALSO|参见|另见|又见|参考|AUTHOR|作者|译者|跋|维护人|最新更新|翻译计划|版权|COPYRIGHT"
                 r"|报告错误|REPORTING BUGS|KEYWORDS|关键字|COLOPHON|致谢")
SECTION_MERGE = {"2": "3"}  # system calls join library functions: both are programming interfaces
SECTION_DROP = ("4", "6")  # 2 pages and 1 page: too few to split by page
LABEL_NAMES = {"1": "用户命令", "3": "编程接口（2 节系统调用 + 3 节库函数、Tcl/Tk）", "5": "文件格式与配置文件",
               "7": "杂项、概述与约定", "8": "系统管理命令"}
_XREF = re.compile(r"\b([A-Za-z_][\w.+-]*)\s*\((\d)[a-zA-Z]*\)")

def decode_page(data: bytes) -> tuple[str | None, str]:
    """Text and encoding of a man page's bytes by `textio.decode_text` (BOM, UTF-8, else plausible GB18030, which covers
    GB2312/GBK), else (None, 'undecodable')."""
    try: return decode_text(data)
    except TextDecodeError: return None, "undecodable"

def read_page(path) -> tuple[str | None, str]:
    "A man page file's text, or (None, why it was skipped): alias stubs that are not gzip, `.so` redirects, bad encodings."
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b": return None, "not_gzip"  # a lost symlink: the file holds the target's name
    try: data = gzip.decompress(raw)
    except (OSError, EOFError): return None, "bad_gzip"
    text, enc = decode_page(data)
    if text is None: return None, enc
    if text.lstrip().startswith(".so "): return None, "so_redirect"
    return text, enc

def clean_paragraph(text: str, *, min_chars: int = 20, min_cjk_ratio: float = 0.3, max_chars: int = 512) -> str | None:
    "Drop `(N)` section numbers of cross references; None when too short or not mostly Chinese."
    text = _XREF.sub(r"\1", text).strip()
    if len(text) < min_chars: return None
    dense = re.sub(r"\s", "", text)
    if len(HAN_RE.findall(dense)) < min_cjk_ratio * len(dense): return None
    return text[:max_chars]

def page_paragraphs(src: str, *, drop_headings: str = DROP_HEADINGS, **clean_kw) -> list[str]:
    "The clean paragraphs of one page's roff source, in order."
    drop = re.compile(drop_headings, re.I)
    out = []
    for heading, text in parse_roff(src):
        if heading and drop.search(heading): continue
        t = clean_paragraph(text, **clean_kw)
        if t: out.append(t)
    return out


# ---------------------------------------------------------------- the task: labels, dedupe, split by page
def section_of(path) -> str:
    "The man section of a page file: `man3/fopen.3.gz` -> '3' (from the folder; else from the suffix)."
    p = Path(path)
    m = re.fullmatch(r"man(\d)", p.parent.name)
    if m: return m.group(1)
    m = re.search(r"\.(\d)[a-z]*(\.gz)?$", p.name)
    if m: return m.group(1)
    raise ValueError(f"cannot tell the man section of {p}")

def split_sentences(text: str) -> list[str]:
    "Sentences of one paragraph (after 。！？；!?), for the sentence-per-line TAPT text."
    return [s.strip() for s in re.split(r"(?<=[。！？；!?])", text) if s.strip()]


def collect_pages(src_dir, *, merge: dict = SECTION_MERGE, drop=SECTION_DROP, **clean_kw):
    "Read every man page under `src_dir/man*/`: ({page: (label, paragraphs)}, counters of what was skipped)."
    src_dir = Path(src_dir)
    files = sorted(src_dir.glob("man*/*"))
    if not files: raise FileNotFoundError(f"no man pages under {src_dir}/man*/ (expected e.g. man1/ls.1.gz)")
    pages, skipped, encodings, raw_sections = {}, collections.Counter(), collections.Counter(), collections.Counter()
    for f in tqdm(files, desc="parse man pages", leave=False):
        sec = section_of(f)
        text, why = read_page(f)
        if text is None: skipped[why] += 1; continue
        encodings[why] += 1
        raw_sections[sec] += 1
        if sec in drop: skipped[f"section_{sec}_dropped"] += 1; continue
        paras = page_paragraphs(text, **clean_kw)
        if not paras: skipped["no_usable_paragraph"] += 1; continue
        pages[f"{f.parent.name}/{f.name.removesuffix('.gz')}"] = (merge.get(sec, sec), paras)
    return pages, {"skipped_files": dict(skipped), "encodings": dict(encodings), "pages_per_section": dict(sorted(raw_sections.items()))}

def dedupe_paragraphs(pages: dict) -> tuple[dict, dict]:
    "Keep the first occurrence of each paragraph; drop paragraphs that occur under two labels."
    labels_of = collections.defaultdict(set)
    for page, (label, paras) in pages.items():
        for t in paras: labels_of[t].add(label)
    seen, out, n_dup, n_conflict = set(), {}, 0, 0
    for page, (label, paras) in pages.items():
        keep = []
        for t in paras:
            if len(labels_of[t]) > 1: n_conflict += 1; continue
            if t in seen: n_dup += 1; continue
            seen.add(t); keep.append(t)
        if keep: out[page] = (label, keep)
    return out, {"duplicates_removed": n_dup, "conflicting_label_paragraphs_removed": n_conflict}

def split_by_page(pages: dict, *, dev_frac: float = 0.15, test_frac: float = 0.15, seed: int = 1234) -> dict[str, str]:
    "Assign each page to train/dev/test, stratified by label: no page is in two splits."
    by_label = collections.defaultdict(list)
    for page, (label, _) in pages.items(): by_label[label].append(page)
    assign = {}
    for label, ps in sorted(by_label.items()):
        if len(ps) < 3: raise ValueError(f"label {label!r} has {len(ps)} page(s); need >= 3 to split by page (merge or drop it)")
        ps = sorted(ps)
        random.Random(f"{seed}:split:{label}").shuffle(ps)
        n_test = max(1, round(len(ps) * test_frac)); n_dev = max(1, round(len(ps) * dev_frac))
        for i, p in enumerate(ps): assign[p] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
    return assign


# ---------------------------------------------------------------- writing the task folder
def _task_readme(stats: dict, src_dir) -> str:
    labels = stats["labels"]
    rows = "\n".join(f"| {l} | {LABEL_NAMES.get(l, '')} | " + " | ".join(
        f"{stats['counts'][s]['examples'].get(l, 0)} ({stats['counts'][s]['pages'].get(l, 0)} 页)" for s in ("train", "dev", "test"))
        + " |" for l in labels)
    p = stats["params"]
    return f"""# manpages_cls：中文 man 手册页的节号分类

由 `python tools/build_manpages_task.py --src_dir <manpages-zh>`（或 `vertical-pretrain build-task`）生成（`build_task`），请勿手改；改参数后重建。

## 来源与许可
- 数据：Debian 包 **manpages-zh 1.6.4.0** 的 `man{{1..8}}/*.gz`（上游 https://github.com/man-pages-zh/manpages-zh ）。
- 许可：主体 **GFDL-1.2+**（无不变章节、无封面文字），个别页面为 GPL-2.0/GPL-2.0+；完整声明见同目录 `copyright`（从 Debian 包原样复制）。
  本目录的段落是这些页面的摘录（去掉了 roff 排版），按原许可再分发。

## 任务
- 输入：一段手册正文；输出：它出自手册的哪一节。每行 `{{"text": 段落, "label": 节号, "page": "manN/页面名"}}`。
- 标签：{", ".join(labels)}。第 2 节（{stats['pages_per_section'].get('2', 0)} 页）并入第 3 节（都是编程接口）；
  第 4 节（{stats['pages_per_section'].get('4', 0)} 页）和第 6 节（{stats['pages_per_section'].get('6', 0)} 页）页面太少，丢弃。
- 划分按页面分层：同一页面只出现在一个划分里。训练集每类最多 {p['train_cap']} 条（低资源），dev/test 每类最多 {p['eval_cap']} 条，每页最多 {p['max_per_page']} 段。
- 清洗：丢掉 SYNOPSIS、SEE ALSO、作者/译者/版权等小节；交叉引用 `name(N)` 去掉节号；段落至少 {p['min_chars']} 字、汉字比例至少 {p['min_cjk_ratio']}；全局去重。

| 标签 | 含义 | train | dev | test |
|---|---|---|---|---|
{rows}

合计：train {stats['totals']['train']}，dev {stats['totals']['dev']}，test {stats['totals']['test']}；
`unlabeled.txt`（TAPT 用，只含训练页面的文字）{stats['unlabeled']['paragraphs']} 段、{stats['unlabeled']['pages']} 页。
跳过的文件：{json.dumps(stats['skipped_files'], ensure_ascii=False)}；去重删掉 {stats['dedupe']['duplicates_removed']} 段，
跨节冲突删掉 {stats['dedupe']['conflicting_label_paragraphs_removed']} 段。

## 文件
`train.jsonl` `dev.jsonl` `test.jsonl`、`labels.json`（标签顺序与含义）、`stats.json`（全部计数与参数）、
`unlabeled.txt`（一句一行、页面之间空行，即 01 阶段的文本格式）、`copyright`、`manifest_build_task.json`。
"""

def build_task(src_dir, out_dir, *, train_cap: int = 100, eval_cap: int = 300, dev_frac: float = 0.15,
               test_frac: float = 0.15, max_per_page: int = 20, min_chars: int = 20, min_cjk_ratio: float = 0.3,
               max_chars: int = 512, seed: int = 1234, force: bool = False) -> dict:
    "Build the man-page section classification task from `src_dir/man*/*.gz` into `out_dir`; returns the stats."
    src_dir, out_dir = resolve_path(src_dir).resolve(), resolve_path(out_dir)
    params = dict(train_cap=train_cap, eval_cap=eval_cap, dev_frac=dev_frac, test_frac=test_frac, max_per_page=max_per_page,
                  min_chars=min_chars, min_cjk_ratio=min_cjk_ratio, max_chars=max_chars, seed=seed,
                  merge=SECTION_MERGE, drop=list(SECTION_DROP), drop_headings=DROP_HEADINGS)
    if not force and stage_is_done(out_dir, "build_task", [src_dir], params):
        return json.loads((out_dir / "stats.json").read_text(encoding="utf-8"))
    pages, info = collect_pages(src_dir, min_chars=min_chars, min_cjk_ratio=min_cjk_ratio, max_chars=max_chars)
    pages, dedupe = dedupe_paragraphs(pages)
    assign = split_by_page(pages, dev_frac=dev_frac, test_frac=test_frac, seed=seed)
    labels = sorted({lab for lab, _ in pages.values()}, key=lambda x: (len(x), x))
    rows = {s: collections.defaultdict(list) for s in ("train", "dev", "test")}
    for page, (label, paras) in pages.items():
        for t in _sample(paras, max_per_page, f"{seed}:page:{page}"):
            rows[assign[page]][label].append({"text": t, "label": label, "page": page})
    caps = {"train": train_cap, "dev": eval_cap, "test": eval_cap}
    splits = {s: [r for lab in labels for r in _sample(rows[s][lab], caps[s], f"{seed}:{s}:{lab}")] for s in rows}
    train_pages = [p for p in pages if assign[p] == "train"]
    counts = {s: {"examples": dict(collections.Counter(r["label"] for r in splits[s])),
                  "pages": dict(collections.Counter(pages[p][0] for p in {r["page"] for r in splits[s]}))} for s in splits}
    stats = {"labels": labels, "label_names": {l: LABEL_NAMES.get(l, "") for l in labels}, "counts": counts,
             "totals": {s: len(v) for s, v in splits.items()},
             "unlabeled": {"pages": len(train_pages), "paragraphs": sum(len(pages[p][1]) for p in train_pages)},
             "dedupe": dedupe, **info, "params": params, "source": str(src_dir.name)}
    with atomic_dir(out_dir) as tmp:
        for s, rs in splits.items():
            (tmp / f"{s}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs), encoding="utf-8")
        (tmp / "labels.json").write_text(json.dumps({"labels": labels, "names": stats["label_names"], "merged": SECTION_MERGE,
                                                     "dropped": list(SECTION_DROP)}, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "unlabeled.txt").write_text("\n\n".join("\n".join(s for t in pages[p][1] for s in split_sentences(t))
                                                      for p in train_pages) + "\n", encoding="utf-8")
        if (src_dir / "copyright").is_file(): shutil.copyfile(src_dir / "copyright", tmp / "copyright")
        (tmp / "README.md").write_text(_task_readme(stats, src_dir), encoding="utf-8")
        write_manifest(tmp, "build_task", [src_dir], params, counts=stats["totals"])
    return stats


# ---------------------------------------------------------------- command line
@cli_errors(*TASK_ERRORS)
def main(argv=None) -> int:
    "Build the man-page section classification task (train/dev/test jsonl + unlabeled.txt)."
    p = add_config_args(argparse.ArgumentParser(prog="build_manpages_task.py", description=main.__doc__))
    p.add_argument("--src_dir", required=True, help="folder with man1/ .. man8/ of manpages-zh (*.gz roff)")
    p.add_argument("--output_dir", default=None, help="default: finetune.task_dir")
    p.add_argument("--train_cap", type=int, default=None, help="examples per class in train (default: finetune.train_cap)")
    p.add_argument("--eval_cap", type=int, default=300, help="examples per class in dev and in test")
    p.add_argument("--max_per_page", type=int, default=20)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--force", action="store_true", help="rebuild even when the manifest matches")
    a = p.parse_args(argv)
    cfg = config_from_args(a)
    st = build_task(a.src_dir, a.output_dir or cfg.finetune.task_dir, train_cap=a.train_cap or cfg.finetune.train_cap,
                    eval_cap=a.eval_cap, max_per_page=a.max_per_page, seed=a.seed, force=a.force)
    print(json.dumps({"totals": st["totals"], "counts": st["counts"]}, ensure_ascii=False))
    return 0


if __name__ == "__main__": sys.exit(main())
