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

.PHONY: lab test release venv clean-venv grader-deps autograde

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --requirement requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (convlab)" >/dev/null
	@touch $@

## Open the course (student notebooks) in JupyterLab. nbgrader's extensions find the course
## config in grader/; root (as in containers) needs --allow-root.
lab: $(STAMP)
	JUPYTER_CONFIG_PATH=$(CURDIR)/grader $(BIN)/jupyter lab --notebook-dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

## The autograder's sandbox needs bubblewrap (Debian/Ubuntu package `bubblewrap`).
grader-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y bubblewrap || { apt-get update && apt-get install -y bubblewrap; }; \
		else \
			echo "The autograder needs bubblewrap: run 'sudo apt-get install -y bubblewrap'" \
			     "(or your distribution's equivalent), then 'make test' again." >&2; exit 1; \
		fi; }

## Grade a folder of submissions: make autograde SUBMISSIONS=path/to/folder
autograde: $(STAMP) grader-deps
	$(BIN)/python -m grader autograde $(SUBMISSIONS)

## Run every test: unit tests, release-in-sync, nbval on solutions, student versions, grading pipeline.
test: $(STAMP) grader-deps
	$(TEST_ENV) $(BIN)/python -m pytest tests solutions --nbval --nbval-current-env \
		--nbval-sanitize-with grader/nbval_sanitize.cfg -p no:cacheprovider

## Regenerate notebooks/ (student versions) from solutions/ with nbgrader.
release: $(STAMP)
	$(BIN)/python -m grader release

clean-venv:
	rm -rf $(VENV)
