"""Text-to-image path on the bundled sample: LoRA training, generation and T2I-CompBench scoring.

    .venv/bin/python benchmarks/t2i_bench.py [--model DIR_OR_ID] [--epochs 3] [--images-per-prompt 4]

Without --model it writes a tiny random PixArt-alpha (CPU-friendly). Prints one table: wall time and rate of
each stage, and the work counted: texts and images encoded by training (once each, cached) against what
encoding every caption and image at every step would cost, images generated, images scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["a green bench and a blue bowl", "a dog on the left of a cat", "a man is riding a bicycle",
           "a round clock and a square table"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    from densecaption.captionsets.build import build_grid
    from densecaption.captionsets.compose import CaptionSetConfig
    from densecaption.data.dci import DCIDataset
    from densecaption.data.findings import SkipLog
    from densecaption.evaluation.compbench.run import run_compbench
    from densecaption.evaluation.compbench.scorers import CompbenchSettings
    from densecaption.models.open_clip_backend import init_random_open_clip
    from densecaption.models.tiny_blip import init_random_blip_vqa
    from densecaption.t2i.generate import GenerateConfig, GenerationSettings, generate_images
    from densecaption.t2i.pipelines import init_random_pipeline
    from densecaption.training.t2i import TrainT2IConfig, train_t2i

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(init_random_pipeline("pixart-alpha", tmp / "pixart"))
        build_grid(DCIDataset.open("sample"), None, CaptionSetConfig(precision=1.0, submasks=2), [1.0], [2],
                   tmp / "sets", ("folder", "jsonl"), [], SkipLog())
        log = []
        start = time.perf_counter()
        lora = train_t2i(TrainT2IConfig(captions=str(tmp / "sets" / "p1_k2"), model=model, out=str(tmp / "train"),
                                        epochs=args.epochs, batch_size=args.batch_size, validation_every=0),
                         log=log.append)
        train_s = time.perf_counter() - start
        first = json.loads((tmp / "train" / "log.jsonl").read_text().splitlines()[0])
        steps = sum(1 for r in log if "loss" in r)
        captions = first["captions"]
        rows.append(("train t2i", train_s, f"{captions * args.epochs / train_s:.1f} samples/s",
                     f"texts {first['encoded_texts']} + images {first['encoded_images']} encoded "
                     f"(per step: {captions * args.epochs} + {captions * args.epochs}); {steps} steps"))

        prompts_file = tmp / "prompts.txt"
        prompts_file.write_text("\n".join(PROMPTS) + "\n")
        start = time.perf_counter()
        summary = generate_images(GenerateConfig(
            model=model, out=str(tmp / "images"), prompts=PROMPTS, prompts_file=str(prompts_file), category="color",
            lora=str(lora), images_per_prompt=args.images_per_prompt, batch_size=args.images_per_prompt,
            settings=GenerationSettings(steps=args.steps, height=64, width=64)))
        gen_s = time.perf_counter() - start
        rows.append(("t2i generate", gen_s, f"{summary['generated'] / gen_s:.2f} images/s",
                     f"{summary['generated']} images, {args.steps} steps, 64 px, incl. pipeline load"))

        blip = init_random_blip_vqa(tmp / "blip")
        clip = init_random_open_clip("ViT-B-32", tmp / "clip", tiny=True)
        start = time.perf_counter()
        scored = run_compbench(tmp / "images", tmp / "scores", settings=CompbenchSettings(
            vqa_model=str(blip), clip_model=f"open_clip:local-dir:{clip}", detector="opencv-haar"))
        score_s = time.perf_counter() - start
        n = sum(s.count for s in scored)
        rows.append(("t2i compbench (color)", score_s, f"{n / score_s:.2f} images/s",
                     f"{n} images, BLIP-VQA, incl. model load"))

    weights = "random tiny PixArt-alpha" if args.model is None else args.model
    print(f"T2I path on the sample ({weights}; CPU unless a GPU is present)")
    print(f"{'stage':<24}{'wall s':>8}  {'rate':<20}work")
    for stage, wall, rate, work in rows:
        print(f"{stage:<24}{wall:>8.1f}  {rate:<20}{work}")


if __name__ == "__main__":
    main()
