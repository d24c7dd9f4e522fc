"""Text-to-image pipelines: resolving a model spec to a family (``t2i.families``), loading a pipeline
(optionally with a LoRA written by ``train t2i``) and tiny random pipelines for offline tests.

A model spec is a family name (its default hub checkpoint), a hub id or a local diffusers folder
(``save_pretrained`` layout). The family of a folder or hub id comes from its ``model_index.json``.

LoRA adapters are stored in the format the family's ecosystem loads: Stable Diffusion and SDXL adapters in
diffusers' format (``pytorch_lora_weights.safetensors``, loadable with ``pipe.load_lora_weights``);
PixArt-alpha has no diffusers LoRA loader, so its adapter is peft's (``adapter_config.json`` +
``adapter_model.safetensors``) injected into the transformer. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from densecaption.errors import UserError
from densecaption.models.weights import resolve_source, write_marker
from densecaption.t2i.families import FAMILIES, T2IFamily, families, family_of_class

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

LORA_RECORD = "densecaption_lora.json"
LORA_KIND = "densecaption.t2i-lora"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
DIFFUSERS_LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
ADAPTER_NAME = "densecaption"


@dataclass
class ResolvedModel:
    """A model spec resolved to a family, a loadable source and the kind of weights it holds."""

    spec: str
    family: T2IFamily
    source: str
    weights: str


@contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence diffusers' and transformers' progress bars and warnings (e.g. the truncation warning of
    ``encode_prompt``, which training counts and reports itself) for the block's duration."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = dlog.get_verbosity(), tlog.get_verbosity()
    bars = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        if bars[0]:
            dlog.enable_progress_bar()
        if bars[1]:
            tlog.enable_progress_bar()


# ---------------------------------------------------------------------------------------------- tiny models

def _tiny_vae():
    """A 4-level VAE (latents 8x smaller, as the real ones) with a few channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16),
                         layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64)


def _tiny_clip_text(projection: bool):
    """A 2-layer CLIP text tower over the real CLIP BPE vocabulary (49408 tokens, 77 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                            hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _clip_tokenizer():
    """transformers' CLIPTokenizer built from open_clip's shipped BPE vocabulary (the real CLIP ids)."""
    from densecaption.models.hf_backend import clip_processor

    with tempfile.TemporaryDirectory() as tmp:
        return clip_processor(Path(tmp), context_length=77).tokenizer


def _test_sentences() -> list[str]:
    """Sentences for the test T5 tokenizer: every text of the bundled sample, split at sentence ends."""
    from densecaption.data.sample import sample_root

    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if " " in value:
                texts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for file in sorted((sample_root() / "complete").glob("*.json")):
        walk(json.loads(file.read_text(encoding="utf-8")))
    sentences = [s.strip().lower() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    return sorted(dict.fromkeys(sentences))


def train_test_t5_tokenizer(vocab_size: int = 1000):
    """A small T5 tokenizer: a sentencepiece unigram model trained here on the bundled sample's texts.

    Real PixArt checkpoints ship T5's tokenizer; it is not available offline, so tiny test pipelines carry
    this one (their marker says ``test_tokenizer: true``). Ids follow T5: pad 0, eos 1, unk 2."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_test_sentences()), model_writer=model,
                                   vocab_size=vocab_size, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _random_pixart(out: Path, seed: int):
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = train_test_t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                           num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                                           feed_forward_proj="gated-gelu", is_encoder_decoder=False,
                                           pad_token_id=0, eos_token_id=1))
    # sample_size 32 is PixArt's 256 px size class (the pipeline's aspect-ratio bins need 32, 64 or 128)
    transformer = PixArtTransformer2DModel(sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=2, caption_channels=32, in_channels=4,
                                           out_channels=8, cross_attention_dim=16, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False,
                                           norm_eps=1e-6)
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                            prediction_type="epsilon", solver_order=2)
    return PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_tiny_vae(),
                               transformer=transformer, scheduler=scheduler)


def _random_sd21(out: Path, seed: int):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8)
    # SD 2.1 (768) predicts v: the tiny one does too, so training's v-prediction path is exercised
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    return StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=_tiny_clip_text(False), tokenizer=_clip_tokenizer(),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)


def _random_sdxl(out: Path, seed: int):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
                                norm_num_groups=8)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    tokenizer = _clip_tokenizer()
    return StableDiffusionXLPipeline(vae=_tiny_vae(), text_encoder=_tiny_clip_text(False),
                                     text_encoder_2=_tiny_clip_text(True), tokenizer=tokenizer, tokenizer_2=tokenizer,
                                     unet=unet, scheduler=scheduler, image_encoder=None, feature_extractor=None)


