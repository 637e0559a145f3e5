#!/usr/bin/env bash
# Train the shipped demo model, edgeseg/assets/demo_dbmsnet.pt (docs/demo-model.md has the results).
#
# A half-width ResNet-18 DBMSNet (3.6 M parameters, ~14 MB bundle) trained from scratch on the
# synthetic shapes set (7 classes, 128x128 images generated on the fly) on a 2-core CPU.
# Choices for a short CPU budget: 96x96 random crops (evaluation, and the card's input size, use
# the full 128x128 images: --eval-size 128), the auxiliary branch losses on, and only random crops
# and flips instead of the paper's scale / rotation / colour-jitter recipe: the generator already
# varies object size, colour and shading, and a short schedule has no time to learn invariances
# the validation set never asks for.
#
# Usage: scripts/train_demo.sh [extra edgeseg train options, e.g. --resume]
#   OUT=runs/demo        run folder (checkpoints, log.jsonl, summary.json)
#   BUNDLE=edgeseg/assets/demo_dbmsnet.pt   where the final bundle is written
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenMP threads that wait for each other spin by default. On a CPU shared with other jobs a
# spinning thread burns the time slices its preempted partner needs: measured here, a training
# step took 6 CPU-s / 16-23 s wall with spinning and 0.4 CPU-s / 0.6-0.8 s wall with PASSIVE.
# It must be set before torch is imported.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
OUT=${OUT:-runs/demo}
BUNDLE=${BUNDLE:-edgeseg/assets/demo_dbmsnet.pt}
EDGESEG=${EDGESEG:-.venv/bin/edgeseg}

exec "$EDGESEG" train \
  --model dbmsnet_r18_os16 --set width=0.5 --set aux_loss=true \
  --data synthetic --val-data synthetic::val \
  --crop 96 --eval-size 128 --batch-size 8 --iters 2600 --lr 0.05 \
  --aug "scales=[1.0]" --aug max_rotation=0 \
  --aug brightness=0 --aug contrast=0 --aug saturation=0 \
  --eval-every 650 --checkpoint-every 100 --log-every 10 \
  --workers 1 --threads 2 --seed 0 \
  --out "$OUT" --export-bundle "$BUNDLE" "$@"
