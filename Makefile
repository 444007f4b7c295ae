# One Makefile that CI calls exactly as a developer does.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MELTANO_VENV := .venv-meltano
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/$(MELTANO_VENV)/bin:$(PATH)

.PHONY: install demo test test-fast lint bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(MELTANO_VENV)/bin/meltano:
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MELTANO_VENV)/bin/python -m pip install --quiet meltano

install: $(BIN)/.installed $(MELTANO_VENV)/bin/meltano

demo: install
	$(BIN)/python -m client.demo

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

screenshots: install  # refresh docs/screenshots from the browser tests
	SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/service/test_web.py tests/service/test_web_setup.py tests/service/test_web_editor_check.py tests/service/test_web_checks.py $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check providers client service tests bench
	$(BIN)/ruff format --check providers client service tests bench
	$(BIN)/mypy

bench: install  # wrk (apt-get install -y wrk) for the service throughput row
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),)

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .mypy_cache .ruff_cache .pytest_cache
