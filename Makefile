# vertical_pretrain — the two README commands are `make demo` and `make test`; both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= demo
export PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK := True
export GLOG_minloglevel := 2

.PHONY: install demo test test-export test-nbs test-py bench docs publish docs-quarto lab readme clean-venv

## install: create .venv (Python 3.11) with the pinned stack, LAC's model files, the package (editable) and a Jupyter kernel
install: $(STAMP)
$(STAMP): requirements.txt setup.py settings.ini pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip<26" wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	@# LAC 2.1.2's code needs paddle.fluid (gone in Paddle 3): we only use its model files, so no deps and no build isolation.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation LAC==2.1.2
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name vertical_pretrain --display-name "Python 3 (vertical_pretrain)" >/dev/null
	$(BIN)/python -c "import vertical_pretrain, paddle, paddlenlp, fast_dataindex.helpers; print('env ok: paddle', paddle.__version__, 'paddlenlp', paddlenlp.__version__)"
	touch $@

## demo: the offline main job (papermill pipeline, demo profile)
demo: $(STAMP)
	$(BIN)/vertical-pretrain pipeline --profile $(PROFILE)

## test: (1) notebooks and package agree, (2) nbdev_test, (3) pytest — each runs and reports on its own
test: $(STAMP)
	@fail=0; \
	$(MAKE) --no-print-directory test-export || fail=1; \
	$(MAKE) --no-print-directory test-nbs    || fail=1; \
	$(MAKE) --no-print-directory test-py     || fail=1; \
	exit $$fail

test-export: $(STAMP)
	@echo "== [1/3] nbdev_export leaves vertical_pretrain/ unchanged"
	$(BIN)/nbdev_export
	@changes=$$(git status --porcelain -- vertical_pretrain); \
	if [ -n "$$changes" ]; then echo "$$changes"; git --no-pager diff --stat -- vertical_pretrain; \
	  echo "FAIL: the notebooks and vertical_pretrain/ disagree: edit nbs/, run nbdev_export, commit both" >&2; exit 1; fi; \
	echo "ok: package matches notebooks"

test-nbs: $(STAMP)
	@echo "== [2/3] nbdev_test (notebook test cells; cells flagged slow are skipped)"
	$(BIN)/nbdev_test --n_workers 2 --timing

test-py: $(STAMP)
	@echo "== [3/3] pytest"
	$(BIN)/python -m pytest tests -q -ra --durations=15

## bench: run every bench/ script and print one table
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

## publish: execute the lessons the pipeline does not run (smoke examples, ~2 min), then a finished run's notebooks and those
##   lessons -> docs/course/ (the source of both doc sites), without this machine's paths; RUN=output/<run> (default: the demo run)
publish: $(STAMP)
	$(BIN)/vertical-pretrain publish $(if $(RUN),--run $(RUN),--profile $(PROFILE))

## docs: the offline course site in _docs/ (Sphinx + sphinx-book-theme + MyST-NB) from the run's notebooks, else docs/course/; writes no tracked file;
##   open _docs/index.html, or `python -m http.server -d _docs` for search snippets
docs: $(STAMP)
	$(BIN)/vertical-pretrain docs $(if $(RUN),--run $(RUN),--profile $(PROFILE))

## docs-quarto: nbdev_docs (Quarto, where installed) on the published notebooks, so its pages show the run's outputs too
docs-quarto: publish
	$(BIN)/nbdev_docs --path docs/course

## readme: demo figures and stage times -> docs/figures/ (when a demo run exists; says so when not) and README.md from nbs/index.ipynb
readme: $(STAMP)
	$(BIN)/vertical-pretrain readme $(if $(RUN),--run $(RUN),--profile $(PROFILE))

## lab: JupyterLab on the course notebooks (as root, e.g. in a container: with --allow-root)
lab: $(STAMP)
	$(BIN)/jupyter lab nbs/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean-venv:
	rm -rf $(VENV)
