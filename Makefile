# The one test command (README): installs the Python packages the tests need, then runs them.
PYTHON ?= python3

.PHONY: test install-test lint

test: lint
	$(PYTHON) -m pytest -n 2 --dist loadfile

install-test:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

lint: install-test
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
