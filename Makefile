# Two commands: `make run` starts the stack, `make test` runs the suite.
# Both set up what they need: a virtualenv with pinned dependencies and a redis-server.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup browser run test lint typecheck unit bench bench-nautilus bench-smoke soak status stop clean

setup: $(STAMP) redis-server

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required: set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

redis-server:
	@command -v redis-server >/dev/null 2>&1 || bash deploy/install-redis.sh

# Debian's chromium, driven by playwright (dev extra) in the browser tests.
browser:
	@command -v chromium >/dev/null 2>&1 || bash deploy/install-chromium.sh

run: setup
	@mkdir -p var/log var/redis
	@bash deploy/setup-redis-acl.sh
	exec $(VENV)/bin/supervisord -n -c deploy/supervisord.conf

status: setup
	REDIS_URL=$${REDIS_URL:-redis://operator@127.0.0.1:6379/0} REDIS_PASSWORD_FILE=$${REDIS_PASSWORD_FILE:-var/secrets/operator.password} $(PY) -m hub.status

# Returns once supervisord and every program (redis-server last) have exited, or fails after 60 s.
stop:
	@bash deploy/stop.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

# The outer limit is a last resort against a hang outside any test (the suite takes ~8.5 min on 2 cores).
unit: setup browser
	timeout --kill-after=30 1200 $(VENV)/bin/pytest

test: lint typecheck unit

bench: setup bench-nautilus
	$(PY) -m bench

# NautilusTrader for the backtest bench, in its own virtualenv (it pins another uvloop than ours).
bench-nautilus:
	@test -x .venv-nautilus/bin/python || $(PYTHON) -m venv .venv-nautilus
	@.venv-nautilus/bin/python -c 'import nautilus_trader' 2>/dev/null || \
		.venv-nautilus/bin/pip install --quiet -r bench/nautilus-requirements.txt

bench-smoke: setup
	$(PY) -m bench --smoke

# Not in CI: the market-making stack on the sim market for an hour (bench/soak); e.g. SOAK_ARGS='--duration 20m'.
soak: setup
	$(PY) -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var/redis var/log/*.log .pytest_cache .mypy_cache .ruff_cache
