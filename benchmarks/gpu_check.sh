#!/usr/bin/env bash
# GPU speed check: `bench sdci` and `train clip` with a random ViT-B/32 on a synthetic release at SA-1B sizes.
#
#   bash benchmarks/gpu_check.sh [--small] [--gpu-decode] [--workers N]
#
# Full run (one H100/H200, under 5 minutes): 7,805 photos of 1500 x 2250 px with 10 masks each, the sDCI
# test split over all of them. Prints crops/s, texts/s and the decode share (the time the encoding loop waited
# for decoded crops) of the sDCI encoding, and training steps/s of `train clip` (bf16, crop cache).
# --small: 24 photos, a tiny model, on the CPU, to check the script itself works. --gpu-decode also times
# decoding the JPEGs on the GPU (torchvision.io.decode_jpeg on CUDA), crops cut and resized there.
# Numbers come from random weights: they measure speed only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
SMALL=0 GPU_DECODE=0 WORKERS=$(( $(nproc) > 12 ? 12 : $(nproc) ))
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --gpu-decode) GPU_DECODE=1 ;;
    --workers) WORKERS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "${GPU_CHECK_DIR:-}" ]; then WORK=$GPU_CHECK_DIR; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
export SMALL GPU_DECODE WORKERS WORK
echo "gpu_check: work folder $WORK, $WORKERS loader workers, small=$SMALL"

"$PY" - <<'EOF'
"""Write the synthetic release: a few distinct photos copied under every name (decoding costs the same),
one set of 10 mask boxes shared by all records (their PNGs encoded once)."""
import json, os, shutil, sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, ".")
from tests.conftest import mask_entry  # noqa: E402

small, work = os.environ["SMALL"] == "1", Path(os.environ["WORK"])
photos, (w, h) = (24, (2250, 1500)) if small else (7805, (2250, 1500))
inner = work / "release" / "densely_captioned_images"
if (inner / "splits.json").exists():
    sys.exit(0)
for sub in ("photos", "complete"):
    (inner / sub).mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(8):
    base = Image.fromarray(rng.integers(0, 256, (15, 22, 3), dtype=np.uint8)).resize((w, h))
    grain = rng.integers(-12, 13, (h, w, 1), dtype=np.int16)
    Image.fromarray(np.clip(np.asarray(base, np.int16) + grain, 0, 255).astype(np.uint8)).save(
        work / f"seed{i}.jpg", quality=90)