# --------------------------------------------------------------------------------------------- resolving

def _family_from_index(index: dict, where: str, spec: str) -> T2IFamily:
    name = index.get("_class_name")
    family = family_of_class(str(name))
    if family is None:
        known = ", ".join(f"{f.pipeline_class} ({f.name})" for f in families())
        raise UserError(f"{spec}: {where} names pipeline class {name!r}; supported: {known}")
    return family


def resolve_model(spec: str) -> ResolvedModel:
    """A family name (its default hub checkpoint), a local pipeline folder or a hub id -> ``ResolvedModel``."""
    if spec in FAMILIES:
        family = FAMILIES.get(spec)
        return ResolvedModel(spec=spec, family=family, source=family.hub_id, weights="pretrained")
    expected = f"a model family ({', '.join(FAMILIES)}), an existing pipeline folder or a hub id (org/name)"
    source = resolve_source(spec, expected=expected, org_required=True)
    if source.is_local:
        index_file = source.folder / "model_index.json"
        if not index_file.is_file():
            raise UserError(f"{spec}: not a diffusers pipeline folder (no model_index.json)")
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{index_file}: not valid JSON ({e})") from None
        family = _family_from_index(index, str(index_file), spec)
        return ResolvedModel(spec=spec, family=family, source=source.path_or_id, weights=source.weights)
    for family in families():
        if spec == family.hub_id:
            return ResolvedModel(spec=spec, family=family, source=spec, weights="pretrained")
    try:
        from huggingface_hub import hf_hub_download

        index_file = Path(hf_hub_download(spec, "model_index.json"))
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001  hub errors are many (offline, missing repo, gated, bad JSON)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{spec}: cannot read the hub model's model_index.json ({first}); give a family name "
                        f"({', '.join(FAMILIES)}) or a local pipeline folder") from None
    family = _family_from_index(index, f"{spec}/model_index.json", spec)
    return ResolvedModel(spec=spec, family=family, source=spec, weights="pretrained")


# ----------------------------------------------------------------------------------------------- loading

def load_pipeline(model: str | ResolvedModel, *, lora: str | Path | None = None, device: str = "cpu",
                  dtype: torch.dtype | None = None) -> tuple[DiffusionPipeline, ResolvedModel]:
    """Load the pipeline of ``model`` onto ``device`` in ``dtype`` (default float32), with ``lora`` (a folder
    written by ``train t2i``) in its denoiser. UserError when it cannot be loaded or the LoRA does not fit."""
    import diffusers
    import torch

    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    cls = getattr(diffusers, resolved.family.pipeline_class)
    try:
        pipe = cls.from_pretrained(resolved.source, dtype=dtype or torch.float32)
    except Exception as e:  # noqa: BLE001  diffusers raises OSError, ValueError, EnvironmentError... for a bad source
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{resolved.spec}: cannot load a {cls.__name__} from {resolved.source} ({first})") from None
    pipe.to(device)
    if lora is not None:
        apply_lora(pipe, resolved, lora)
    return pipe, resolved


def read_lora_record(folder: str | Path) -> dict | None:
    """The ``densecaption_lora.json`` of a LoRA folder, or None when it has none."""
    path = Path(folder) / LORA_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or record.get("kind") != LORA_KIND:
        raise UserError(f"{path}: not a densecaption LoRA record (kind {LORA_KIND!r} expected)")
    return record


def apply_lora(pipe: DiffusionPipeline, resolved: ResolvedModel, lora: str | Path) -> None:
    """Load a LoRA folder into the pipeline's denoiser, in the family's format."""
    folder = Path(lora).expanduser()
    if not folder.is_dir():
        raise UserError(f"--lora {lora}: not a folder")
    record = read_lora_record(folder)
    if record is not None and record.get("family") != resolved.family.name:
        raise UserError(f"--lora {lora}: trained for the {record.get('family')!r} family (model "
                        f"{record.get('model')!r}), not for {resolved.spec} ({resolved.family.name})")
    LORA_FORMATS[resolved.family.lora_format].load(pipe, resolved.family, folder)


# ----------------------------------------------------------------------------------------- LoRA formats

