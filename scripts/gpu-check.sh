#!/usr/bin/env bash
# On a GPU host with CUDA PyTorch and transformers (no vLLM, no network, no registry), from the
# repository root: checks Signet's watermark processor on the GPU against the CPU and times it
# (scripts/gpu_check.py says what). Under 10 minutes on one GPU. Record the figures in
# docs/BENCHMARKS.md. Writes gpu-check.json (or $OUT/gpu-check.json when OUT is set).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu-check.json"
exec timeout 600 python3 scripts/gpu_check.py --out "$out" "$@"
