#!/usr/bin/env bash
# The README's demo: the whole pipeline, as far as it is built, on the bundled sample, offline.
# Writes everything under demo-out/. Numbers from random weights are labelled so.
set -euo pipefail
cd "$(dirname "$0")/.."
DC=.venv/bin/densecaption
OUT=demo-out
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Validate the bundled sample (official DCI layout)"
$DC data validate sample

step "2. Dataset statistics (the DCI paper's Table 1 columns, CLIP tokens)"
$DC data stats sample
$DC data stats sample --json > "$OUT/stats.json"

step "3. Draw annotations: photo, mask outlines, labels, caption"
$DC data show sample retina --out "$OUT/show-retina.png"
$DC data show sample china --out "$OUT/show-china.png"

step "4. Copy the sample out, then recompute its clip_scores with a random tiny open_clip model"
$DC data sample "$OUT/sample" --overwrite
[ -f "$OUT/tiny-clip/open_clip_config.json" ] || $DC models init-random ViT-B-32 "$OUT/tiny-clip" --tiny
rm -rf "$OUT/rescored"
$DC data clip-scores --data "$OUT/sample" --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/rescored"
$DC data validate "$OUT/rescored"

printf '\nDemo outputs are in %s/\n' "$OUT"
