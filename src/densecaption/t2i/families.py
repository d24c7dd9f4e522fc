"""The text-to-image model families (PixArt-alpha, SD 2.1, SDXL): one registry entry per family holding
everything that differs between them, for loading and generating (``t2i.pipelines``) and for LoRA training
(``training.t2i``), so the two cannot drift apart.

A family is its pipeline facts (default checkpoint, diffusers pipeline class, denoiser, text window, LoRA
targets and format, guidance) and its training pieces (``FamilyTraining``: how texts are encoded with the
pipeline's own ``encode_prompt``, which components are text encoders, the denoiser's forward call). Nothing
heavy is imported here: the tiny random pipeline builders are lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from densecaption.registry import Registry, import_target


@dataclass(frozen=True)
class StepContext:
    """What a denoiser call needs besides the batch."""

    resolution: int
    additional_conditions: bool


@dataclass(frozen=True)
class FamilyTraining:
    """What training needs of a family: how texts are encoded (returning pipeline ``__call__`` keyword
    arguments, batch first), which components are text encoders, and the denoiser's forward call."""

    text_encoders: tuple[str, ...]
    encode: Callable[..., dict]
    forward: Callable[..., Any]
    call_kwargs: tuple[tuple[str, Any], ...] = ()
    """Pipeline call arguments needed with precomputed embeddings (PixArt's default negative prompt is "")."""


@dataclass(frozen=True)
class T2IFamily:
    """One model family: its default checkpoint, pipeline class, denoiser, what training needs to know, and how
    its tiny random pipeline is built."""

    name: str
    hub_id: str
    pipeline_class: str
    denoiser: str
    max_text_length: int
    resolution: int
    lora_targets: tuple[str, ...]
    training: FamilyTraining
    random_pipeline: str
    """``"module:attr"`` of ``build(out, seed)`` returning the tiny random pipeline (``build_random``)."""
    lora_format: str = "diffusers"
    """``diffusers`` (pipeline ``load_lora_weights``) or ``peft`` (adapter injected into the denoiser)."""
    lowercase_prompts: bool = False
    """The pipeline lowercases prompts before tokenising (PixArt's ``_text_preprocessing``)."""
    longer_lengths: tuple[int, ...] = ()
    """Longer text windows the text encoder can take: truncation is also reported for these."""
    guidance_scale: float = 7.5
    exact_size_kwargs: tuple[tuple[str, Any], ...] = ()
    """Pipeline call arguments that make it generate exactly the height and width asked for."""
    random_tokenizer: str = "CLIP BPE from open_clip's vocabulary (the real CLIP ids)"
    """What the tiny random pipeline's tokenizer is, for its marker."""
    description: str = ""

    def build_random(self, out: Path, seed: int) -> Any:
        """The tiny random pipeline of this family (a diffusers pipeline object, not yet saved)."""
        return import_target(self.random_pipeline)(out, seed)


# ------------------------------------------------------------------------------------ training pieces

def _encode_pixart(pipe, texts: list[str], length: int, device, guidance: bool) -> dict:
    embeds, mask, neg, neg_mask = pipe.encode_prompt(texts, do_classifier_free_guidance=guidance, negative_prompt="",
                                                     device=device, clean_caption=False, max_sequence_length=length)
    out = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
    if guidance:
        out.update(negative_prompt_embeds=neg, negative_prompt_attention_mask=neg_mask)
    return out


def _forward_pixart(denoiser, noisy, timesteps, batch: dict, step: StepContext):
    added = {"resolution": None, "aspect_ratio": None}
    if step.additional_conditions:  # PixArt's 1024 px models condition on the image size and aspect ratio
        n = noisy.shape[0]
        added = {"resolution": noisy.new_tensor([[step.resolution, step.resolution]]).repeat(n, 1),
                 "aspect_ratio": noisy.new_tensor([[1.0]]).repeat(n, 1)}
    return denoiser(noisy, encoder_hidden_states=batch["prompt_embeds"],
                    encoder_attention_mask=batch["prompt_attention_mask"], timestep=timesteps,
                    added_cond_kwargs=added, return_dict=False)[0]


def _encode_sd(pipe, texts: list[str], length: int, device, guidance: bool) -> dict:
    embeds, neg = pipe.encode_prompt(texts, device, 1, guidance)
    return {"prompt_embeds": embeds, **({"negative_prompt_embeds": neg} if guidance else {})}


