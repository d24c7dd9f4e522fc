"""T2I-CompBench (Huang et al., NeurIPS 2023) scoring of text-to-image generation runs, with upstream's formulas.

``prompts``: the official prompt files and categories (no model imports: ``t2i generate`` reads prompts with it).
``scoring``: the formulas as pure functions. ``models``: BLIP VQA, detectors and CLIP behind small contracts.
``scorers``: a category's formula over image batches. ``run``: generation runs in, result files out.
"""

from densecaption.evaluation.compbench.prompts import CATEGORIES, prompt_file, read_prompts

__all__ = ["CATEGORIES", "prompt_file", "read_prompts"]
