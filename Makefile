# The two commands of the README. Each creates .venv and installs the project when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fuzz bench clean browser screenshots

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,s3,ray]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/imgrec demo --out runs/demo

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q

# Style, complexity, and the package's layers (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

# Headless Chromium + chromedriver and Firefox for the page tests (Debian/Ubuntu packages).
browser:
	@command -v chromium >/dev/null && command -v firefox-esr >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver firefox-esr)

# The property-based and fuzz tests at length (thousands of examples each; make test runs 40).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -m fuzz

# The studio's screenshots in docs/images, taken by its browser test (docs/studio.md).
screenshots: $(STAMP) browser
	IMGREC_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/test_studio_browser.py

bench: $(STAMP)
	$(BIN)/python benchmarks/transfer.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