boxes = [(int(x), int(y), int(x + bw), int(y + bh)) for x, y, bw, bh in
         zip(rng.integers(0, w // 2, 10), rng.integers(0, h // 2, 10), rng.integers(64, w // 2, 10),
             rng.integers(64, h // 2, 10))]
masks = {str(i): mask_entry(i, -1, [], b, (w, h), f"thing {i}", f"a caption of region {i}")
         for i, b in enumerate(boxes)}
words = "red green blue small large wooden metal old new bright dark round square tall short".split()
files = []
for p in range(photos):
    name = f"sa_{p:07d}.jpg"
    shutil.copyfile(work / f"seed{p % 8}.jpg", inner / "photos" / name)
    text = lambda k, n: " ".join(words[(p * 7 + k * 3 + j) % len(words)] for j in range(n))  # noqa: E731
    keys = ["base"] + [f"m-{i}-sc" for i in range(10)]
    summaries = {k: [f"a photo of {text(i, 6 + i % 9)} things {p} {i}-{s}" for s in range(5)] for i, k in enumerate(keys)}
    negatives = {k: {kind: [f"{kind} {text(i + 1, 8)} {p} {i}"] for kind in ("basic", "layout", "swaps")}
                 for i, k in enumerate(keys)}
    scores = {k: {"sum": 30.0, "basic_0": 20.0, "layout_0": 21.0, "swaps_0": 22.0} for k in keys}
    doc = {"image": name, "short_caption": "a scene", "extra_caption": "", "width": w, "height": h,
           "mask_keys": list(masks), "mask_data": masks, "summaries": summaries, "negatives": negatives,
           "clip_scores": scores}
    file = f"sa_{p:07d}.json"
    (inner / "complete" / file).write_text(json.dumps(doc))
    files.append(file)
train = files[: max(8, len(files) // 16)]
(inner / "splits.json").write_text(json.dumps({"train": train, "valid": [], "test": files}))
print(f"release: {photos} photos of {w} x {h} px, 10 masks each, in {inner}")
EOF

if [ "$SMALL" = 1 ]; then TINY=--tiny DEVICE=cpu; else TINY= DEVICE=cuda; fi
[ -f "$WORK/model/open_clip_config.json" ] || .venv/bin/densecaption models init-random ViT-B-32 "$WORK/model" $TINY >/dev/null
export DEVICE

"$PY" - <<'EOF'
"""sDCI encoding split into its parts: texts, then crops (decode in loader workers, overlapped with encoding)."""
import os, time
from pathlib import Path

import torch

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.evaluation.features import FeatureStore
from densecaption.evaluation.sdci import SdciConfig, collect_items
from densecaption.models.registry import load_model

work, device, workers = Path(os.environ["WORK"]), os.environ["DEVICE"], int(os.environ["WORKERS"])
model = load_model(f"open_clip:local-dir:{work / 'model'}", device=device)
dataset = DCIDataset.open(str(work / "release"))
start = time.perf_counter()
runs = collect_items(dataset, "test", SdciConfig(), SkipLog())
crops = list(dict.fromkeys(it.crop for items in runs.values() for it in items))
texts = list(dict.fromkeys(t for items in runs.values() for it in items for t in (*it.positives, it.negative)))
read_s = time.perf_counter() - start
store = FeatureStore(model, num_workers=workers)
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
start = time.perf_counter()
store._encode_texts(texts, lambda n: None)
sync()
text_s = time.perf_counter() - start
start = time.perf_counter()
store._encode_crops(crops, lambda n: None)
sync()
crop_s = time.perf_counter() - start
print(f"bench sdci parts ({device}, {workers} workers): reading {read_s:.1f} s")
print(f"{'part':<10}{'items':>9}{'seconds':>10}{'items/s':>10}")
print(f"{'texts':<10}{len(texts):>9}{text_s:>10.1f}{len(texts) / text_s:>10.0f}")
print(f"{'crops':<10}{len(crops):>9}{crop_s:>10.1f}{len(crops) / crop_s:>10.0f}")
print(f"decode share of the crop pass: {store.decode_seconds / crop_s:.0%} (time waiting for decoded crops); "
      f"text tokens {model.encoded_text_tokens} for a floor of {model.text_token_floor}")
EOF

if [ "$GPU_DECODE" = 1 ]; then
"$PY" - <<'EOF'
"""JPEG decoding on the GPU: file bytes read on the CPU, decode_jpeg on CUDA in batches, crops resized there."""
import os, time
from pathlib import Path

import torch
from torchvision.io import decode_jpeg, read_file
from torchvision.transforms.v2 import functional as F

work = Path(os.environ["WORK"])
paths = sorted((work / "release" / "densely_captioned_images" / "photos").glob("*.jpg"))[:1024]
start = time.perf_counter()
done = 0
for i in range(0, len(paths), 32):
    data = [read_file(str(p)) for p in paths[i:i + 32]]
    images = decode_jpeg(data, device="cuda")
    crops = [F.center_crop(F.resize(im[:, :750, :1125], [224], antialias=True), [224]) for im in images]
    torch.stack(crops)
    done += len(images)
torch.cuda.synchronize()
seconds = time.perf_counter() - start
print(f"GPU JPEG decode: {done} photos in {seconds:.1f} s, {done / seconds:.0f} photos/s (one crop each)")
EOF
fi

if [ "$SMALL" = 1 ]; then PREC=no BATCH=8; else PREC=bf16 BATCH=256; fi
rm -rf "$WORK/train"
start=$(date +%s.%N)
.venv/bin/densecaption train clip --data "$WORK/release" --model "open_clip:local-dir:$WORK/model" \
  --out "$WORK/train" --epochs 1 --batch-size $BATCH --valid-split '' --workers "$WORKERS" \
  --mixed-precision $PREC --crop-cache "$WORK/crops" >/dev/null
end=$(date +%s.%N)
"$PY" - "$WORK/train/log.jsonl" "$start" "$end" <<'EOF'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
steps = max((r.get("step", 0) for r in lines), default=0)
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"train clip: {steps} steps in {wall:.1f} s wall (model load and crop-cache fill included): "
      f"{steps / wall:.2f} steps/s")
EOF