def _forward_sd(denoiser, noisy, timesteps, batch: dict, step: StepContext):
    return denoiser(noisy, timesteps, encoder_hidden_states=batch["prompt_embeds"], return_dict=False)[0]


def _encode_sdxl(pipe, texts: list[str], length: int, device, guidance: bool) -> dict:
    embeds, neg, pooled, neg_pooled = pipe.encode_prompt(texts, device=device, num_images_per_prompt=1,
                                                         do_classifier_free_guidance=guidance)
    out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    if guidance:
        out.update(negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled)
    return out


def _forward_sdxl(denoiser, noisy, timesteps, batch: dict, step: StepContext):
    import torch

    # SDXL's micro-conditioning: original size, crop top-left, target size (as diffusers' SDXL scripts)
    target = noisy.new_tensor([[step.resolution, step.resolution]]).repeat(noisy.shape[0], 1)
    time_ids = torch.cat([batch["original_size"].to(noisy), batch["crop_top_left"].to(noisy), target], dim=1)
    added = {"text_embeds": batch["pooled_prompt_embeds"], "time_ids": time_ids}
    return denoiser(noisy, timesteps, encoder_hidden_states=batch["prompt_embeds"], added_cond_kwargs=added,
                    return_dict=False)[0]


# ---------------------------------------------------------------------------------------------- families

FAMILIES: Registry[T2IFamily] = Registry("text-to-image family")
_SD_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
_BUILDERS = "densecaption.t2i.pipelines"


def _family(family: T2IFamily) -> None:
    """Register ``family`` with its plain facts as metadata (what ``densecaption ls families --json`` shows)."""
    FAMILIES.register(family.name, family, summary=family.description, hub_id=family.hub_id,
                      pipeline_class=family.pipeline_class, denoiser=family.denoiser,
                      max_text_length=family.max_text_length, resolution=family.resolution,
                      guidance_scale=family.guidance_scale, lora_format=family.lora_format,
                      lora_targets=family.lora_targets)


_family(T2IFamily(
    name="pixart-alpha", hub_id="PixArt-alpha/PixArt-XL-2-512x512", pipeline_class="PixArtAlphaPipeline",
    denoiser="transformer", max_text_length=120, resolution=512,
    lora_targets=("to_k", "to_q", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "proj",
                  "linear", "linear_1", "linear_2"),
    training=FamilyTraining(("text_encoder",), _encode_pixart, _forward_pixart,
                            call_kwargs=(("negative_prompt", None),)),
    random_pipeline=f"{_BUILDERS}:_random_pixart", lora_format="peft", lowercase_prompts=True,
    longer_lengths=(256, 300, 512), guidance_scale=4.5, exact_size_kwargs=(("use_resolution_binning", False),),
    random_tokenizer="sentencepiece unigram trained on the bundled sample's texts (a test tokenizer, not T5's)",
    description="PixArt-alpha (T5-XXL text encoder, 120 tokens), as in Captions4T2I"))
_family(T2IFamily(
    name="sd21", hub_id="stabilityai/stable-diffusion-2-1", pipeline_class="StableDiffusionPipeline",
    denoiser="unet", max_text_length=77, resolution=768, lora_targets=_SD_TARGETS,
    training=FamilyTraining(("text_encoder",), _encode_sd, _forward_sd),
    random_pipeline=f"{_BUILDERS}:_random_sd21", guidance_scale=7.5,
    description="Stable Diffusion 2.1 (OpenCLIP-H text encoder, 77 tokens)"))
_family(T2IFamily(
    name="sdxl", hub_id="stabilityai/stable-diffusion-xl-base-1.0", pipeline_class="StableDiffusionXLPipeline",
    denoiser="unet", max_text_length=77, resolution=1024, lora_targets=_SD_TARGETS,
    training=FamilyTraining(("text_encoder", "text_encoder_2"), _encode_sdxl, _forward_sdxl),
    random_pipeline=f"{_BUILDERS}:_random_sdxl", guidance_scale=5.0,
    description="SDXL base 1.0 (two CLIP text encoders, 77 tokens)"))


def families() -> tuple[T2IFamily, ...]:
    """Every registered family, in registration order."""
    return tuple(FAMILIES.get(name) for name in FAMILIES)


def family_of_class(class_name: str) -> T2IFamily | None:
    """The family whose diffusers pipeline class is ``class_name`` (from a ``model_index.json``)."""
    entry = FAMILIES.find(lambda e: e.meta["pipeline_class"] == class_name)
    return FAMILIES.get(entry.name) if entry else None
