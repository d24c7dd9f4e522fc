"""DCI's released adapters: ``data download adapter`` fetches a peft adapter in DCI's layout (a tar.gz holding
``dci_pick1/`` with ``adapter_config.json`` and ``adapter_model.bin``, LoRA on HF CLIP's q/k/v/out_proj, fc1,
fc2 and both projections), ``--lora`` applies it; onto a model of another architecture it is refused."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.download import ADAPTER_BASE, ADAPTERS
from densecaption.errors import UserError
from densecaption.models.registry import load_model
from tests.http_files import FileServer

DCI_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "visual_projection", "text_projection"]
TEXTS = ["a photo of a cat", "two dogs on a red sofa"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-hf-clip")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--backend", "hf",
                                              "--tiny", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory) -> tuple[bytes, torch.nn.Module]:
    """DCI's layout: dci_pick1/ with peft's files (weights as adapter_model.bin, as peft wrote them then),
    tarred and gzipped; and the peft model itself, for the reference scores."""
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPModel

    torch.manual_seed(0)
    net = get_peft_model(CLIPModel.from_pretrained(str(tiny)),
                         LoraConfig(r=2, lora_alpha=2, target_modules=DCI_TARGETS, bias="lora_only",
                                    init_lora_weights=False))
    folder = tmp_path_factory.mktemp("made") / "dci_pick1"
    net.save_pretrained(str(folder), safe_serialization=False)
    assert (folder / "adapter_model.bin").is_file()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="dci_pick1")
    return buf.getvalue(), net.eval()


@pytest.fixture(scope="module")
def downloaded(adapter, tmp_path_factory) -> Path:
    data, _ = adapter
    server = FileServer({"/dci_pick1.tar.gz": data})
    dest = tmp_path_factory.mktemp("models")
    try:
        result = CliRunner().invoke(build_app(), ["data", "download", "adapter", "dci_pick1", str(dest), "--url",
                                                  f"{server.url}/dci_pick1.tar.gz", "--sha256",
                                                  hashlib.sha256(data).hexdigest()])
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert f"--lora {dest / 'dci_pick1'}" in result.output
    return dest / "dci_pick1"


def test_downloaded_adapter_scores_as_peft_does(tiny, adapter, downloaded):
    from transformers import CLIPProcessor

    images = [Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8))]
    inputs = CLIPProcessor.from_pretrained(str(tiny))(text=TEXTS, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = adapter[1](**inputs).logits_per_image
    model = load_model(f"hf:{tiny}", device="cpu", lora=str(downloaded))
    ours = model.score(images, TEXTS)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    base = load_model(f"hf:{tiny}", device="cpu").score(images, TEXTS)
    assert (ours - base).abs().max() > 1e-3  # the adapter changed the scores


@pytest.fixture(scope="module")
def patch16(tiny, tmp_path_factory) -> Path:
    """The tiny CLIP with 16 px patches: every LoRA layer has the same shape as in the patch-32 one."""
    from transformers import CLIPConfig, CLIPModel

    other = tmp_path_factory.mktemp("patch16") / "model"
    shutil.copytree(tiny, other)
    config = CLIPConfig.from_pretrained(str(tiny))
    config.vision_config.patch_size = 16
    CLIPModel(config).save_pretrained(str(other))
    return other


def test_adapter_on_another_architecture_with_the_same_layer_shapes_is_refused(patch16, downloaded):
    """As DCI's ViT-B/32 adapter on ViT-B/16: every LoRA weight fits, but the patches differ."""
    with pytest.raises(UserError, match=r"another architecture than this model \(vision_config.patch_size 32 vs 16\)"):
        load_model(f"hf:{patch16}", device="cpu", lora=str(downloaded))


def test_bench_cli_refuses_the_mismatch_in_one_line(patch16, downloaded, tmp_path):
    other = patch16
    result = CliRunner().invoke(build_app(), ["bench", "sdci", "--model", f"hf:{other}", "--lora", str(downloaded),
                                              "--data", "sample", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "another architecture" in result.output and "Traceback" not in result.output


def test_official_adapters_and_their_base_are_kept_in_code():
    from densecaption.models.lora import KNOWN_BASES

    assert ADAPTERS["dci_pick1"].sha256 == "225b9e1c88a00a2dd62cd5b0e23d4133efbbffe8d28b6de796ba894db1a2aa6a"
    assert ADAPTERS["dci_pick1_nl0"].url.endswith("/densely_captioned_images/dci_pick1_nl0.tar.gz")
    assert ADAPTER_BASE == "hf:openai/clip-vit-base-patch32"
    assert KNOWN_BASES[ADAPTER_BASE.removeprefix("hf:")]["vision_config.patch_size"] == 32
