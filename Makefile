# convlab: `make lab` to learn, `make test` to check everything.
# Every target creates .venv first if it is missing (pinned versions from requirements.txt).

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader runs `alembic` from PATH, and Jupyter must find this environment's kernel first.
export PATH := $(BIN):$(PATH)
export JUPYTER_PREFER_ENV_PATH := 1
# Offline, deterministic CIFAR-10 stand-in for tests and stored outputs (see data/README.md).
TEST_ENV := CONVLAB_FAKE_DATA=1

STAMP := $(VENV)/.installed

.PHONY: lab instructor-lab test release venv clean-venv grader-deps autograde hub hub-deps

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --requirement requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (convlab)" >/dev/null
	@touch $@

## Open the course (student notebooks) in JupyterLab, with the student's tools only (nbgrader's
## Assignments and Validate; no formgrader, no Create Assignment, no news popup): the config in
## hub/jupyter/student, as on the hub, with an empty local exchange. Root needs --allow-root.
lab: $(STAMP)
	@mkdir -p $(VENV)/exchange
	JUPYTER_CONFIG_PATH=$(CURDIR)/hub/jupyter/student CONVLAB_EXCHANGE=$(abspath $(VENV))/exchange \
		$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## For instructors editing solutions/: JupyterLab on the whole repository with all of nbgrader's
## tools (Create Assignment, Formgrader on the course config in grader/).
instructor-lab: $(STAMP)
	JUPYTER_CONFIG_PATH=$(CURDIR)/grader $(BIN)/jupyter lab --notebook-dir=. \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## The autograder's sandbox needs bubblewrap (Debian/Ubuntu package `bubblewrap`).
grader-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y bubblewrap || { apt-get update && apt-get install -y bubblewrap; }; \
		else \
			echo "The autograder needs bubblewrap: run 'sudo apt-get install -y bubblewrap'" \
			     "(or your distribution's equivalent), then 'make test' again." >&2; exit 1; \
		fi; }

## The hub and its browser tests need Debian's chromium, configurable-http-proxy (npm, into
## .venv/node) and, where the venv's Python is private to root, .venv/hub (hub/shared_env.py).
## As root this installs them; otherwise it says what to run (the e2e tests then skip).
CHP_VERSION := 5.3.0
hub-deps: $(STAMP)
	@if [ "$$(id -u)" != 0 ]; then \
		echo "note: the JupyterHub/browser tests (tests/e2e) need root: run 'sudo make hub-deps' and" \
		     "'sudo make test' to include them; they are skipped now." >&2; exit 0; fi; \
	set -e; \
	pkgs="$$(command -v chromium >/dev/null 2>&1 || echo chromium) $$(command -v npm >/dev/null 2>&1 || echo npm)"; \
	if [ -n "$$(echo $$pkgs)" ]; then \
		apt-get install -y $$pkgs || { apt-get update && apt-get install -y $$pkgs; }; fi; \
	test -x $(VENV)/node/bin/configurable-http-proxy || \
		npm install --silent --no-fund --no-audit --prefix $(VENV)/node -g configurable-http-proxy@$(CHP_VERSION); \
	$(BIN)/python hub/shared_env.py

## The class on this machine: JupyterHub on localhost with a demo instructor and two demo
## students (their logins are printed); Ctrl-C stops it and removes the demo accounts. Root only.
hub: $(STAMP) grader-deps hub-deps
	$(BIN)/python -m hub.demo

## Grade a folder of submissions: make autograde SUBMISSIONS=path/to/folder
autograde: $(STAMP) grader-deps
	$(BIN)/python -m grader autograde $(SUBMISSIONS)

## Run every test: unit tests, release-in-sync, nbval on solutions, student versions, grading pipeline.
test: $(STAMP) grader-deps hub-deps
	$(TEST_ENV) $(BIN)/python -m pytest tests solutions --nbval --nbval-current-env \
		--nbval-sanitize-with grader/nbval_sanitize.cfg -p no:cacheprovider

## Regenerate notebooks/ (student versions) from solutions/ with nbgrader.
release: $(STAMP)
	$(BIN)/python -m grader release

clean-venv:
	rm -rf $(VENV)
