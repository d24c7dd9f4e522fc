"""Compositional benchmarks: work and wall time of the encode-once scoring on scaled mini-sets.

    .venv/bin/python benchmarks/compositional_bench.py [--photos 40] [--items 2000] [--arch ViT-B-32] [--tiny]

Builds an ARO-style VG-Relation file (``--items`` crops of ``--photos`` photos, two captions each, many items
sharing a crop) and a SugarCrepe folder (``--items`` per file over the same photos) on a temporary disk,
writes a random open_clip model, and runs both. Counts the crops and texts the encoders saw against what
encoding each item's image and texts per item would send (the naive count).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.compositional_minisets import SUGARCREPE_TASKS, photo  # noqa: E402
from densecaption.evaluation.run import evaluate  # noqa: E402
from densecaption.models.registry import load_model  # noqa: E402

WORDS = ("red", "green", "blue", "box", "cup", "dog", "on", "under", "near", "big", "small")


def build(root: Path, photos: int, items: int, seed: int = 0) -> tuple[str, str]:
    rnd = random.Random(seed)
    names = [f"{i:012d}.jpg" for i in range(photos)]
    for name in names:
        photo(root / "aro" / "images" / name, rnd.choice(["red", "blue"]), rnd.choice(["green", "grey"]), size=64)
        photo(root / "sc" / "val2017" / name, rnd.choice(["red", "blue"]), size=64)
    text = lambda: " ".join(rnd.choice(WORDS) for _ in range(6))  # noqa: E731
    vg = [{"image_path": rnd.choice(names), "bbox_x": rnd.choice([0, 64]), "bbox_y": 0, "bbox_w": 64, "bbox_h": 64,
           "relation_name": rnd.choice(["on", "under", "holding"]), "false_caption": text(), "true_caption": text()}
          for _ in range(items)]
    (root / "aro" / "visual_genome_relation.json").write_text(json.dumps(vg))
    for task in SUGARCREPE_TASKS:
        entries = {str(i): {"filename": rnd.choice(names), "caption": text(), "negative_caption": text()}
                   for i in range(items // len(SUGARCREPE_TASKS))}
        (root / "sc" / f"{task}.json").write_text(json.dumps(entries))
    return str(root / "aro"), str(root / "sc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--tiny", action="store_true", help="shrink the model (a quick run)")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    from densecaption.evaluation.benchmark import RunContext
    from densecaption.models.open_clip_backend import init_random_open_clip

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        aro, sc = build(Path(tmp), args.photos, args.items)
        folder = init_random_open_clip(args.arch, Path(tmp) / "clip", tiny=args.tiny)
        model = load_model(f"open_clip:local-dir:{folder}", device="cpu")
        for task, data, texts_per_item in (("aro", aro, 2), ("sugarcrepe", sc, 2)):
            start = time.perf_counter()
            result = evaluate(task, model, data, context=RunContext(workers=args.workers))
            seconds = time.perf_counter() - start
            n = sum(v for k, v in result.counts.items() if k != "mean" and k in ("vg_relation",) + SUGARCREPE_TASKS)
            rows.append((task, n, result.extra["encoded_images"], n, result.extra["encoded_texts"],
                         n * texts_per_item, seconds))
    print(f"command: .venv/bin/python benchmarks/compositional_bench.py --photos {args.photos} --items {args.items} "
          f"--arch {args.arch}{' --tiny' if args.tiny else ''} --workers {args.workers}")
    print("| task | items | crops encoded | naive crops | texts encoded | naive texts | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task, n, ci, cn, ti, tn, s in rows:
        print(f"| {task} | {n} | {ci} | {cn} | {ti} | {tn} | {s:.2f} |")


if __name__ == "__main__":
    main()
