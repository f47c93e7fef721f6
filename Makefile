# The two commands of the README: `make demo` and `make test`. Each sets up the venv from requirements.lock when
# it is missing or out of date (a no-op the second time), then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export RUNTIME__DLTHUB_TELEMETRY := false
export DO_NOT_TRACK := 1

.PHONY: demo test test-long test-spark test-cloud venv lint bench clean postgres-binaries chromium java

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The Postgres suite starts its own throwaway server from the OS's binaries; install them when they are missing.
postgres-binaries:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ echo "installing PostgreSQL server binaries (Debian package postgresql)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The admin page's browser test drives the OS's Chromium with playwright (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || \
		{ echo "installing Chromium for the browser test (Debian package chromium)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The demo's own folder, whatever SEGMENT_ACCOUNTS_DATA an operator exported for a real installation (the demo
# also refuses a folder holding other connections).
DEMO_DATA ?= $(CURDIR)/data/demo
demo: venv
	SEGMENT_ACCOUNTS_DATA=$(DEMO_DATA) $(BIN)/segment-accounts demo

# Spark has its own venv: pyspark is ~630 MB that `make demo` and `make test` users should not carry.
SPARK_VENV := .venv-spark
SPARK_STAMP := $(SPARK_VENV)/.installed

$(SPARK_STAMP): requirements.lock requirements-spark.lock pyproject.toml
	$(PYTHON) -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
		-r requirements.lock -r requirements-spark.lock
	$(SPARK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
		--no-build-isolation -e .
	touch $(SPARK_STAMP)

java:
	@command -v java >/dev/null 2>&1 || \
		{ echo "installing a Java runtime for Spark (Debian package default-jre-headless)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; }

# dbt on Spark in local mode, raw events as the Parquet files dlt writes.
test-spark: $(SPARK_STAMP) java
	SPARK_LOCAL_IP=127.0.0.1 $(SPARK_VENV)/bin/pytest -m spark -p no:cacheprovider tests/test_spark.py

# Snowflake and BigQuery: every model compiled with their adapters, no connection. Own venv: see the lock's header.
CLOUD_VENV := .venv-cloud
CLOUD_STAMP := $(CLOUD_VENV)/.installed

$(CLOUD_STAMP): requirements-cloud.lock pyproject.toml
	$(PYTHON) -m venv $(CLOUD_VENV)
	$(CLOUD_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements-cloud.lock
	$(CLOUD_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
		--no-build-isolation -e .
	touch $(CLOUD_STAMP)

test-cloud: $(CLOUD_STAMP)
	$(CLOUD_VENV)/bin/pytest -m cloud -p no:cacheprovider tests/test_cloud_adapters.py

lint: venv
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/ruff format --check pipelines tests bench

# Two workers (pytest-xdist), a test file each at a time: most tests wait on a child process (dbt, the CLI, a
# server), so the 2 cores stay busy and the suite takes ~60% of its serial time. Files keep their module fixtures.
test: venv lint postgres-binaries chromium
	$(BIN)/pytest -n 2 --dist loadfile

# The long variants (marker `long`): more generated input and more repetitions than `make test` can afford.
test-long: venv postgres-binaries
	$(BIN)/pytest -m long || [ $$? -eq 5 ]  # 5: none collected

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(SPARK_VENV) $(CLOUD_VENV) target dbt_packages logs data
