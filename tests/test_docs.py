"""The course site (vertical_pretrain.docs): built offline from a small course whose lesson was really executed by
papermill, then used in headless Chromium the way a reader does. The full course on a smoke run is checked in
test_e2e_smoke.py; the CLI's messages are checked here."""
import json
import re
import tempfile
from pathlib import Path

import nbformat
import pytest

from browser import CHROMIUM, NO_NETWORK, check_course_site, docstring_first_paragraph
from vertical_pretrain import docs
from vertical_pretrain.docs import build_docs, execute_lessons, publish

ARTIFACTS = Path(__file__).parent / "artifacts"


def _course(tmp_path) -> tuple[Path, Path]:
    "A two-lesson course with a sidebar, and a run in which papermill executed lesson 06 (a matplotlib figure)."
    import papermill as pm
    nbs = tmp_path / "nbs"; nbs.mkdir()
    def nb(name, *cells):
        n = nbformat.v4.new_notebook(); n.cells = list(cells)
        n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(n, str(nbs / name))
    nb("index.ipynb", nbformat.v4.new_markdown_cell("# 小课程\n\n首页。"))
    nb("01_data.ipynb", nbformat.v4.new_markdown_cell("# 01 数据\n\n把书变成一行一句的文本。"))
    nb("06_pretrain.ipynb", nbformat.v4.new_markdown_cell("# 06 预训练\n\n检查点可以断点续训；下面是损失曲线。"),
       nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                                 "plt.plot([3, 2.5, 2.1, 1.9]); plt.title('loss'); plt.show()"),
       nbformat.v4.new_code_cell("from IPython.display import Markdown, display\n"
                                 "display(Markdown('| 模型 | F1 |\\n|---|---|\\n| 基座 | 44.4 |\\n| 领域 | 41.4 |'))"))
    (nbs / "sidebar.yml").write_text("website:\n  sidebar:\n    contents:\n      - index.ipynb\n"
                                     "      - section: 数据\n        contents: [01_data.ipynb]\n"
                                     "      - section: 训练\n        contents: [06_pretrain.ipynb]\n", encoding="utf-8")
    run = tmp_path / "out" / "demo"; (run / "notebooks").mkdir(parents=True)
    (run / "config.yaml").write_text("profile: demo\n")
    (run / "pipeline_state.json").write_text('{"06": {"status": "ok", "finished_at": "2026-11-30T04:00:00"}}')
    pm.execute_notebook(str(nbs / "06_pretrain.ipynb"), str(run / "notebooks" / "06_pretrain.ipynb"), progress_bar=False)
    return nbs, run


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_site_offline_navigable_searchable_with_plots_and_api(tmp_path, monkeypatch):
    nbs, run = _course(tmp_path)
    with monkeypatch.context() as m:  # the build must not need the network: every proxy is a closed port
        for k, v in NO_NETWORK.items(): m.setenv(k, v)
        index = build_docs(tmp_path / "site", run_dir=run, nbs_dir=nbs, modules=["vertical_pretrain.fileio", "vertical_pretrain.formats"])
    fileio_py = Path(docs.__file__).parent / "fileio.py"
    rep = check_course_site(index, ["01_data.html", "06_pretrain.html"], ARTIFACTS, prefix="docs",
                            search=("断点续训", "06_pretrain.html"),
                            api=("vertical_pretrain.fileio", "atomic_write_text", docstring_first_paragraph(fileio_py, "atomic_write_text")))
    plots = [i for i in rep["pages"]["06_pretrain.html"] if i["w"] > 100 and i["h"] > 100]
    assert plots, "the executed plot is on the lesson page"
    assert rep["search_hits"] == ["06_pretrain.html"], rep["search_hits"]  # the term is only in that lesson
    page = (index.parent / "06_pretrain.html").read_text(encoding="utf-8")
    assert "流水线运行 <code" in page and "demo" in page and "2026-11-30T04:00:00" in page, "the page says which run and when"
    assert "不在流水线里执行" in (index.parent / "01_data.html").read_text(encoding="utf-8"), "a page the run did not execute says so"
    assert re.search(r"<table[^>]*>.*<td><p>基座</p></td>", page, re.S), "a display(Markdown(table)) output is a table, not a paragraph"
    api = (index.parent / "api" / "vertical_pretrain.formats.html").read_text(encoding="utf-8")
    assert "file:line" in api and 'href="file:' not in api, "a docstring's file:line is text, not a link"
    search = (index.parent / "search.html").read_text(encoding="utf-8")
    assert "python -m http.server -d _docs" in search, "opened from disk, the search page says how to serve the site"


