# Each target bootstraps .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed

.PHONY: demo demo-stop test lint bench clean install uninstall deb

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# `make demo` needs flow only; the test kit (pytest, ruff, PostgreSQL driver...) is for `make test`.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

# `make demo`: flowd (user mode) on the example DAGs in the background, `flow status`, one triggered
# run followed to the end, another triggered, the SSH example on localhost (working where sshd runs
# and your key is authorized there, else failing with the reason), then the console (flowtui) on
# them when this is a terminal. State, logs, socket and flowd's own log live in ./demo-home; `make demo-stop` stops flowd.
DEMO := $(CURDIR)/demo-home
DEMO_ENV := FLOW_DAGS_FOLDER=$(CURDIR)/dags FLOW_DB_URL=sqlite:///$(DEMO)/flow.db \
	FLOW_LOG_FOLDER=$(DEMO)/logs FLOW_SOCKET=$(DEMO)/flowd.sock FLOW_CONNECTIONS=$(DEMO)/connections.toml

demo: $(RUN_STAMP)
	@mkdir -p $(DEMO)
	@if $(DEMO_ENV) $(BIN)/flow status >/dev/null 2>&1; then echo "flowd already running on $(DEMO)/flowd.sock"; \
	else echo "== starting flowd (log: demo-home/flowd.log)"; \
	  $(DEMO_ENV) nohup $(BIN)/flowd --user > $(DEMO)/flowd.log 2>&1 & echo $$! > $(DEMO)/flowd.pid; \
	  for i in $$(seq 100); do $(DEMO_ENV) $(BIN)/flow status >/dev/null 2>&1 && break; sleep 0.1; done; fi
	@echo; echo "== flow status" && $(DEMO_ENV) $(BIN)/flow status
	@echo; echo "== flow dags trigger example_xcom --follow" && $(DEMO_ENV) $(BIN)/flow dags trigger example_xcom --follow
	@echo; echo "== flow dags trigger example_pipeline" && $(DEMO_ENV) $(BIN)/flow dags trigger example_pipeline
	@echo; echo "== example_ssh: remote tasks on the connection 'localhost' (demo-home/connections.toml)"
	@[ -f $(DEMO)/connections.toml ] || printf '[localhost]\nhost = "127.0.0.1"\n' > $(DEMO)/connections.toml
	@if $(PY) -c 'import socket; socket.create_connection(("127.0.0.1", 22), 1)' 2>/dev/null; then \
	  echo "sshd answers on 127.0.0.1:22: trusting its host key in demo-home/known_hosts"; \
	  $(DEMO_ENV) $(BIN)/flow connections trust localhost --yes; \
	else echo "no sshd on 127.0.0.1:22: the remote tasks will fail and say why"; fi
	@$(DEMO_ENV) $(BIN)/flow dags trigger example_ssh --follow || \
	  echo "(example_ssh failed: its log above says why; see the README's SSH section)"
	@echo; echo "flowd keeps running and scheduling (example_branch fires every minute). Stop it with: make demo-stop"
	@if [ -t 0 ] && [ -t 1 ]; then echo "== flowtui (q quits, ? shows the keys)"; sleep 1; \
	  $(DEMO_ENV) $(BIN)/flowtui; \
	else echo "Open the console with: $(DEMO_ENV) $(BIN)/flowtui"; fi

demo-stop:
	@if [ -f $(DEMO)/flowd.pid ]; then kill $$(cat $(DEMO)/flowd.pid) 2>/dev/null && echo "flowd stopped"; \
	  rm -f $(DEMO)/flowd.pid; else echo "no demo flowd running"; fi

lint: $(STAMP)
	$(BIN)/ruff check flow daemon executors tui tests bench dags

# The SSH tests need Debian's openssh-server (a real sshd on 127.0.0.1), the console's end-to-end
# tests tmux, tests/system debootstrap: scripts/bootstrap-apt.sh installs them when missing and root.
test: $(STAMP) lint
	@scripts/bootstrap-apt.sh
	$(BIN)/python -m pytest -q -x -n 4 --dist loadfile --durations=10

# As root: flow in its own virtualenv at /opt/flow, flow/flowd/flowtui in /usr/local/bin, the units,
# sysusers and tmpfiles snippets, /etc/flowd (never overwritten); README "Install on a server".
# `make uninstall` keeps configuration, database and logs unless PURGE=1.
install:
	@scripts/install.sh install

uninstall:
	@PURGE=$(PURGE) scripts/install.sh uninstall

# flow_<version>_<arch>.deb: the same layout (venv at /opt/flow, links in /usr/bin, units in
# /usr/lib/systemd), maintainer scripts from packaging/debian; built with dpkg-deb, no root needed.
deb:
	@scripts/build-deb.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info flow_*.deb
