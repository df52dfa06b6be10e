# convlab: `make lab` to learn, `make test` to check everything.
# Every target creates .venv first if it is missing (pinned versions from requirements.txt, the lock
# compiled from requirements.in by `make lock`). `make venv TORCH=cpu`: CPU-only PyTorch on Linux.

PYTHON ?= python3
TORCH  ?= default
UV     ?= $(BIN)/uv
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader runs `alembic` from PATH, and Jupyter must find this environment's kernel first.
export PATH := $(BIN):$(PATH)
export JUPYTER_PREFER_ENV_PATH := 1
# Offline, deterministic CIFAR-10 stand-in for tests and stored outputs (see data/README.md).
TEST_ENV := CONVLAB_FAKE_DATA=1
# Extra pytest arguments for `make test` / `make test-fast`, e.g. PYTEST_ARGS="-k hostile -x".
PYTEST_ARGS ?=
# `make test` runs in this many pytest-xdist workers (by file; tests/conftest.py); 0: in this process.
# 3 on 2 cores: the suite mostly waits on kernels, hubs and browsers.
TEST_WORKERS ?= 3

STAMP := $(VENV)/.installed

.PHONY: lab instructor-lab test test-fast release venv clean-venv system-deps grader-deps autograde lock hub hub-deps

# Prerequisites two at a time (the venv's pip install beside apt); one target's recipe stays serial.
MAKEFLAGS += --jobs=2

# One line saying which Python is needed when the one found is too old (or newer than tested).
PY_CHECK := from __future__ import print_function; import sys; v = sys.version_info[:2]; \
	sys.exit("convlab needs Python 3.11, 3.12 or 3.13, but %s is Python %s: install one and run e.g. " \
	"make PYTHON=python3.12 (and delete .venv if it was made with the old one)" % (sys.executable, sys.version.split()[0])) \
	if v < (3, 11) else print("warning: Python %d.%d is newer than tested (3.11-3.13)" % v) if v > (3, 13) else None

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "convlab needs Python 3.11, 3.12 or 3.13: '$(PYTHON)' was not found (make PYTHON=/path/to/python3.12)" >&2; exit 1; }
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -c '$(PY_CHECK)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "'$(PYTHON) -m venv' failed: on Debian/Ubuntu install python3-venv (sudo apt-get install python3-venv)" >&2; exit 1; }
ifeq ($(TORCH),cpu)
	@# PyTorch's CPU-only wheels (~200 MB instead of ~5 GB with CUDA); the lock's CUDA packages are left out.
	$(BIN)/python -m pip install --quiet --index-url https://download.pytorch.org/whl/cpu \
		$$(grep -oE '^torch(vision)?==[^ ;]+' requirements.txt)
	grep -vE '^(nvidia-|cuda-|triton)' requirements.txt > $(VENV)/requirements-cpu.txt
	$(BIN)/python -m pip install --quiet --no-deps --requirement $(VENV)/requirements-cpu.txt
else
	$(BIN)/python -m pip install --quiet --no-deps --requirement requirements.txt
endif
	@# venvs made before the lock left these out (see LOCK_OMIT below)
	@$(BIN)/python -m pip uninstall --quiet --yes $(LOCK_OMIT) 2>/dev/null || true
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (convlab)" >/dev/null
	@# matplotlib's font list, built once: the grader's sandboxes copy it in (grader/inside/zygote.py)
	MPLCONFIGDIR=$(abspath $(VENV))/share/convlab/matplotlib $(BIN)/python -c "import matplotlib.font_manager"
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

## Debian packages, installed as root in ONE apt run (two at once would fight over dpkg's lock),
## beside the venv's pip install (`make test` builds its prerequisites two at a time): bubblewrap
## for the autograder's sandbox; chromium and npm for the hub and its browser tests. Not root:
## nothing is installed; grader-deps and hub-deps say what to run.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		pkgs="$$(command -v bwrap >/dev/null 2>&1 || echo bubblewrap) $$(command -v chromium >/dev/null 2>&1 || echo chromium) $$(command -v npm >/dev/null 2>&1 || echo npm)"; \
		if [ -n "$$(echo $$pkgs)" ]; then \
			apt-get install -y $$pkgs || { apt-get update && apt-get install -y $$pkgs; }; fi; fi

## The autograder's sandbox needs bubblewrap (Debian/Ubuntu package `bubblewrap`).
grader-deps: system-deps
	@command -v bwrap >/dev/null 2>&1 || { \
		echo "The autograder needs bubblewrap: run 'sudo apt-get install -y bubblewrap'" \
		     "(or your distribution's equivalent), then 'make test' again." >&2; exit 1; }

