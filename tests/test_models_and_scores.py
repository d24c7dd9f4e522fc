"""open_clip loading through the real local-dir path, the weights label, and stored clip_scores."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.clip_scores import score_texts
from densecaption.data.dci import DCIDataset
from densecaption.data.subcrop import subcrop_box
from densecaption.errors import UserError
from densecaption.models.registry import ModelSpec, load_model
from tests.conftest import make_doc, write_dataset


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-clip")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_spec_parsing():
    spec = ModelSpec.parse("hf:org/model#gguf=model.Q4.gguf")
    assert (spec.prefix, spec.target, spec.options) == ("hf", "org/model", {"gguf": "model.Q4.gguf"})
    assert ModelSpec.parse("open_clip:ViT-B-32:openai").target == "ViT-B-32:openai"
    with pytest.raises(UserError, match="PREFIX:TARGET"):
        ModelSpec.parse("ViT-B-32")
    with pytest.raises(UserError, match=r"'nope:thing': unknown model backend 'nope' \(known: open_clip, hf, lm\)"):
        load_model("nope:thing")
    with pytest.raises(UserError, match="unknown model backend 'open-clip'; did you mean 'open_clip'"):
        load_model("open-clip:ViT-B-32")


def test_unknown_arch_and_unloadable_weights_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no architecture"):
        load_model("open_clip:ViT-Q-99")
    with pytest.raises(UserError, match="neither a file nor an open_clip pretrained tag"):
        load_model("open_clip:ViT-B-32:not-a-tag")
    with pytest.raises(UserError, match="no open_clip_config.json"):
        load_model(f"open_clip:local-dir:{tmp_path}")


def test_random_folder_loads_back_with_its_label_and_weights(tiny_clip):
    import open_clip

    model = load_model(f"open_clip:local-dir:{tiny_clip}", device="cpu")
    assert model.weights == "random"
    cfg = json.loads((tiny_clip / "open_clip_config.json").read_text())["model_cfg"]
    torch.manual_seed(3)
    fresh = open_clip.CLIP(**cfg)
    for (name, a), b in zip(model.model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    (tiny_clip / "densecaption-weights.json").rename(tiny_clip / "marker.bak")
    try:
        assert load_model(f"open_clip:local-dir:{tiny_clip}", device="cpu").weights == "unknown"
    finally:
        (tiny_clip / "marker.bak").rename(tiny_clip / "densecaption-weights.json")


def test_score_text_names_follow_file_order():
    pairs = score_texts(["s0", "s1"], {"swaps": ["w0", "w1"], "basic": ["b0"]})
    assert pairs == [("sum", "s0"), ("swaps_0", "w0"), ("swaps_1", "w1"), ("basic_0", "b0")]


def test_clip_scores_command_matches_direct_model_computation(tmp_path, tiny_clip):
    write_dataset(tmp_path / "in", {"1-data.json": make_doc()})
    result = CliRunner().invoke(build_app(), ["data", "clip-scores", "--data", str(tmp_path / "in"), "--model",
                                              f"open_clip:local-dir:{tiny_clip}", "--out", str(tmp_path / "out"),
                                              "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "weights: random" in result.output
    record = DCIDataset.open(tmp_path / "out").read("1-data.json")
    assert set(record.clip_scores) == {"base", "m-1-sc"}

    # Independently: open_clip directly, the padded subcrop cut by hand.
    import open_clip

    net, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_clip}")
    photo = record.open_photo()
    box = subcrop_box(record.masks[1].box, *photo.size)
    crop = photo.crop((box.x0, box.y0, box.x1, box.y1))
    with torch.no_grad():
        img = net.encode_image(preprocess(crop)[None], normalize=True)
        txt = net.encode_text(tokenizer(["the red box", "box the red"]), normalize=True)
        expected = (net.logit_scale.exp() * img @ txt.T)[0].tolist()
    assert record.clip_scores["m-1-sc"]["sum"] == pytest.approx(expected[0], abs=1e-4)
    assert record.clip_scores["m-1-sc"]["swaps_0"] == pytest.approx(expected[1], abs=1e-4)
    assert list(record.clip_scores["base"]) == ["sum", "basic_0", "layout_0", "swaps_0"]
    # the input is untouched
    assert DCIDataset.open(tmp_path / "in").read("1-data.json").clip_scores["base"]["sum"] == 30.5


def test_clip_scores_needs_exactly_one_destination(tmp_path, tiny_clip):
    write_dataset(tmp_path / "in", {"1-data.json": make_doc()})
    result = CliRunner().invoke(build_app(), ["data", "clip-scores", "--data", str(tmp_path / "in"), "--model",
                                              f"open_clip:local-dir:{tiny_clip}"])
    assert result.exit_code == 2 and "exactly one of --out" in result.output


def test_clip_scores_in_place_skips_bad_records(tmp_path, tiny_clip):
    inner = write_dataset(tmp_path, {"1-data.json": make_doc(), "2-data.json": "{broken"})
    result = CliRunner().invoke(build_app(), ["data", "clip-scores", "--data", str(tmp_path), "--model",
                                              f"open_clip:local-dir:{tiny_clip}", "--in-place"])
    assert result.exit_code == 0, result.output
    assert "1 record(s) skipped" in result.output
    rescored = json.loads((inner / "complete" / "1-data.json").read_text())["clip_scores"]
    assert rescored["base"]["sum"] != 30.5
    strict = CliRunner().invoke(build_app(), ["data", "clip-scores", "--data", str(tmp_path), "--model",
                                              f"open_clip:local-dir:{tiny_clip}", "--in-place", "--strict"])
    assert strict.exit_code == 1 and "2-data.json" in strict.output and "Traceback" not in strict.output


def test_clip_scores_resume_into_the_same_out(tmp_path, tiny_clip):
    write_dataset(tmp_path / "in", {"1-data.json": make_doc(), "2-data.json": make_doc()})
    args = ["data", "clip-scores", "--data", str(tmp_path / "in"), "--model", f"open_clip:local-dir:{tiny_clip}",
            "--out", str(tmp_path / "out")]
    runner = CliRunner()
    assert "scored 2 records" in runner.invoke(build_app(), args).output
    out = tmp_path / "out" / "densely_captioned_images"
    first = (out / "complete" / "1-data.json").read_text()
    (out / "complete" / "2-data.json").unlink()  # as if killed before writing it
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 0 and "scored 1 records" in result.output
    assert (out / "complete" / "1-data.json").read_text() == first
    assert json.loads((out / "clip_scores_model.json").read_text())["weights"] == "random"
    other = runner.invoke(build_app(), args[:5] + ["open_clip:ViT-B-32", "--out", str(tmp_path / "out")])
    assert other.exit_code == 2 and "holds scores from" in other.output


def test_open_clip_arch_with_a_local_checkpoint_file(tmp_path):
    import open_clip

    from densecaption.models.weights import write_marker

    torch.manual_seed(0)
    net = open_clip.create_model("ViT-S-32")
    checkpoint = tmp_path / "vit-s-32.pt"
    torch.save(net.state_dict(), checkpoint)
    model = load_model(f"open_clip:ViT-S-32:{checkpoint}", device="cpu")
    assert model.weights == "unknown"
    for (name, a), b in zip(model.model.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    write_marker(tmp_path, weights="random")
    assert load_model(f"open_clip:ViT-S-32:{checkpoint}", device="cpu").weights == "random"


def test_lora_adapter_on_open_clip(tmp_path, tiny_clip):
    import open_clip
    from peft import LoraConfig, get_peft_model
    from PIL import Image

    base = load_model(f"open_clip:local-dir:{tiny_clip}", device="cpu")
    net, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip}")
    torch.manual_seed(1)
    peft_net = get_peft_model(net, LoraConfig(r=4, target_modules=["c_fc", "c_proj"], init_lora_weights=False))
    peft_net.save_pretrained(tmp_path / "adapter")
    adapted = load_model(f"open_clip:local-dir:{tiny_clip}", device="cpu", lora=str(tmp_path / "adapter"))
    assert adapted.lora == str(tmp_path / "adapter")
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    texts = ["a red square", "a blue circle"]
    with torch.no_grad():
        tokens = open_clip.get_tokenizer(f"local-dir:{tiny_clip}")(texts)
        expected = peft_net.encode_text(tokens, normalize=True)
    assert torch.allclose(adapted.encode_texts(texts), expected, atol=1e-5)
    assert not torch.allclose(adapted.score([image], texts), base.score([image], texts), atol=1e-4)
