# The README's first two commands. Each does every set-up step from a fresh clone:
# virtual environment, install (torch pinned by constraints.txt), WordNet data, then the job.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hspnet-installed
DEMO_DIR ?= demo-out
# This machine's pip configuration lists local indexes that may not exist; their warnings are noise.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: demo test lint install wordnet-data tool-venvs chromium netns-tools clean

demo: install wordnet-data
	$(BIN)/hspnet demo run $(DEMO_DIR) --overwrite --json $(DEMO_DIR)-summary.json

test: install wordnet-data tool-venvs chromium netns-tools lint
	$(BIN)/python -m pytest -q

# ruff (configured in pyproject.toml): lint rules, and the formatter's check that every file is
# formatted (run '.venv/bin/ruff format .' to format).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The real labeling tools the label-tool tests run against (Label Studio, datumaro, FiftyOne),
# each in its own venv under ~/.cache/hspnet/venvs (their pins would fight ours): minutes the
# first time, instant after. A tool that cannot be installed is reported here and its test fails.
tool-venvs: install
	$(BIN)/python tests/tool_venvs.py

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]" 2>&1 | $(PIP_FILTER)
	$(BIN)/python -c "import torch, torchvision, open_clip, faiss, nltk, typer" 
	touch $(STAMP)

# WordNet 3.0 for `taxonomy build --wordnet`: NLTK's corpus if present, else Debian's
# wordnet-base files (hspnet makes them readable for NLTK by itself). Debian's files are
# installed with apt-get when running as root on Debian/Ubuntu, even next to NLTK's corpus, so
# the test of the Debian route runs too; without either, this says how to install WordNet.
wordnet-data: install
	@if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "WordNet data: installing Debian's wordnet-base"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index >/dev/null; \
	fi
	@if $(BIN)/python -c "from hspnet_cli.taxonomy.wordnet_data import get_wordnet; get_wordnet()" 2>/dev/null; then \
	  echo "WordNet data: ok"; \
	else \
	  echo "WordNet data missing: run 'sudo apt-get install wordnet-base wordnet-sense-index' or '$(BIN)/python -m nltk.downloader wordnet'" >&2; exit 1; \
	fi

# Debian's Chromium and its driver for the browser tests of `hspnet annotate` (installed with
# apt-get when running as root on Debian/Ubuntu). Without them those tests fail and say so.
chromium:
	@if ! { command -v chromium && command -v chromedriver; } >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "Chromium: installing Debian's chromium and chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "Chromium: ok"; else \
	  echo "Chromium missing: run 'sudo apt-get install chromium chromium-driver' (the annotate browser tests fail without it)" >&2; fi

# unshare (util-linux) and ip (iproute2) for the Ray cluster test, which runs its two nodes in a
# network namespace with only loopback up (installed with apt-get when running as root on Debian).
netns-tools:
	@if ! { command -v unshare && command -v ip; } >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "netns tools: installing Debian's util-linux and iproute2"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends util-linux iproute2 >/dev/null; \
	fi
	@if command -v unshare >/dev/null && command -v ip >/dev/null; then echo "netns tools: ok"; else \
	  echo "unshare/ip missing: run 'sudo apt-get install util-linux iproute2' (the Ray cluster test fails without them)" >&2; fi

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_DIR)-summary.json .pytest_cache
