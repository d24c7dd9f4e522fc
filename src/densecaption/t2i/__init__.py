"""Text-to-image models (PixArt-alpha, Stable Diffusion 2.1, SDXL) through diffusers: resolving and loading
pipelines, tiny random pipelines for tests, and LoRA adapters trained on caption sets (Captions4T2I)."""