def test_published_course_is_what_nbdev_docs_reads(tmp_path):
    nbs, run = _course(tmp_path)
    info = publish(run, tmp_path / "course", nbs, log=lambda s: None)
    course = tmp_path / "course"
    assert sorted(p.name for p in course.glob("*.ipynb")) == ["01_data.ipynb", "06_pretrain.ipynb", "index.ipynb"]
    assert (course / "sidebar.yml").resolve() == (nbs / "sidebar.yml").resolve(), "Quarto reads the same sidebar"
    assert info["executed"] == ["06_pretrain.ipynb"] and info["profile"] == "demo"
    executed = nbformat.read(str(course / "06_pretrain.ipynb"), as_version=4)
    assert any(o.get("output_type") == "display_data" for c in executed.cells for o in c.get("outputs", []))
    clean = nbformat.read(str(nbs / "06_pretrain.ipynb"), as_version=4)
    assert not any(c.get("outputs") for c in clean.cells), "nbs/ stays the clean source"


def test_cli_says_what_is_missing(tmp_path, capsys):
    assert docs.publish_main(["--run", str(tmp_path / "no_run"), "--dest", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "no executed notebooks" in err and "pipeline" in err
    figures = docs.readme_figures(tmp_path / "no_run", tmp_path / "figs", log=print)
    out = capsys.readouterr().out
    assert figures == [] and "no finished demo run" in out and "make demo" in out
    assert not (tmp_path / "figs").exists()


def test_readme_figures_come_from_the_demo_run(tmp_path):
    run = tmp_path / "out" / "demo"; (run / "finetune").mkdir(parents=True); (run / "adaptation").mkdir()
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    for f in (run / "finetune" / "comparison.png", run / "loss_curves.png", run / "adaptation" / "adaptation.png"):
        plt.figure(); plt.plot([1, 2]); plt.savefig(f); plt.close()
    (run / "config.yaml").write_text("profile: demo\n")
    (run / "pipeline_state.json").write_text(json.dumps({
        "01": {"status": "ok", "seconds": 12.34, "finished_at": "2026-12-01T10:00:00"},
        "08": {"status": "ok", "seconds": 1122.0, "finished_at": "2026-12-01T10:30:00"}, "_last_run_seconds": 5.0}))
    out = docs.readme_figures(run, tmp_path / "figs", log=lambda s: None)
    assert [p.name for p in out] == ["demo_comparison.png", "demo_loss_curves.png", "demo_adaptation.png", "demo_run.json"]
    assert (tmp_path / "figs" / "demo_loss_curves.png").read_bytes() == (run / "loss_curves.png").read_bytes()
    info = json.loads((tmp_path / "figs" / "demo_run.json").read_text(encoding="utf-8"))
    assert info["profile"] == "demo" and [(s["key"], s["seconds"]) for s in info["stages"]] == [("01", 12.3), ("08", 1122.0)]
    assert info["machine"]["cores"] >= 1 and "cpu_vendor" in info["machine"] and not Path(info["run_dir"]).is_absolute()
    # README's stage-time table is generated from that file, naming the machine
    nbs = tmp_path / "nbs"; nbs.mkdir()
    index = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        f"# 课程\n\n{docs.STAGE_TIMES_MARK[0]}\n还没有耗时表。\n{docs.STAGE_TIMES_MARK[1]}\n")])
    nbformat.write(index, str(nbs / "index.ipynb"))
    readme = docs.render_readme(nbs / "index.ipynb", tmp_path, run_json=tmp_path / "figs" / "demo_run.json")
    assert "还没有耗时表" not in readme and "| 08 | 微调对比：基座 vs 领域 | 18.7 分钟 |" in readme, readme
    assert f"{info['machine']['cores']} 核" in readme and "共 **18.9 分钟**" in readme


def _git(repo: Path, *args) -> str:
    import subprocess
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
                          capture_output=True, text=True, check=True).stdout


