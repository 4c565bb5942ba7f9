# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit chromium lint bench bench-quick soak screenshots docs clean

# setup.py builds the upload's CSV parser in C (webapp/upload/_fastcsv.c) into the tree.
$(STAMP): setup.cfg setup.py pyproject.toml webapp/upload/_fastcsv.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m core.devrun

test: chromium $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Not part of test or bench: 50 batches x 100,000 rows back to back (15-25 minutes);
# SOAK_ARGS="--batches 6 --rows 20000" for a quick look. Table in bench-results/soak.md.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The browser tests drive the system's Chromium (CHROMIUM=path, else the one on
# the PATH): as root, install Debian's when none is there; else say how, and stop.
chromium:
	@.ci/ensure-chromium

# Refresh the README's three screenshots from a browser test run.
screenshots: chromium $(STAMP)
	$(BIN)/python -m pytest tests/integration/test_browser.py -k upload_watch_read_and_download
	cp test-artifacts/screenshots/upload-page.png test-artifacts/screenshots/batch-in-progress.png \
	   test-artifacts/screenshots/batch-completed.png docs/

# The manual in docs/, built into site/ (git-ignored); strict: any warning fails the build.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var build *.egg-info test-artifacts site
