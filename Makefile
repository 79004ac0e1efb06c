# Everything a fresh Debian machine needs; `make test` and `make demo` are the two doors.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit bench tools clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Real validators the tests run: promtool (Debian prometheus), borgmatic (Debian).
tools:
	@command -v promtool >/dev/null && command -v borgmatic >/dev/null || { \
	  echo "installing prometheus and borgmatic (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus borgmatic >/dev/null; }
	@# Debian starts a prometheus service on install; tests run their own.
	@-systemctl stop prometheus >/dev/null 2>&1 || true

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

unit: $(STAMP) tools
	$(BIN)/pytest -q -p no:cacheprovider

test: lint unit

demo: $(STAMP)
	$(BIN)/blumeops validate examples/demo
	$(BIN)/blumeops up examples/demo --detach --yes

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
