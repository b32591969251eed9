# The one test command (README): installs the Python packages the tests need, then runs them.
PYTHON ?= python3

.PHONY: test install-test lint

test: lint
	$(PYTHON) -m pytest -n 2 --dist loadfile

install-test:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# openid-client for tests/interop (pinned by its lock file); without npm that test skips.
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/interop/oidc_rp --no-audit --no-fund; \
	else \
		echo "npm not found: tests/interop/test_openid_client.py will skip"; \
	fi

lint: install-test
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
