# Everything a fresh Debian machine needs; `make test` and `make demo` are the two doors.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-down lint unit bench bench-peers tools clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Real validators the tests run: promtool (Debian prometheus), borgmatic (Debian),
# systemd-analyze (Debian systemd).
tools:
	@command -v promtool >/dev/null && command -v borgmatic >/dev/null || { \
	  echo "installing prometheus and borgmatic (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus borgmatic >/dev/null; }
	@command -v systemd-analyze >/dev/null || { \
	  echo "installing systemd for systemd-analyze (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
	@# Debian starts a prometheus service on install; tests run their own.
	@-systemctl stop prometheus >/dev/null 2>&1 || true

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

unit: $(STAMP) tools
	$(BIN)/pytest -q -p no:cacheprovider

test: lint unit

# The demo's one secret lives in a vault encrypted to this machine's key: make it once.
demo: $(STAMP)
	$(BIN)/blumeops validate examples/demo
	@$(BIN)/blumeops secret ls examples/demo 2>/dev/null | grep -qx 'demo/api-token' || \
	  $(BIN)/blumeops secret set examples/demo demo/api-token --generate
	$(BIN)/blumeops up examples/demo --detach
	@echo
	@echo "The demo runs in the background: try http://www.ops.localhost:8080/"
	@echo "  $(BIN)/blumeops status examples/demo    # health and URLs"
	@echo "  $(BIN)/blumeops down examples/demo      # stop it, leaving no process"

demo-down: $(STAMP)
	$(BIN)/blumeops down examples/demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Peers for comparison live in their own venv: their pins must not mix with ours.
bench-peers: $(STAMP)
	test -x bench/.venv-peers/bin/ansible-runner || { $(PY) -m venv bench/.venv-peers && \
	  bench/.venv-peers/bin/pip install -q ansible-core ansible-runner; }
	$(BIN)/python bench/run.py --peers

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
