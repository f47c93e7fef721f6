# The two commands of the README: `make demo` and `make test`. Each sets up the venv from requirements.lock when
# it is missing or out of date (a no-op the second time), then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export RUNTIME__DLTHUB_TELEMETRY := false
export DO_NOT_TRACK := 1

.PHONY: demo test venv lint bench clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	SEGMENT_ACCOUNTS_DATA=$${SEGMENT_ACCOUNTS_DATA:-$(CURDIR)/data/demo} $(BIN)/segment-accounts demo

lint: venv
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/ruff format --check pipelines tests bench

test: venv lint
	$(BIN)/pytest

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) target dbt_packages logs data
