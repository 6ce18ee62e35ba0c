"""Warnings reach the console (issue 28, part C): a stage that meets a problem that does not stop it, but may spoil the
run, says so under its own line in the pipeline's console output, and the pipeline's last line counts the warnings.

The corpus is one a user could have and that went wrong in the field: a JSONL export of a traditional-Chinese FAQ,
one question a line (PaddlePaddle/PaddleNLP#2585: a third of the characters are not in a simplified-Chinese vocab;
NVIDIA/Megatron-LM#122: almost every document is one sentence, so SOP skips almost all of them)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from vertical_pretrain.config import get_config

# one-sentence FAQ answers in traditional Chinese: characters like 這/們/設/機/資/訊/與/網/絡/檔/認/證 are rare in the
# simplified general corpus the offline vocab is built on
FAQ = ["這個設定檔應該放在哪個資料夾裡面才會生效呢", "我們的伺服器與網路設備需要每週檢查一次連線狀態",
       "請問帳號密碼忘記了要怎麼重新設定與驗證身份", "機房裡的資訊設備都必須貼上資產編號與負責人姓名",
       "軟體套件更新之後記得重新啟動相關的系統服務", "備份檔案要存到異地的儲存空間並且定期測試還原",
       "使用者權限變更需要經過主管簽核後才能執行", "監控系統發出警報時值班人員應該立刻處理並回報"]


def faq_jsonl(path, n_docs: int = 112):
    "n_docs documents: every 20th has three sentences (a longer answer), every other one is a single sentence."
    docs = ["\n".join(f"{FAQ[(i + k) % len(FAQ)]}，第{i}之{k}條。" for k in range(3)) if i % 20 == 0  # sentences split by \n
            else f"{FAQ[i % len(FAQ)]}，編號{i}號。" for i in range(n_docs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def faq_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faq")
    sets = {"paths.data_root": tmp / "data", "paths.output_root": tmp / "out", "paths.corpus": "faq_tw"}
    cfg = get_config("smoke", {k: str(v) for k, v in sets.items()})
    faq_jsonl(cfg.paths.raw_dir / "客服問答.jsonl")
    cmd = [sys.executable, "-m", "vertical_pretrain.cli", "pipeline", "--profile", "smoke", "--to", "06", "--no-progress",
           *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return cfg, r.stdout.splitlines()


def _under(lines: list[str], stage: str) -> list[str]:
    "The indented lines printed right under the pipeline's 'ok' line of `stage`."
    i = next(i for i, l in enumerate(lines) if f"] {stage} " in l and ": ok in " in l)
    out = []
    for l in lines[i + 1:]:
        if not l.startswith("    "): break
        out.append(l.strip())
    return out


def test_unk_rate_is_said_under_stage_04(faq_run):
    cfg, lines = faq_run
    stats = json.loads((cfg.paths.ids_dir / "stats.json").read_text(encoding="utf-8"))
    assert stats["unk_rate"] > 0.05, stats["unk_rate"]  # the premise: the offline vocab does not cover this text
    warns = [l for l in _under(lines, "04") if l.startswith("WARNING: ") and "of the tokens are [UNK]" in l]
    assert warns and f"{stats['unk_rate']:.1%} of the tokens are [UNK]" in warns[0] and "build-vocab" in warns[0], lines


def test_documents_skipped_by_sop_are_said_under_stage_06_with_the_fix(faq_run):
    cfg, lines = faq_run
    warns = [l for l in _under(lines, "06") if "skipped by sentence-order prediction" in l]
    assert warns, "\n".join(lines)
    from vertical_pretrain.dataset import corpus_prefix, split_documents
    idx = np.load(f"{corpus_prefix(cfg)}_idx.npz")
    train = split_documents(cfg.data.split, len(idx["docs"]) - 1)[1]
    one = int((np.diff(idx["docs"])[:train] == 1).sum())
    assert one > train // 2  # the premise: most train documents are one sentence
    assert f"faq_tw: {one} of the {train} train documents have one sentence" in warns[0], warns[0]
    assert "fix: set data.binary_head=false" in warns[0], warns[0]


def test_the_last_line_counts_every_warning_and_the_state_keeps_them(faq_run):
    cfg, lines = faq_run
    state = json.loads((cfg.paths.run_dir / "pipeline_state.json").read_text(encoding="utf-8"))
    n = sum(len(s.get("warnings", [])) for k, s in state.items() if not k.startswith("_"))
    assert state["04"]["warnings"] and state["06"]["warnings"], state
    printed = [l for l in lines if l.strip().startswith("WARNING: ")]
    assert len(printed) == n, (n, printed)
    by_stage = ", ".join(k for k, s in state.items() if not k.startswith("_") and s.get("warnings"))
    assert lines[-1].startswith("finished: ") and f"{n} warnings ({by_stage};" in lines[-1], lines[-1]


def test_a_rerun_that_skips_the_stages_still_says_and_counts_their_warnings(faq_run, tmp_path):
    cfg, first = faq_run
    cmd = [sys.executable, "-m", "vertical_pretrain.cli", "pipeline", "--profile", "smoke", "--to", "06", "--no-progress",
           "--set", f"paths.data_root={cfg.paths.data_root}", "--set", f"paths.output_root={cfg.paths.run_dir.parent}",
           "--set", "paths.corpus=faq_tw"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert "stages run: none" in r.stdout, r.stdout
    assert "(0 run, " in lines[-1] and lines[-1].split("), ", 1)[1] == first[-1].split("), ", 1)[1], (lines[-1], first[-1])
    assert sum(l.strip().startswith("WARNING: ") for l in lines) == sum(l.strip().startswith("WARNING: ") for l in first)


def test_only_the_runs_own_warnings_are_counted_not_the_lessons_examples(faq_run):
    "The stage notebooks' lesson examples show warnings on toy data (04's unsegmented x.jsonl); they are not the run's."
    cfg, lines = faq_run
    state = json.loads((cfg.paths.run_dir / "pipeline_state.json").read_text(encoding="utf-8"))
    got = {k: [w["message"].split(":")[0] for w in s.get("warnings", [])] for k, s in state.items() if not k.startswith("_")}
    assert got["04"] == [f"{state['04']['warnings'][0]['message'].split(':')[0]}"] and "[UNK]" in state["04"]["warnings"][0]["message"]
    assert set(got["06"]) <= {"faq_tw", "smoke"} and set(got.get("05a", [])) <= {"smoke_base"}, got
    assert not any(got[k] for k in got if k not in ("04", "05a", "06")), got
