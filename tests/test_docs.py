"The offline docs build, opened in headless Chromium: the index links every page and plots really render."
from pathlib import Path

import nbformat
import pytest

from browser import CHROMIUM, Page, page_report
from vertical_pretrain.docs import build_docs

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def _executed_nb_with_plot(tmp_path) -> Path:
    "A small course notebook executed for real through papermill, with a matplotlib figure in its outputs."
    import papermill as pm
    nbs = tmp_path / "nbs"; nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 06 预训练\n\n损失曲线。"), nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([3, 2.5, 2.1, 1.9]); plt.title('loss'); plt.show()")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nbs / "06_pretrain.ipynb"))
    index = nbformat.v4.new_notebook(); index.cells = [nbformat.v4.new_markdown_cell("# vertical_pretrain")]
    nbformat.write(index, str(nbs / "index.ipynb"))
    run = tmp_path / "run"; (run / "notebooks").mkdir(parents=True)
    pm.execute_notebook(str(nbs / "06_pretrain.ipynb"), str(run / "notebooks" / "06_pretrain.ipynb"), progress_bar=False)
    return nbs, run


def test_docs_render_in_chromium_with_plots(tmp_path):
    nbs, run = _executed_nb_with_plot(tmp_path)
    index = build_docs(tmp_path / "_docs", run_dir=run, nbs_dir=nbs)
    shots = Path(__file__).parent / "artifacts"; shots.mkdir(exist_ok=True)
    with Page() as page:
        page.goto(index.as_uri())
        rep = page_report(page)
        assert "06_pretrain.html" in rep["links"] and "index.html" in rep["links"]
        page.screenshot(shots / "docs_index.png")
        page.goto((index.parent / "06_pretrain.html").as_uri())
        rep = page_report(page)
        assert rep["h1"] and "06" in rep["h1"][0]
        assert rep["images"], "the executed plot must be on the page"
        assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in rep["images"]), rep["images"]
        shot = page.screenshot(shots / "docs_stage.png")
    assert shot.stat().st_size > 10_000
