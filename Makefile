# The two commands of the README: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: run test lint format bench bench-ingest bench-middleware bench-anomalies bench-forecasting \
        bench-personalization eval-anomalies eval-forecasting eval-scaling clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) install -q -r requirements-dev.txt
	touch $@

## run: the product on its embedded default (SQLite, filesystem broker), demo data, web+worker+beat
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py bootstrap
	$(PY) manage.py runstack

## test: the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)
test: $(VENV)/.dev
	PHASE3_TESTING=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-ingest: $(VENV)/.dev
	$(PY) bench/ingest.py
bench-middleware: $(VENV)/.dev
	$(PY) bench/middleware.py
bench-anomalies: $(VENV)/.dev
	$(PY) bench/anomalies.py
bench-forecasting: $(VENV)/.dev
	$(PY) bench/forecasting.py
bench-personalization: $(VENV)/.dev
	$(PY) bench/personalization.py
bench: bench-ingest bench-middleware bench-anomalies bench-forecasting bench-personalization

## eval-anomalies: NAB scores of the detector on ../shared/data/nab
eval-anomalies: $(VENV)/.runtime
	rm -rf var/nab-out
	$(PY) manage.py detect_anomalies ../shared/data/nab/data/*/*.csv --out-dir var/nab-out
	$(PY) ../shared/tools/nab_score.py ../shared/data/nab var/nab-out

clean:
	rm -rf var/cache var/broker
