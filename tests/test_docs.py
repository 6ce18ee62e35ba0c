"""The course site (vertical_pretrain.docs): built offline from a small course whose lesson was really executed by
papermill, then used in headless Chromium the way a reader does. The full course on a smoke run is checked in
test_e2e_smoke.py; the CLI's messages are checked here."""
from pathlib import Path

import nbformat
import pytest

from browser import CHROMIUM, NO_NETWORK, check_course_site, docstring_first_paragraph
from vertical_pretrain import docs
from vertical_pretrain.docs import build_docs, publish

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
                                 "plt.plot([3, 2.5, 2.1, 1.9]); plt.title('loss'); plt.show()"))
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
        index = build_docs(tmp_path / "site", run_dir=run, nbs_dir=nbs, modules=["vertical_pretrain.fileio"])
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
    out = docs.readme_figures(run, tmp_path / "figs", log=lambda s: None)
    assert [p.name for p in out] == ["demo_comparison.png", "demo_loss_curves.png", "demo_adaptation.png", "demo_run.json"]
    assert (tmp_path / "figs" / "demo_loss_curves.png").read_bytes() == (run / "loss_curves.png").read_bytes()
    assert '"profile": "demo"' in (tmp_path / "figs" / "demo_run.json").read_text(encoding="utf-8")


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
