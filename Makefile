# Serendip: every command sets itself up (a .venv with everything installed) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The functions of template.yaml; `sam build` runs `make build-<LogicalId>` for each of them.
FUNCTION_BUILDS := build-RankFunction build-RewardsFunction build-RouteFunction \
	build-LearnFunction build-SweepFunction build-IndexFunction build-AdminFunction \
	build-PersonalizerFunction

.PHONY: demo serve test lint unit bench setup clean build browser $(FUNCTION_BUILDS)

demo: $(STAMP)
	$(BIN)/serendip demo

serve: $(STAMP)
	$(BIN)/serendip serve

test: $(STAMP) lint browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m local.resources --check

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks.obd
	$(BIN)/python -m benchmarks

# Debian's chromium renders the HTML report in tests/e2e/test_report_browser.py (CI runs as root
# with the package registries reachable); no browser download of its own.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

setup: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	$(BIN)/python -m pip install --quiet -e ./client
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Lambda packages: needs the AWS SAM CLI and python3.12 on PATH (not installed by setup).
# --build-in-source runs the makefile builds below in this checkout, not in a copy of it (.venv!).
build:
	@command -v sam >/dev/null || { echo "make build needs the AWS SAM CLI (sam) on PATH" >&2; exit 1; }
	@command -v python3.12 >/dev/null || { echo "make build needs python3.12 on PATH" >&2; exit 1; }
	sam build --build-in-source

# Called by `sam build` (Metadata: BuildMethod: makefile) with ARTIFACTS_DIR set: every function
# gets the same small package, only our code; third-party packages come from DependenciesLayer.
$(FUNCTION_BUILDS):
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 1; }
	mkdir -p "$(ARTIFACTS_DIR)"
	tar --exclude=__pycache__ --exclude='*.pyc' -cf - bandit functions policies \
		| tar -xf - -C "$(ARTIFACTS_DIR)"