def test_docs_into_another_folder_changes_no_tracked_file(tmp_path, tmp_path_factory, monkeypatch, capsys):
    "issue 28.16: `docs --run R --output_dir ../site` builds R's site there; the committed docs/course/ and README stay."
    nbs, run = _course(tmp_path)  # the project is tmp_path: nbs/, out/demo (a run with an executed lesson)
    publish(None, tmp_path / "docs" / "course", nbs, log=lambda s: None)  # the committed course: clean notebooks
    (tmp_path / "README.md").write_text("# 小课程\n", encoding="utf-8")
    _git(tmp_path, "init", "-q"); _git(tmp_path, "add", "-A"); _git(tmp_path, "commit", "-q", "-m", "course")
    monkeypatch.setenv("VERTICAL_PRETRAIN_ROOT", str(tmp_path))
    monkeypatch.setattr(docs, "_api_modules", lambda: ["vertical_pretrain.fileio"])  # a small API part: fast
    site = tmp_path_factory.mktemp("elsewhere") / "site"
    assert docs.main(["--run", str(run), "--output_dir", str(site)]) == 0, capsys.readouterr().err
    assert _git(tmp_path, "status", "--porcelain", "--untracked-files=all") == ""
    assert "vertical-pretrain publish" in capsys.readouterr().out  # it says how to publish
    assert "流水线运行 <code" in (site / "06_pretrain.html").read_text(encoding="utf-8"), "the site is the run's"
    # a tracked folder as the site folder would be replaced wholesale: refused in one line, nothing touched
    assert docs.main(["--run", str(run), "--output_dir", str(tmp_path / "docs")]) == 1
    assert "not a site built by `vertical-pretrain docs`" in capsys.readouterr().err
    assert _git(tmp_path, "status", "--porcelain", "--untracked-files=all") == ""


# --- every lesson shows its output; no path of the building machine in the committed course (issue 25.2) ---

_MACHINE_PATH = re.compile(r"[\w.-]/(?:site|dist)-packages/|(?<![\w.~<>:/-])/(?:[\w.+-]+/)+?(?:\.venv|output|data_file|nbs)/"
                           r"|(?<![\w.~<>:/-])" + re.escape(tempfile.gettempdir().rstrip("/")) +
                           r"/(?:tmp|[\w.+-]*_)[a-z0-9_]{8}(?![\w.+-])")  # a lesson's mkdtemp folder
_STARTUP = ("No ccache found", "Setuptools is replacing distutils", "IProgress not found")


def _committed_texts(path: Path):
    "The texts of a docs/ file a build writes: a notebook's outputs, metadata and papermill's injected cell; a text file whole."
    if path.suffix != ".ipynb":
        yield path.read_text(encoding="utf-8"); return
    nb = json.loads(path.read_text(encoding="utf-8"))
    yield json.dumps(nb["metadata"], ensure_ascii=False)
    for c in nb["cells"]:
        if "injected-parameters" in c.get("metadata", {}).get("tags", []): yield "".join(c["source"])
        for o in c.get("outputs", []):
            yield json.dumps({k: v for k, v in o.get("data", {}).items() if not k.startswith("image/")}, ensure_ascii=False)
            yield "".join(o.get("text", "")) + "\n".join(o.get("traceback", []))


def machine_specific(folder: Path) -> list[str]:
    "`file: text` for every absolute path of a machine (into a checkout or a Python environment) or start-up warning under `folder`."
    bad = []
    for f in sorted(folder.rglob("*")):
        if f.is_symlink() or not f.is_file() or f.suffix not in (".ipynb", ".json", ".md", ".yml", ".txt"): continue
        for text in _committed_texts(f):
            bad += [f"{f.name}: {m.group(0)}" for m in _MACHINE_PATH.finditer(text)]
            bad += [f"{f.name}: {w}" for w in _STARTUP if w in text]
    return bad


def test_committed_docs_hold_no_path_of_the_building_machine():
    docs_dir = Path(docs.__file__).resolve().parents[1] / "docs"
    assert machine_specific(docs_dir) == []


