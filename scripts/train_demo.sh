#!/usr/bin/env bash
# Train the shipped demo model, edgeseg/assets/demo_dbmsnet.pt (docs/demo-model.md has the results).
#
# A half-width ResNet-18 DBMSNet (3.6 M parameters, ~14 MB bundle) trained from scratch on the
# synthetic shapes set (7 classes, 128x128 images generated on the fly) on a 2-core CPU.
# Choices for a short CPU budget: 96x96 random crops (evaluation, and the card's input size, use
# the full 128x128 images: --eval-size 128), the auxiliary branch losses on, and a lighter
# augmentation than the paper's (no rotation, scale 0.75-1.25, colour jitter 0.2): the synthetic
# classes are defined by hue and shape, and a short schedule has no time to learn invariances the
# validation set never asks for.
#
# Usage: scripts/train_demo.sh [extra edgeseg train options, e.g. --resume]
#   OUT=runs/demo        run folder (checkpoints, log.jsonl, summary.json)
#   BUNDLE=edgeseg/assets/demo_dbmsnet.pt   where the final bundle is written
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo}
BUNDLE=${BUNDLE:-edgeseg/assets/demo_dbmsnet.pt}
EDGESEG=${EDGESEG:-.venv/bin/edgeseg}

exec "$EDGESEG" train \
  --model dbmsnet_r18_os16 --set width=0.5 --set aux_loss=true \
  --data synthetic --val-data synthetic::val \
  --crop 96 --eval-size 128 --batch-size 8 --iters 1400 --lr 0.05 \
  --aug "scales=[0.75,1.0,1.25]" --aug max_rotation=0 \
  --aug brightness=0.2 --aug contrast=0.2 --aug saturation=0.2 \
  --eval-every 350 --checkpoint-every 100 --log-every 10 \
  --workers 1 --threads 2 --seed 0 \
  --out "$OUT" --export-bundle "$BUNDLE" "$@"
