"""timm's model zoo: names, preprocessing from pretrained_cfg, weights through the Hub protocol (a
stand-in on 127.0.0.1, tests/hubserver.py), Grad-CAM for convnets and ViTs, and a timm run used
by predict, export and explain. huggingface_hub reads HF_ENDPOINT at import, so every step that
fetches runs in a subprocess."""
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnstudy
from cnnstudy.data.cache import cache_key, resized_pixels
from cnnstudy.data.sources import open_source
from cnnstudy.data.transforms import eval_transform
from cnnstudy.fileio import read_json
from cnnstudy.models.explain import class_activation_maps
from cnnstudy.models.freeze import FreezeError, apply_freeze
from cnnstudy.models.registry import cam_target, check_state_fits, create_model, get_spec, model_problem, normalization, \
    resize_filter
from cnnstudy.models.timm_zoo import list_matching
from cnnstudy.report.weights import licence_note
from cnnstudy.runner.planning.fingerprint import differences
from cnnstudy.runner.planning.studyfile import load_study

from helpers import make_image_folder
from hubserver import HubServer, random_weights

CONVNEXT, VIT = "timm/test_convnext.r160_in1k", "timm/test_vit.r160_in1k"
STUDY = """
name: zoo
defaults:
  data: {{dataset: {data}, image_size: 32}}
  train: {{epochs: 1, batch_size: 8, lr: 0.001, precision: fp32}}
phases:
  - name: p
    runs:
      - {{name: vit, model: {{name: {vit}, pretrained: true}}}}
      - {{name: convnext, model: {{name: {convnext}, pretrained: true, freeze: head}}}}
      - {{name: mixer, model: timm/resmlp_12_224}}
"""


