# The one test command (README): installs the Python packages the tests need, then runs them.
PYTHON ?= python3

.PHONY: test lint

test:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PYTHON) -m pytest -n 2 --dist loadfile

lint:
	ruff check .
	ruff format --check .
