# Two entry points for a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel on machines without a GPU; set TORCH=torch (or a CUDA index) on GPU hosts.
TORCH  ?= torch==2.13.0
MODEL  ?= Qwen/Qwen3-Embedding-0.6B
HOST   ?= 0.0.0.0
PORT   ?= 30000

.PHONY: serve test install install-test bench clean chromium docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

# The test venv also gets the standalone Milvus server (PyPI `milvus`, no dependencies) for
# tests/search/test_milvus_server.py: a test tool, never a qembed dependency; without it those tests skip.
# The test extra holds the docs extra, so the site builds after the suite without a second install.
$(VENV)/.installed-test: $(VENV)/.torch pyproject.toml
	$(BIN)/python -m pip install -q -e ".[all,test]"
	$(BIN)/python -m pip install -q --no-deps milvus || echo "milvus not installed: the Milvus server tests will skip"
	touch $@ $(VENV)/.installed-docs

# The docs extra alone builds the site (no other extra is needed).
$(VENV)/.installed-docs: $(VENV)/.torch pyproject.toml
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Headless Chromium renders the cluster report in its test; installed from Debian when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the cluster report and studio browser tests will fail or skip"

serve: install
	$(BIN)/qembed serve --model-path "$(MODEL)" --host $(HOST) --port $(PORT)

# Two pytest workers (pytest-xdist), a test file per worker at a time: much of the suite waits on
# servers and subprocesses starting, so two workers fill two cores. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: install-test chromium
	QEMBED_TEST_TORCH="$(TORCH)" $(BIN)/python -m pytest --durations=25 -n $(TEST_WORKERS) --dist loadfile
	$(MAKE) docs

# The documentation site (mkdocs.yml, docs/): built strictly, so a broken link or reference fails.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

bench: install-test
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache
