"""Speed of the synthetic-caption bridge and the seeded quality sample on synthetic caption files.

    .venv/bin/python benchmarks/bridge_bench.py [--captions 5000] [--long-share 0.2]

Writes N `caption`-style lines over N tiny images (a share of them over 77 CLIP tokens), then times
`compose from-captions` (read, count CLIP tokens once per caption, link images, write the set) with
--over-limit keep and drop, and `sample_records` picking 1,000 of them. Counts the token counts done.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.captionsets.bridge import BridgeConfig, bridge  # noqa: E402
from densecaption.captionsets.tokens import TextTokenizer  # noqa: E402
from densecaption.quality.captions import CaptionRecord, sample_records  # noqa: E402
from densecaption.tokens import ClipTokenCounter  # noqa: E402


def make_inputs(root: Path, n: int, long_share: float) -> tuple[Path, Path]:
    from PIL import Image

    images = root / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), "gray").save(images / "000000.jpg")
    for i in range(1, n):  # hard links: N image files without N encodes
        (images / f"{i:06d}.jpg").hardlink_to(images / "000000.jpg")
    every = max(1, round(1 / long_share)) if long_share else 0
    lines = [{"file": f"{i:06d}.jpg", "model": "bench", "prompt": "Describe the image concisely",
              "weights": "pretrained",
              "caption": (f"photo {i} " + "a red cube on a table " * 20) if every and i % every == 0
              else f"photo {i} of a red cube on a wooden table"} for i in range(n)]
    captions = root / "captions.jsonl"
    captions.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return captions, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--long-share", type=float, default=0.2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        captions, images = make_inputs(root, args.captions, args.long_share)
        for policy in ("keep", "drop"):
            clip = ClipTokenCounter()
            calls = {"n": 0}

            def counted(text: str) -> int:
                calls["n"] += 1
                return clip(text)

            counter = TextTokenizer(name=clip.name, spec="clip", limit=77, count=counted)  # caches the counts
            start = time.perf_counter()
            manifest = bridge(captions, images, root / f"set-{policy}", tokenizers=[counter],
                              config=BridgeConfig(over_limit=policy))
            elapsed = time.perf_counter() - start
            rows.append((f"from-captions --over-limit {policy}", args.captions, elapsed,
                         f"{manifest['over_limit']['over']} over 77, {manifest['counts']['captions']} kept, "
                         f"{calls['n']} token counts (1 of them the empty text)"))
        records = [CaptionRecord(id=f"{i:06d}.jpg", text="x") for i in range(args.captions)]
        start = time.perf_counter()
        chosen, _ = sample_records(records, 1000, seed=0)
        rows.append(("sample_records 1000", args.captions, time.perf_counter() - start, f"{len(chosen)} picked"))
    print(f"command: .venv/bin/python benchmarks/bridge_bench.py --captions {args.captions} "
          f"--long-share {args.long_share}")
    print(f"| {'what':36} | captions | seconds | captions/s | work |")
    print("| --- | ---: | ---: | ---: | --- |")
    for what, n, seconds, work in rows:
        print(f"| {what:36} | {n} | {seconds:.2f} | {n / seconds:,.0f} | {work} |")


if __name__ == "__main__":
    main()
