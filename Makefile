# Each target bootstraps .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Until flowd and flowtui land, the demo runs every example DAG once with `flow dags test`.
# Its state and logs live in ./demo-home.
DEMO_ENV := FLOW_DAGS_FOLDER=$(CURDIR)/dags FLOW_DB_URL=sqlite:///$(CURDIR)/demo-home/flow.db \
	FLOW_LOG_FOLDER=$(CURDIR)/demo-home/logs
DEMO_DAGS := example_branch example_xcom example_taskflow example_pipeline

demo: $(STAMP)
	@mkdir -p demo-home
	@echo "== flow dags list" && $(DEMO_ENV) $(BIN)/flow dags list
	@for dag in $(DEMO_DAGS); do \
	  echo; echo "== flow dags test $$dag"; \
	  $(DEMO_ENV) $(BIN)/flow dags test $$dag || echo "(the run of $$dag failed; see above)"; \
	done
	@echo; echo "== flow dags show example_xcom" && $(DEMO_ENV) $(BIN)/flow dags show example_xcom
	@echo; echo "== flow dags next-runs example_taskflow -n 3" && \
	  $(DEMO_ENV) $(BIN)/flow dags next-runs example_taskflow -n 3
	@echo; echo "State and logs: ./demo-home. Try more with: $(DEMO_ENV) $(BIN)/flow --help"

lint: $(STAMP)
	$(BIN)/ruff check flow daemon executors tui tests bench dags

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -x --durations=10

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