def test_publish_rewrites_machine_paths_and_drops_startup_warnings(tmp_path, tmp_path_factory):
    "A run executed in another clone, written outside the project: publish leaves none of its paths, nor the libraries' warnings."
    nbs, run = _course(tmp_path)
    elsewhere = tmp_path_factory.mktemp("clone")  # the clone the run was executed in
    ex = run / "notebooks" / "06_pretrain.ipynb"
    nb = nbformat.read(str(ex), as_version=4)
    nb.metadata["papermill"]["input_path"] = str(elsewhere / "nbs" / "06_pretrain.ipynb")
    params = nbformat.v4.new_code_cell(f'config_path = "{run}/config.yaml"', metadata={"tags": ["injected-parameters"]})
    warn = (f"{elsewhere}/.venv/lib/python3.11/site-packages/paddle/utils/cpp_extension/extension_utils.py:712: UserWarning: "
            "No ccache found. Please be aware ...\n  warnings.warn(warning_message)\n")
    log = nbformat.v4.new_code_cell("train()", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=warn),
        nbformat.v4.new_output("stream", name="stdout", text=f"resuming from {run}/checkpoints/model_last\n"
                                                              f"corpus {elsewhere}/data_file/book/ids/corpus: 3 docs\n"
                                                              f"missing weights file {tempfile.gettempdir()}/tmpqx5hz2kp/model/x\n"
                                                              "/usr/lib/python3/dist-packages/x.py:1: DeprecationWarning: kept\n")])
    nb.cells[1:1] = [params, log]
    nbformat.write(nb, str(ex))
    assert machine_specific(run / "notebooks"), "the fixture does hold machine paths"
    info = publish(run, tmp_path / "course", nbs, log=lambda s: None)
    assert machine_specific(tmp_path / "course") == []
    out = nbformat.read(str(tmp_path / "course" / "06_pretrain.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert "resuming from <paths.output_root>/demo/checkpoints/model_last" in text and "corpus ./data_file/book" in text
    assert "<site-packages>/x.py:1: DeprecationWarning: kept" in text, "other warnings stay, with the environment's path hidden"
    assert "missing weights file <tmp>/model/x" in text, "a lesson's temp dir: its random name is not the reader's"
    assert out.cells[1].source == 'config_path = "<paths.output_root>/demo/config.yaml"'
    assert out.metadata.papermill.input_path == "./nbs/06_pretrain.ipynb" and info["run_dir"] == "<paths.output_root>/demo"


def test_publish_executes_the_lessons_the_pipeline_does_not(tmp_path):
    "A lesson is executed as nbdev_test runs it (cwd nbs/, slow and eval: false cells skipped), smoke where it takes a profile."
    nbs, run = _course(tmp_path)
    lesson = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 02 一课"),
        nbformat.v4.new_code_cell('profile = "demo"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nprint(profile, os.path.basename(os.getcwd()))"),
        nbformat.v4.new_code_cell("#| slow\nraise SystemExit('a slow cell ran')"),
        nbformat.v4.new_code_cell("#| eval: false\nraise SystemExit('an eval: false cell ran')")])
    lesson.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(lesson, str(nbs / "02_lesson.ipynb"))
    (nbs / "sidebar.yml").write_text((nbs / "sidebar.yml").read_text(encoding="utf-8").replace("[01_data.ipynb]", "[01_data.ipynb, 02_lesson.ipynb]"),
                                     encoding="utf-8")
    rec = execute_lessons(run, nbs, log=lambda s: None)
    assert list(rec) == ["02_lesson.ipynb"] and rec["02_lesson.ipynb"]["profile"] == "smoke"
    info = publish(run, tmp_path / "course", nbs, log=lambda s: None)
    assert info["lessons"] == ["02_lesson.ipynb"] and info["executed"] == ["06_pretrain.ipynb"]
    out = nbformat.read(str(tmp_path / "course" / "02_lesson.ipynb"), as_version=4)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert [o["text"] for o in code[2].outputs] == ["smoke nbs\n"]
    assert not code[3].outputs and not code[4].outputs and "tags" not in code[3].metadata
    assert info["stale"] == []
    (nbs / "02_lesson.ipynb").write_text((nbs / "02_lesson.ipynb").read_text(encoding="utf-8").replace("一课", "一课（改）"), encoding="utf-8")
    assert publish(run, tmp_path / "course2", nbs, log=lambda s: None)["stale"] == ["02_lesson.ipynb"]
