# The two commands of the README: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: run test test-clock-sweep lint format bench bench-ingest bench-middleware bench-anomalies bench-anomaly-job bench-anomaly-inhibition bench-anomaly-suggestions bench-anomaly-retention bench-anomaly-tuning-preview bench-forecasting \
        bench-personalization bench-insights bench-scaling eval-anomalies eval-anomalies-archetypes eval-anomalies-lookahead eval-anomaly-sensitivity eval-root-causes eval-root-causes-hourly eval-forecasting eval-forecasting-intervals \
        eval-scaling eval-insights eval-personalization eval-optimization clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) install -q -r requirements-dev.txt
	touch $@

## run: the product on its embedded default (SQLite, filesystem broker), demo data, web+worker+beat
## in development mode (DEBUG on): the settings' bare default is DEBUG off, local names only
run: export DJANGO_ENV ?= development
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py bootstrap
	$(PY) manage.py runstack

## test: the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set), in two
## processes (pytest-xdist: each has its own test database and Redis database); one process:
## `make test PYTEST_ARGS=`
PYTEST_ARGS ?= -n 2
test: $(VENV)/.dev
	PHASE3_TESTING=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## test-clock-sweep: the tests that read the shared demo world (it ends when the session
## starts) at eight times spread over a week; a failing time is printed to reproduce with
## `PHASE3_TEST_CLOCK=<time> make test`
CLOCK_SWEEP_TIMES ?= 2026-12-08T00:00 2026-12-08T10:40 2026-12-08T21:20 2026-12-09T08:00 \
        2026-12-10T05:20 2026-12-11T02:41 2026-12-12T13:21 2026-12-13T18:07
test-clock-sweep: $(VENV)/.dev
	@failed=""; for at in $(CLOCK_SWEEP_TIMES); do \
	  printf '%s: ' $$at; \
	  out=$$(PHASE3_TESTING=1 PHASE3_TEST_CLOCK=$$at $(PY) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS) $$(grep -rl demo_world tests --include='test_*.py') 2>&1); rc=$$?; \
	  echo "$$out" | grep -E '^(FAILED|ERROR) ' ; echo "$$out" | tail -1; \
	  [ $$rc -eq 0 ] || failed="$$failed $$at"; \
	done; [ -z "$$failed" ] || { echo "failed at:$$failed"; exit 1; }

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
bench-anomaly-job: $(VENV)/.dev
	$(PY) bench/anomaly_job.py $(BENCH_ARGS)
bench-anomaly-inhibition: $(VENV)/.dev
	$(PY) bench/anomaly_inhibition.py $(BENCH_ARGS)
bench-anomaly-suggestions: $(VENV)/.dev
	$(PY) bench/anomaly_suggestions.py $(BENCH_ARGS)
bench-anomaly-retention: $(VENV)/.dev
	$(PY) bench/anomaly_retention.py $(BENCH_ARGS)
bench-anomaly-tuning-preview: $(VENV)/.dev
	$(PY) bench/anomaly_tuning_preview.py
bench-forecasting: $(VENV)/.dev
	$(PY) bench/forecasting.py
bench-personalization: $(VENV)/.dev
	$(PY) bench/personalization.py
bench-insights: $(VENV)/.dev
	$(PY) bench/insights.py
bench-scaling: $(VENV)/.dev
	$(PY) bench/scaling.py
bench: bench-ingest bench-middleware bench-anomalies bench-forecasting bench-personalization

## eval-anomalies: NAB scores of the detector on ../shared/data/nab
eval-anomalies: $(VENV)/.runtime
	rm -rf var/nab-out
	$(PY) manage.py detect_anomalies ../shared/data/nab/data/*/*.csv --out-dir var/nab-out
	$(PY) ../shared/tools/nab_score.py ../shared/data/nab var/nab-out

## eval-anomalies-archetypes: held-out check on synthetic archetypes not in the NAB subset
eval-anomalies-archetypes: $(VENV)/.runtime
	$(PY) bench/anomaly_archetypes.py

## eval-anomaly-sensitivity: alerts, windows found and false alarms on NAB at each sensitivity
eval-anomaly-sensitivity: $(VENV)/.runtime
	$(PY) bench/anomaly_sensitivity.py

## eval-root-causes: incidents found and true causes ranked first across 152 demo worlds
eval-root-causes: $(VENV)/.dev
	PHASE3_TESTING=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 tests/anomalies/eval_root_cause_grid.py

## eval-root-causes-hourly: the same, with 48 demo worlds scored an hour at a time as the job runs
eval-root-causes-hourly: $(VENV)/.dev
	PHASE3_TESTING=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 tests/anomalies/eval_root_cause_hourly.py

## eval-anomalies-lookahead: NAB scores with the file-wide range NAB gives ARTime (an estimate, not a mode)
eval-anomalies-lookahead: $(VENV)/.runtime
	$(PY) bench/anomaly_lookahead.py

## eval-forecasting: the forecasting engine vs seasonal naive on ../shared/data/nab (MASE, coverage)
eval-forecasting: $(VENV)/.runtime
	$(PY) -m forecasting.engine.evaluate ../shared/data/nab/data --horizon-hours 24 --origins 3

## eval-forecasting-intervals: reported vs realised interval coverage on simulated families with known answers
eval-forecasting-intervals: $(VENV)/.runtime
	$(PY) bench/forecasting_intervals.py --series 100

## eval-scaling: replay NAB tweet volumes through the scaling engine vs the plain HPA rule
eval-scaling: $(VENV)/.runtime
	$(PY) bench/scaling.py --targets 0.5 0.7 0.85 --sizes 3 10 30

## eval-insights / eval-personalization / eval-optimization: measured on the database's data
## (the embedded default after `make run`, or DATABASE_URL); they read and print, nothing more
eval-insights: $(VENV)/.runtime
	$(PY) manage.py insights_evaluate
eval-personalization: $(VENV)/.runtime
	$(PY) manage.py personalization_evaluate
eval-optimization: $(VENV)/.runtime
	$(PY) manage.py optimization_evaluate

clean:
	rm -rf var/cache var/broker
