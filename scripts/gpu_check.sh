#!/usr/bin/env bash
# One-call GPU check of edgeseg: builds the fused op's CUDA extension, runs the CUDA tests and the
# GPU benchmarks, and writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (a section for
# docs/gpu-validation.md). Everything runs from this repository: edgeseg need not be installed, and
# nothing is downloaded. docs/gpu-validation.md describes the steps and the Jetson use.
#
# Usage: bash scripts/gpu_check.sh OUTDIR [--dry-run] [--wheels DIR] [--budget SECONDS] [--trt-precision P]
#   PYTHON=python3   the interpreter whose torch is checked (on a Jetson venv: PYTHON=.venv/bin/python)
#   --dry-run        on a machine without a GPU (CI): run every step that needs none, skip the rest
#   --wheels DIR     wheels for missing pure-Python packages, installed offline into build/gpu_check/site
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "gpu_check: PYTHON=$PYTHON is not an executable on PATH" >&2
  exit 2
fi
# The repository's edgeseg comes first, ahead of any installed copy.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Spinning OpenMP workers starve each other on small shared CPUs (Makefile, docs/demo-model.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$PYTHON" "$repo/scripts/gpu_check.py" "$@"