def cnnstudy_cli(*args, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnstudy", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def hub_env(hub: HubServer, hf_home: Path) -> dict:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home)}
    for key in ("HF_HUB_OFFLINE", "CNNSTUDY_OFFLINE"):
        env.pop(key, None)
    return env


def test_a_timm_name_gives_its_pretrained_cfg_facts_and_bad_names_say_what_exists():
    spec = get_spec(VIT)
    assert (spec.interpolation, spec.input_size, spec.license) == ("bicubic", 160, "apache-2.0")
    assert spec.classifier == ("head",) and spec.hub == ("timm/test_vit.r160_in1k", "model.safetensors")
    assert normalization(VIT, True) == ((0.5,) * 3, (0.5,) * 3) and resize_filter(VIT, True) == "bicubic"
    assert resize_filter(VIT, False) == "bilinear"  # from scratch: nothing to match
    assert "tags: r160_in1k" in model_problem("timm/test_vit.nope")
    assert "did you mean timm/test_convnext" in model_problem("timm/test_convnex")
    assert model_problem("timm/test_convnext") is None  # timm's default tag


def test_licences_are_flagged_where_not_for_commercial_use():
    assert licence_note("apache-2.0") == "apache-2.0"
    assert "NON-COMMERCIAL" in licence_note("cc-by-nc-4.0")
    assert "NON-COMMERCIAL" in licence_note("fair-noncommercial-research-license")
    assert "read its terms" in licence_note("dinov3-license") and "not stated" in licence_note(None)


def test_freezing_head_leaves_timms_classifier_and_grad_cam_works_for_convnets_and_vits():
    for name, head in ((CONVNEXT, "head.fc."), (VIT, "head.")):
        model = create_model(name, 3, image_size=64)  # 2 x 2 maps at the ConvNeXt's last stage
        assert all(p.startswith(head) for p in apply_freeze(model, "head"))
        maps = class_activation_maps(model, name, torch.randn(2, 3, 64, 64), [0, 2], torch.device("cpu"))
        assert maps.shape == (2, 64, 64) and maps.max() == pytest.approx(1.0, abs=1e-3)
    assert type(cam_target(create_model(VIT, 3, image_size=32), VIT)).__name__ == "LayerNorm"


def test_models_lists_matching_timm_models_with_parameters_and_tags():
    rows = {name: (params, tags) for name, params, tags in list_matching("test_vi*")}
    assert rows["test_vit"][1] == ["r160_in1k"] and rows["test_vit"][0] > 100_000


def test_the_cache_resizes_with_the_models_filter_and_keeps_bilinear_keys(image_folder):
    source = open_source(str(image_folder))
    item = source.items["all"][0][0]
    image = source.open(item)
    cached = resized_pixels(image, 40, "bicubic")
    torchvision_pixels = (eval_transform(40, ((0, 0, 0), (1, 1, 1)), "bicubic")(image) * 255).round()
    np.testing.assert_array_equal(cached, torchvision_pixels.permute(1, 2, 0).numpy().astype(np.uint8))
    assert not np.array_equal(cached, resized_pixels(image, 40))
    key = cache_key(source, [item], 40)
    assert key == cache_key(source, [item], 40, resample="bilinear") != cache_key(source, [item], 40, resample="bicubic")


def test_image_size_defaults_to_the_weights_size_only_where_the_study_leaves_it(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(f"""
name: s
defaults: {{data: {{dataset: {tmp_path}}}}}
phases:
  - name: p
    runs:
      - {{name: a, model: {{name: {VIT}, pretrained: true}}}}
      - {{name: b, model: {{name: {VIT}, pretrained: true}}, data: {{image_size: 64}}}}
      - {{name: c, model: {{name: {VIT}}}}}
""")
    _, runs, problems, _ = load_study(study)
    assert not problems and [cfg.data.image_size for cfg in runs] == [160, 64, 224]


def test_a_changed_pretrained_file_makes_a_run_stale():
    old = {"config": {}, "split": {"dataset": "d", "digest": "x"}, "inputs": {"pretrained": {"file": "r/f", "sha256": "a"}}}
    new = {**old, "inputs": {"pretrained": {"file": "r/f", "sha256": "b"}}}
    assert "pretrained weights r/f changed since this run started from it" in differences(old, new)
    assert not any("pretrained" in line for line in differences(old, old))


@pytest.fixture(scope="module")
def served():
    weights = {CONVNEXT: random_weights("test_convnext"), VIT: random_weights("test_vit")}
    with HubServer({**weights, "timm/test_efficientnet.r160_in1k": random_weights("test_efficientnet")},
                   corrupt={"timm/test_efficientnet.r160_in1k"}) as hub:
        yield hub, weights


@pytest.fixture(scope="module")
def zoo_run(served, tmp_path_factory):
    hub, weights = served
    tmp = tmp_path_factory.mktemp("zoo")
    data = make_image_folder(tmp / "colors", per_class=8, size=40)
    study = tmp / "zoo.yaml"
    study.write_text(STUDY.format(data=data, vit=VIT, convnext=CONVNEXT))
    env = hub_env(hub, tmp / "hf")
    done = cnnstudy_cli("run", study, "--out", tmp / "runs", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, data, study, env, weights


def test_a_study_fetches_verified_weights_and_records_them(zoo_run, served):
    tmp, _, _, _, weights = zoo_run
    hub = served[0]
    assert {path for method, path in hub.requests if method == "GET" and "resolve" in path} == \
        {f"/{repo}/resolve/main/model.safetensors" for repo in (CONVNEXT, VIT)}
    run = cnnstudy.load_run(tmp / "runs" / "zoo" / "p" / "vit")
    sha = hashlib.sha256(weights[VIT]).hexdigest()
    fingerprint = read_json(run.run_dir / "fingerprint.json")
    assert fingerprint["inputs"]["pretrained"] == {"file": f"{VIT}/model.safetensors", "sha256": sha}
    assert run.metrics["weights"]["license"] == "apache-2.0" and run.metrics["resample"] == "bicubic"
    report = (tmp / "runs" / "zoo" / "report.md").read_text()
    assert "The weights were trained at 160 px; this run uses 32 px" in report
    assert (run.run_dir / "plots" / "gradcam.png").exists()
    mixer = read_json(tmp / "runs" / "zoo" / "p" / "mixer" / "metrics.json")  # finished, without maps
    assert "Grad-CAM is not supported" in mixer["explanations"] and mixer["test"]["n"] > 0


def test_a_timm_run_predicts_exports_and_explains(zoo_run, tmp_path):
    tmp, data, _, env, _ = zoo_run
    run_dir = tmp / "runs" / "zoo" / "p" / "vit"
    run = cnnstudy.load_run(run_dir)
    stored = np.load(run_dir / "predictions.npz")
    rows = run.predict([data / item for item in stored["test_ids"]])
    np.testing.assert_allclose([r["probabilities"] for r in rows], stored["test_probs"], atol=1e-5)
    exported = cnnstudy_cli("export", run_dir, "--format", "onnx", "--out", tmp_path / "vit.onnx", env=env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "bicubic" in (tmp_path / "vit.onnx.json").read_text()
    explained = cnnstudy_cli("explain", tmp / "runs" / "zoo" / "p" / "convnext", data / "red", "--out",
                             tmp_path / "cams", env=env)
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert len(list((tmp_path / "cams").rglob("*.png"))) >= 8


def test_offline_pre_flight_names_every_missing_file_at_once_and_asks_nothing(zoo_run, served, tmp_path):
    _, _, study, env, _ = zoo_run
    hub = served[0]
    asked = len(hub.requests)
    done = cnnstudy_cli("run", study, "--out", tmp_path / "runs", "--offline",
                        env={**env, "HF_HOME": str(tmp_path / "empty")}, timeout=120)
    assert done.returncode == 2 and len(hub.requests) == asked
    lines = [line for line in done.stderr.splitlines() if "model.safetensors of" in line]
    assert len(lines) == 2 and all("checkpoints/hf/timm/" in line for line in lines), done.stderr
    assert not (tmp_path / "runs" / "zoo" / "p" / "vit" / "history.jsonl").exists()


def test_an_unreachable_hub_stops_the_study_at_once_with_one_line_per_file(zoo_run, tmp_path):
    _, _, study, env, _ = zoo_run
    started = time.monotonic()
    done = cnnstudy_cli("run", study, "--out", tmp_path / "runs", timeout=120,
                        env={**env, "HF_HOME": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 2 and time.monotonic() - started < 60, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "cannot reach http://127.0.0.1:9" in line]
    assert len(lines) == 2 and "Retrying" not in done.stderr, done.stderr[-2000:]


def test_a_file_that_does_not_match_the_hubs_sha256_is_deleted_and_named(served, tmp_path):
    hub, _ = served
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.replace("{vit}", "timm/test_efficientnet.r160_in1k").format(
        data=make_image_folder(tmp_path / "d", per_class=4), convnext=CONVNEXT))
    done = cnnstudy_cli("data", "fetch", "--study", study, env=hub_env(hub, tmp_path / "hf"), timeout=120)
    assert done.returncode != 0 and "test_efficientnet.r160_in1k" in done.stderr, done.stderr
    assert not list((tmp_path / "hf").rglob("*test_efficientnet*/blobs/*"))  # nothing unverified is kept


def test_timm_heads_and_last_conv_follow_timms_own_layout():
    assert create_model("timm/dla34", 3, image_size=64).fc.out_channels == 3  # a 1x1 Conv2d classifier
    distilled = "timm/deit_tiny_distilled_patch16_224"
    source, target = create_model(distilled, 5, image_size=32), create_model(distilled, 3, image_size=32)
    assert sorted(check_state_fits(target, source.state_dict(), "x")) == \
        ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    trainable = apply_freeze(create_model("timm/convnext_atto", 3, image_size=64), "last_conv")
    assert {name.split(".")[0] for name in trainable} == {"stages", "head"} and \
        all(name.startswith(("stages.3.blocks.1.", "head.")) for name in trainable)
    with pytest.raises(FreezeError, match="vision transformer"):
        apply_freeze(create_model(VIT, 3, image_size=32), "last_conv")


def test_a_mirror_serves_hub_files_as_hf_repo_file(served, tmp_path):
    _, weights = served
    mirror = tmp_path / "mirror" / "hf" / VIT
    mirror.mkdir(parents=True)
    (mirror / "model.safetensors").write_bytes(weights[VIT])
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(data=make_image_folder(tmp_path / "d", per_class=4), vit=VIT, convnext=VIT))
    env = {**hub_env(HubServer({}), tmp_path / "hf"), "CNNSTUDY_MIRROR": str(tmp_path / "mirror"),
           "TORCH_HOME": str(tmp_path / "torch")}
    done = cnnstudy_cli("data", "fetch", "--study", study, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "hf" / VIT / "model.safetensors").read_bytes() == weights[VIT]


def test_a_truncated_hand_placed_file_is_named_before_anything_trains(served, tmp_path):
    _, weights = served
    store = tmp_path / "torch" / "hub" / "checkpoints" / "hf" / VIT
    store.mkdir(parents=True)
    (store / "model.safetensors").write_bytes(weights[VIT][:5000])
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(data=make_image_folder(tmp_path / "d", per_class=4), vit=VIT, convnext=VIT))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"), "CNNSTUDY_OFFLINE": "1"}
    done = cnnstudy_cli("run", study, "--out", tmp_path / "runs", env=env, timeout=120)
    assert done.returncode == 2 and "is not a readable safetensors file" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_weights_can_be_a_safetensors_file_as_timm_users_have_them(tmp_path):
    from safetensors.torch import save_file

    from cnnstudy.models.checkpoint import CheckpointError, load_checkpoint_file

    model = create_model(CONVNEXT, 3, image_size=64)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    again = create_model(CONVNEXT, 3, image_size=64, weights=tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    (tmp_path / "bad.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint_file(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("crop_pct", [0.875, 1.15])  # 1.15: VOLO's, whose crop pads
@pytest.mark.parametrize("shape", [(50, 40), (40, 50), (64, 64), (97, 31), (21, 20)])
def test_evaluation_pixels_are_timms_eval_transform(shape, crop_pct):
    """timm's create_transform(is_training=False) from a pretrained_cfg (crop_pct 0.875, bicubic) is the
    reference: the cache, the torchvision loader and predict give the very same pixels."""
    import numpy as np
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T

    from cnnstudy.data.cache import resized_pixels
    from cnnstudy.data.transforms import eval_transform

    cfg = resolve_data_config({"input_size": (3, 32, 32), "crop_pct": crop_pct, "interpolation": "bicubic"})
    theirs = create_transform(**cfg, is_training=False)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (shape[1], shape[0], 3), dtype=np.uint8))
    pil_steps = T.Compose([t for t in theirs.transforms if isinstance(t, (T.Resize, T.CenterCrop))])
    assert len(pil_steps.transforms) == 2
    expected = np.asarray(pil_steps(image))
    assert np.array_equal(resized_pixels(image, 32, "bicubic", crop_pct), expected)
    ours = eval_transform(32, ((0.0,) * 3, (1.0,) * 3), "bicubic", crop_pct)(image)
    assert np.array_equal(np.round(ours.permute(1, 2, 0).numpy() * 255).astype(np.uint8), expected)


def test_a_timm_run_evaluates_with_its_crop_and_keeps_the_old_cache_key(tmp_path):
    from cnnstudy.data.cache import cache_key
    from cnnstudy.models.registry import eval_crop

    class Source:
        root = tmp_path

        @staticmethod
        def fingerprint(item):
            return (1, 2)
    assert cache_key(Source, ["a"], 32, resample="bicubic") == cache_key(Source, ["a"], 32, resample="bicubic",
                                                                           crop_pct=None)
    assert cache_key(Source, ["a"], 32, resample="bicubic", crop_pct=0.875) != cache_key(Source, ["a"], 32,
                                                                                           resample="bicubic")
    assert eval_crop("timm/resnet18.a1_in1k", True) == 0.95  # its pretrained_cfg's
    assert eval_crop("timm/resnet18.a1_in1k", False) is None and eval_crop("resnet18", True) is None


def test_an_explanation_lies_on_the_crop_the_model_saw():
    """A 400 x 300 image evaluated at 224 with crop_pct 0.875 sees its middle: a map hot on the
    input's left 20 columns lies on the image columns those inputs came from, not on its left edge."""
    import numpy as np
    from PIL import Image

    from cnnstudy.data.cache import crop_window, resized_pixels
    from cnnstudy.use.explain import on_image

    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:, :100] = 255
    image = Image.fromarray(pixels)
    x0, y0, x1, y1 = crop_window(400, 300, 224, 0.875)
    scale = (x1 - x0) / 224
    seen = resized_pixels(image, 224, "bilinear", 0.875)
    assert abs((seen[112, :, 0] > 127).sum() - (100 - x0) / scale) <= 1  # the white columns the model saw
    cam = np.zeros((224, 224), np.float32)
    cam[:, :20] = 1.0
    placed = on_image(cam, 300, 400, (x0, y0, x1, y1))
    hot = np.flatnonzero(placed[150] > 0.5)
    assert abs(hot[0] - x0) <= 1 and abs(hot[-1] + 1 - (x0 + 20 * scale)) <= 1
    assert placed[:, :int(x0) - 1].max() == 0
