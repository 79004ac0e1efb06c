# Everything a fresh Debian machine needs; `make test` and `make demo` are the two doors.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The versions the suite passed with (pip constraints; the package keeps its ranges for
# users). `make lock` refreshes them; `make test-latest` runs on the newest releases.
LOCK ?= constraints/test.txt
BORGMATIC_LOCK := constraints/borgmatic.txt
PIP_LOCK = $(if $(LOCK),-c $(LOCK))

.PHONY: test test-latest lock demo demo-down lint docs unit bench bench-peers tools clean

$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip $(PIP_LOCK)
	$(BIN)/pip install -q -e '.[test]' $(PIP_LOCK)
	touch $(STAMP)

# Real validators the tests run: promtool (Debian prometheus), borgmatic (Debian),
# systemd-analyze (Debian systemd), nginx (Debian).
tools:
	@command -v promtool >/dev/null && command -v borgmatic >/dev/null || { \
	  echo "installing prometheus and borgmatic (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus borgmatic >/dev/null; }
	@command -v systemd-analyze >/dev/null || { \
	  echo "installing systemd for systemd-analyze (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
	@# Debian starts a prometheus service on install; tests run their own.
	@-systemctl stop prometheus >/dev/null 2>&1 || true
	@# SSH test hosts are real sshd (Debian openssh-server) on 127.0.1.x; its own service stays off.
	@test -x /usr/sbin/sshd || { \
	  echo "installing openssh-server (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	  systemctl disable --now ssh >/dev/null 2>&1 || true; }
	@# NixOS modules are parsed and read back by Debian's nix-bin (offline: nothing is built).
	@command -v nix-instantiate >/dev/null || { echo "installing nix-bin (apt-get)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin >/dev/null; }
	@# The public proxy's config is checked by Debian's nginx (`nginx -t`); its service stays off.
	@test -x /usr/sbin/nginx || { echo "installing nginx (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  systemctl disable --now nginx >/dev/null 2>&1 || true; }
	@# borgmatic 2 (PyPI) validates rendered configs in the current format; its own venv,
	@# like the benchmark peers', so its pins never mix with ours. Debian's 1.7 stays for the
	@# old sectioned format.
	@test -x .venv-borgmatic/bin/borgmatic || { echo "installing borgmatic 2 (.venv-borgmatic)"; \
	  $(PY) -m venv .venv-borgmatic && \
	  .venv-borgmatic/bin/pip install -q 'borgmatic>=2.1,<2.2' -c $(BORGMATIC_LOCK); }
	@# SSH test hosts run a Python 3.9 python3 (what a Mac has out of the box): pyenv's.
	@ls $(HOME)/.pyenv/versions/3.9.*/bin/python3.9 >/dev/null 2>&1 || \
	  echo "warning: no pyenv python3.9: the SSH tests will fail (pyenv install 3.9)"
	@# The dashboard's browser tests drive Debian's headless Chromium (playwright, no download).
	@test -x /usr/bin/chromium || { echo "installing chromium (apt-get)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The layers (pyproject.toml [tool.importlinter]): nothing imports upward, no module cycles.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

unit: $(STAMP) tools
	$(BIN)/pytest -q -p no:cacheprovider

# The docs/ site (mkdocs.yml): a broken link, anchor or nav entry fails the build. Not -q:
# it hides warnings from the count --strict fails on (mkdocs 1.6), so nothing would fail.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: lint docs unit

# The suite on the newest release of every dependency, in its own venv: finds drift on
# purpose (a release that breaks us) before a fresh clone does. Green? `make lock`.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest LOCK=

# Refresh the lock: resolve the newest releases in a throw-away venv and write them down.
# Then run `make test` (it reinstalls from the new lock) and commit constraints/ if green.
lock:
	rm -rf .venv-lock .venv-lock-borgmatic
	$(PY) -m venv .venv-lock && .venv-lock/bin/pip install -q -U pip && \
	  .venv-lock/bin/pip install -q -e '.[test]'
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/pip freeze --all --exclude-editable | \
	  grep -v '^setuptools=='; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	$(PY) -m venv .venv-lock-borgmatic && .venv-lock-borgmatic/bin/pip install -q -U pip && \
	  .venv-lock-borgmatic/bin/pip install -q 'borgmatic>=2.1,<2.2'
	{ sed -n '/^#/p' $(BORGMATIC_LOCK); .venv-lock-borgmatic/bin/pip freeze --all | \
	  grep -v '^setuptools=='; } > $(BORGMATIC_LOCK).new && mv $(BORGMATIC_LOCK).new $(BORGMATIC_LOCK)
	rm -rf .venv-lock .venv-lock-borgmatic

# The demo's one secret lives in a vault encrypted to this machine's key: make it once.
demo: $(STAMP)
	$(BIN)/blumeops validate examples/demo
	@$(BIN)/blumeops secret ls examples/demo 2>/dev/null | grep -qx 'demo/api-token' || \
	  $(BIN)/blumeops secret set examples/demo demo/api-token --generate
	$(BIN)/blumeops up examples/demo --detach
	@echo
	@echo "The demo runs in the background: try http://www.ops.localhost:8080/"
	@echo "  dashboard: http://127.0.0.1:7300/   (sync and rollback there need BLUMEOPS_API_TOKEN set for make demo)"
	@echo "  $(BIN)/blumeops status examples/demo    # health and URLs"
	@echo "  $(BIN)/blumeops down examples/demo      # stop it, leaving no process"

demo-down: $(STAMP)
	$(BIN)/blumeops down examples/demo

# One table: every number's median, spread and run count (bench/run.py --help).
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Peers for comparison live in their own venv: their pins must not mix with ours.
PEERS := bench/.venv-peers/bin
bench-peers: $(STAMP)
	test -x $(PEERS)/ansible-playbook -a -x $(PEERS)/ansible-runner -a -x $(PEERS)/pyinfra || { \
	  $(PY) -m venv bench/.venv-peers && \
	  $(PEERS)/pip install -q 'ansible-core>=2.19,<2.20' ansible-runner 'pyinfra>=3.10,<3.11'; }
	$(BIN)/python bench/run.py --peers

clean:
	rm -rf $(VENV) .venv-latest .venv-borgmatic .mypy_cache .ruff_cache
