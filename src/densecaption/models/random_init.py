"""Every random-initialised model ``densecaption models init-random ARCH OUT --backend B`` can write.

Each entry is a writer ``(arch, out, *, seed, tiny) -> folder`` with metadata the CLI needs before anything
is imported: ``backend`` (the --backend that writes it), ``usage`` (how the product loads the folder, with
``{out}``), ``any_arch`` (the entry takes any open_clip architecture as ARCH; otherwise ARCH is its name),
``always_tiny`` and, where ``models.registry.load_model`` loads it, ``model_spec``. The diffusers entries are
the text-to-image families (``t2i.families``), one each, so a new family gets its random pipeline here too.
Writers import their libraries lazily; this module is light.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from densecaption.registry import Entry, Registry
from densecaption.t2i.families import FAMILIES

RANDOM_MODELS: Registry = Registry("random model")


@RANDOM_MODELS.register("clip", backend="open_clip", any_arch=True, always_tiny=False,
                        usage="open_clip:local-dir:{out}", model_spec="open_clip:local-dir:{out}",
                        summary="open_clip CLIP of any open_clip architecture (ARCH, e.g. ViT-B-32; --tiny shrinks "
                                "it)")
def write_open_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    from densecaption.models.open_clip_backend import init_random_open_clip

    return init_random_open_clip(arch, out, seed=seed, tiny=tiny)


@RANDOM_MODELS.register("hf-clip", backend="hf", any_arch=True, always_tiny=False, usage="hf:{out}",
                        model_spec="hf:{out}",
                        summary="transformers CLIPModel sized as an open_clip architecture (ARCH; --tiny shrinks "
                                "it), CLIP tokenizer and image processor")
def write_hf_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    from densecaption.models.hf_backend import init_random_hf_clip

    return init_random_hf_clip(arch, out, seed=seed, tiny=tiny)


@RANDOM_MODELS.register("long-clip", backend="hf", any_arch=False, always_tiny=False, usage="hf:{out}",
                        model_spec="hf:{out}",
                        summary="transformers CLIPModel with a 248-token text window (ViT-B-16 sized; --tiny "
                                "shrinks it), its position table stretched as Long-CLIP's (bench sdci-full)")
def write_long_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    from densecaption.models.long_clip import init_random_long_clip

    return init_random_long_clip(arch, out, seed=seed, tiny=tiny)


@RANDOM_MODELS.register("llava", backend="hf", any_arch=False, always_tiny=True,
                        usage="hf:{out} (captioning, quality precision --vlm)",
                        summary="tiny LLaVA vision-language model with a test tokenizer (caption, quality --vlm)")
def write_llava(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_vlm import init_random_llava

    return init_random_llava(out, seed=seed)


@RANDOM_MODELS.register("blip-vqa", backend="hf", any_arch=False, always_tiny=True,
                        usage="t2i compbench --vqa-model {out}",
                        summary="tiny BLIP VQA with a test tokenizer (T2I-CompBench attribute binding)")
def write_blip_vqa(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_blip import init_random_blip_vqa

    return init_random_blip_vqa(out, seed=seed)


@RANDOM_MODELS.register("owlvit", backend="hf", any_arch=False, always_tiny=True,
                        usage="t2i compbench --detector owlvit:{out}",
                        summary="tiny OWL-ViT zero-shot detector (T2I-CompBench spatial and numeracy)")
def write_owlvit(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_detector import init_random_owlvit

    return init_random_owlvit(out, seed=seed)


@RANDOM_MODELS.register("sam", backend="hf", any_arch=False, always_tiny=True,
                        usage="masks extract --sam hf:{out}",
                        summary="tiny Segment Anything (SamModel + SamProcessor, 64 px) for masks extract")
def write_sam(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_sam import init_random_sam

    return init_random_sam(out, seed=seed)


@RANDOM_MODELS.register("llama", backend="lm", any_arch=False, always_tiny=True, usage="lm:{out}",
                        model_spec="lm:{out}",
                        summary="tiny Llama causal LM with a word-level test tokenizer (the lm: language prior)")
def write_llama(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_lm import init_random_lm

    return init_random_lm(out, seed=seed)


@RANDOM_MODELS.register("blip-itm", backend="hf", any_arch=False, always_tiny=True, usage="hf:{out}",
                        model_spec="hf:{out}",
                        summary="tiny BLIP image-text matching model with a test tokenizer (hf:OUT scores with its "
                                "ITM head, hf:OUT#head=itc with its contrastive head)")
def write_blip_itm(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_scorers import init_random_blip_itm

    return init_random_blip_itm(out, seed=seed)


@RANDOM_MODELS.register("flava", backend="hf", any_arch=False, always_tiny=True, usage="hf:{out}",
                        model_spec="hf:{out}",
                        summary="tiny FLAVA with a test tokenizer (hf:OUT scores contrastively, hf:OUT#head=itm "
                                "with its image-text matching head)")
def write_flava(arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    from densecaption.models.tiny_scorers import init_random_flava

    return init_random_flava(out, seed=seed)


def write_pipeline(family: str, arch: str, out: Path, *, seed: int = 0, tiny: bool = True) -> Path:
    """Write the tiny random pipeline of a text-to-image family."""
    from densecaption.t2i.pipelines import init_random_pipeline

    return init_random_pipeline(family, out, seed=seed)


def _register_pipelines() -> None:
    for entry in FAMILIES.entries():
        RANDOM_MODELS.register(
            entry.name, partial(write_pipeline, entry.name), backend="diffusers", any_arch=False,
            always_tiny=True, kind=FAMILIES.kind, wrote="pipeline (diffusers, tiny)",
            usage="--model {out} (e.g. densecaption train t2i --model {out} ..., densecaption t2i generate "
                  "--model {out} ...)",
            summary=f"tiny {entry.summary.split(' (')[0]} pipeline with test tokenizers (train t2i, t2i generate)")


_register_pipelines()


def backends() -> tuple[str, ...]:
    """The --backend values, in registration order."""
    return tuple(dict.fromkeys(e.meta["backend"] for e in RANDOM_MODELS.entries()))


def find_random_model(arch: str, backend: str) -> Entry:
    """The entry ``init-random ARCH --backend BACKEND`` writes: the one named ARCH (any case), else the
    backend's any-architecture entry; a UserError with the closest name when there is neither."""
    entries = [e for e in RANDOM_MODELS.entries() if e.meta["backend"] == backend]
    named = next((e for e in entries if e.name == arch.lower()), None)
    found = named or next((e for e in entries if e.meta["any_arch"]), None)
    if found is not None:
        return found
    choices: Registry = Registry(entries[0].meta.get("kind", f"random {backend} model") if entries else "backend")
    for e in entries:
        choices.register(e.name, e.target, summary=e.summary)
    return choices.entry(arch.lower())


def arch_help() -> str:
    """What ARCH may be with each --backend, for the CLI's help."""
    parts = []
    for backend in backends():
        entries = [e for e in RANDOM_MODELS.entries() if e.meta["backend"] == backend]
        names = [e.name for e in entries if not e.meta["any_arch"]]
        any_arch = "any open_clip architecture, e.g. ViT-B-32" if any(e.meta["any_arch"] for e in entries) else ""
        parts.append(f"--backend {backend}: " + ", or ".join(filter(None, [any_arch, ", ".join(names)])))
    return "; ".join(parts)


def usage_examples() -> str:
    """How each backend's first entry is loaded (``open_clip:local-dir:OUT, hf:OUT, ...``), for the CLI's help."""
    first = {}
    for e in RANDOM_MODELS.entries():
        first.setdefault(e.meta["backend"], e.meta["usage"].split(" (")[0].format(out="OUT"))
    return ", ".join(first.values())