@dataclass(frozen=True)
class LoraFormat:
    """How a family's adapter is written (from a denoiser with peft LoRA layers) and read back."""

    name: str
    weights_file: str
    save: Callable[[T2IFamily, Any, Any, Path], None]
    load: Callable[[Any, T2IFamily, Path], None]


def lora_state_dict(denoiser) -> dict:
    """The LoRA tensors of a denoiser with peft layers (keys without the adapter name)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(denoiser)


def _save_diffusers(family: T2IFamily, denoiser, lora_config, folder: Path) -> None:
    import diffusers
    from diffusers.utils import convert_state_dict_to_diffusers

    state = convert_state_dict_to_diffusers(lora_state_dict(denoiser))
    metadata = {k: (sorted(v) if isinstance(v, set) else v) for k, v in lora_config.to_dict().items()}
    getattr(diffusers, family.pipeline_class).save_lora_weights(
        str(folder), unet_lora_layers=state, weight_name=DIFFUSERS_LORA_WEIGHTS, unet_lora_adapter_metadata=metadata)


def _load_diffusers(pipe, family: T2IFamily, folder: Path) -> None:
    if not (folder / DIFFUSERS_LORA_WEIGHTS).is_file():
        raise UserError(f"--lora {folder}: no {DIFFUSERS_LORA_WEIGHTS} (a {family.name} LoRA in diffusers' format)")
    try:
        with quiet_hf():  # no "no LoRA keys for the text encoder" notes: these adapters are the denoiser's only
            pipe.load_lora_weights(str(folder), weight_name=DIFFUSERS_LORA_WEIGHTS, adapter_name=ADAPTER_NAME)
    except (ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--lora {folder}: does not fit this {family.name} model ({first})") from None


def _save_peft(family: T2IFamily, denoiser, lora_config, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(denoiser).items()}
    save_file(state, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    lora_config.save_pretrained(str(folder))


def inject_lora(denoiser, lora_config) -> None:
    """Add peft LoRA layers (adapter ``default``) to a denoiser in place."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config, denoiser, adapter_name="default")


def _load_peft(pipe, family: T2IFamily, folder: Path) -> None:
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not (folder / PEFT_WEIGHTS).is_file() or not (folder / PEFT_CONFIG).is_file():
        raise UserError(f"--lora {folder}: no {PEFT_CONFIG} + {PEFT_WEIGHTS} (a {family.name} LoRA in peft's format)")
    denoiser = getattr(pipe, family.denoiser)
    config = LoraConfig.from_pretrained(str(folder))
    try:
        inject_lora(denoiser, config)
        result = set_peft_model_state_dict(denoiser, load_file(str(folder / PEFT_WEIGHTS)))
    except (ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--lora {folder}: does not fit this {family.name} model ({first})") from None
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise UserError(f"--lora {folder}: {len(unexpected)} LoRA tensors have no place in this model "
                        f"(e.g. {unexpected[0]})")


LORA_FORMATS: dict[str, LoraFormat] = {
    "diffusers": LoraFormat("diffusers", DIFFUSERS_LORA_WEIGHTS, _save_diffusers, _load_diffusers),
    "peft": LoraFormat("peft", PEFT_WEIGHTS, _save_peft, _load_peft),
}


def save_lora(family: T2IFamily, denoiser, lora_config, folder: str | Path) -> Path:
    """Write the LoRA layers of ``denoiser`` into ``folder`` in the family's format (no record)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    LORA_FORMATS[family.lora_format].save(family, denoiser, lora_config, folder)
    return folder


# ------------------------------------------------------------------------------------------ random folders

def init_random_pipeline(family: str, out: Path, *, seed: int = 0) -> Path:
    """Write a tiny random pipeline of ``family`` to ``out`` (``save_pretrained`` layout, locally built test
    tokenizers) with the marker that labels it ``weights: random``; returns the folder.

    Sizes: a 4-level VAE (8x downsampling), 2-layer text encoders and a denoiser of a few channels. SD and
    SDXL generate 64 px images by default; PixArt's size class is 256 px (its pipeline bins sizes to
    256/512/1024 classes), and generates any size with ``use_resolution_binning=False``."""
    spec = FAMILIES.get(family)  # an unknown name: a UserError with the closest and the known ones
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_hf():
        pipe = spec.build_random(out, seed)
        pipe.save_pretrained(str(out), safe_serialization=True)
    write_marker(out, weights="random", backend="diffusers", family=family, arch=spec.pipeline_class, seed=seed,
                 tiny=True, test_tokenizer=True, tokenizer=spec.random_tokenizer)
    return out