## The hub and its browser tests need Debian's chromium, configurable-http-proxy (npm, into
## .venv/node) and the course installed for the hub in /opt/convlab ($CONVLAB_RUNTIME, hub/runtime.py:
## the students' Python without the source, the staff's copy readable by convlab-staff only).
## As root this installs them; otherwise it says what to run (the e2e tests then skip).
CHP_VERSION := 5.3.0
hub-deps: $(STAMP) system-deps
	@if [ "$$(id -u)" != 0 ]; then \
		echo "note: the JupyterHub/browser tests (tests/e2e) need root: run 'sudo make hub-deps' and" \
		     "'sudo make test' to include them; they are skipped now." >&2; exit 0; fi; \
	set -e; \
	test -x $(VENV)/node/bin/configurable-http-proxy || \
		npm install --silent --no-fund --no-audit --prefix $(VENV)/node -g configurable-http-proxy@$(CHP_VERSION); \
	$(BIN)/python -m hub.runtime

## The class on this machine: JupyterHub on localhost with a demo instructor and two demo
## students (their logins are printed); Ctrl-C stops it and removes the demo accounts. Root only.
hub: $(STAMP) grader-deps hub-deps
	$(BIN)/python -m hub.demo

## Grade a folder of submissions: make autograde SUBMISSIONS=path/to/folder
autograde: $(STAMP) grader-deps
	$(BIN)/python -m grader autograde $(SUBMISSIONS)

## The Kubernetes exchange, for tests/hub/test_ngshare_exchange.py, beside the lock (pip --target
## --no-deps): in .venv/k8s-exchange/client, ngshare_exchange 0.5.3 (the users' images' nbgrader plugin;
## its metadata pins jupyter_core<4.11.2, but it runs on the lock's); in .venv/k8s-exchange/server,
## ngshare 0.6.0 on SQLAlchemy 1.4 and an alembic for it, as in the ngshare chart's own image (on
## SQLAlchemy 2, ngshare 0.6.0 answers success but stores no release or submission). The rest is the lock's.
K8S_EXCHANGE := $(VENV)/k8s-exchange
.PHONY: k8s-exchange-deps
k8s-exchange-deps: $(K8S_EXCHANGE)/.installed
$(K8S_EXCHANGE)/.installed: $(STAMP)
	@rm -rf $(K8S_EXCHANGE)
	$(BIN)/python -m pip install --quiet --no-deps --target $(K8S_EXCHANGE)/client ngshare-exchange==0.5.3
	$(BIN)/python -m pip install --quiet --no-deps --target $(K8S_EXCHANGE)/server \
		ngshare==0.6.0 SQLAlchemy==1.4.54 alembic==1.13.3
	@touch $@

## Run every test: unit tests, doctests of convlab, release-in-sync, nbval on solutions, student
## versions, grading pipeline, sandbox and hostile catalog (as root, also as an unprivileged user).
test: $(STAMP) grader-deps hub-deps k8s-exchange-deps
	$(TEST_ENV) $(BIN)/python -m pytest tests convlab solutions --doctest-modules --nbval --nbval-current-env \
		--nbval-sanitize-with grader/nbval_sanitize.cfg -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

## The quick tests only (no sandbox, hostile catalog, fork server, nbval, pipeline, e2e): under a minute.
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests convlab --doctest-modules -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

## Recompile requirements.txt from requirements.in (with the venv's uv, which the lock holds), then check that the
## lock installs on Linux (x86_64, aarch64) and macOS 14+ (Apple silicon) for Python 3.11-3.13.
# rfc3987-syntax (and its lark) are left out: jupyter-events asks for jsonschema[format-nongpl], whose
# rfc3987-syntax builds ~20 parsers when imported (2.7 s in EVERY process that imports nbformat or
# Jupyter Server: nbgrader, the grader, JupyterLab, the hub); jsonschema works without it (no "iri"
# format checks, which nothing here uses). So the lock is installed with --no-deps: it is complete.
LOCK_OMIT := rfc3987-syntax lark
lock: $(STAMP)
	$(UV) pip compile --quiet --universal --python-version 3.11 --annotation-style line \
		$(foreach p,$(LOCK_OMIT),--no-emit-package $(p)) \
		--custom-compile-command "make lock" --output-file requirements.txt requirements.in
	@for platform in x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin; do \
		for python in 3.11 3.12 3.13; do \
			MACOSX_DEPLOYMENT_TARGET=14.0 $(UV) pip install --dry-run --quiet --target $(VENV)/lock-check \
				--python-platform $$platform --python-version $$python --requirement requirements.txt \
			&& echo "installs on $$platform, Python $$python" || exit 1; \
		done; done

## Regenerate notebooks/ (student versions) from solutions/ with nbgrader.
release: $(STAMP)
	$(BIN)/python -m grader release

clean-venv:
	rm -rf $(VENV)
