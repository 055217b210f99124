"""The seed CNNs' cheaper step computes the seed's numbers: outputs, gradients, BatchNorm statistics
and an Adam step equal to the plain conv -> (BatchNorm) -> ReLU -> max-pool order (fp32, 1e-6),
for each seed CNN, at even and odd map sizes, with ties, and under DistributedDataParallel."""
import copy

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from cnnstudy.models.registry import create_model

SEED_CNNS = ["cnn_baseline", "cnn_slim", "cnn_regularized"]
EXACT = {"atol": 1e-6, "rtol": 0}
DDP_MODELS = ("cnn_baseline", "cnn_regularized")


def fused_and_reference(name: str, channels_last: bool = True) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    fused = create_model(name, num_classes=5)
    reference = copy.deepcopy(fused)
    reference.fused = False
    if channels_last:
        fused, reference = (m.to(memory_format=torch.channels_last) for m in (fused, reference))
    return fused, reference


def images_with_ties(size: int, batch: int = 4, channels_last: bool = True) -> torch.Tensor:
    """Random images whose lower half is flat: equal conv outputs in every pooling window there."""
    images = torch.randn(batch, 3, size, size)
    images[:, :, size // 2:, :] = 0.25
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def one_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs, input and parameter gradients, and the state after one Adam step, dropout seeded."""
    model.train()
    images = images.clone().requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    outputs = model(images)
    nn.functional.cross_entropy(outputs, labels).backward()
    result = {"outputs": outputs.detach(), "input grad": images.grad}
    result |= {f"grad {k}": p.grad.clone() for k, p in model.named_parameters()}
    optimizer.step()
    return result | {f"state {k}": v.clone() for k, v in model.state_dict().items()}


def assert_same(fused: dict, reference: dict) -> None:
    assert fused.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(fused[key], reference[key], **EXACT, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("name", SEED_CNNS)
@pytest.mark.parametrize("size", [48, 53, 64])  # 48: odd maps inside (46 -> 23), 53: odd input
def test_fused_step_equals_the_seed_order(name, size):
    fused, reference = fused_and_reference(name)
    images, labels = images_with_ties(size), torch.tensor([0, 1, 2, 3])
    assert_same(one_step(fused, images, labels), one_step(reference, images, labels))


@pytest.mark.parametrize("name", ["cnn_baseline", "cnn_regularized"])
def test_fused_equals_reference_in_nchw_and_in_eval(name):
    fused, reference = fused_and_reference(name, channels_last=False)
    images = images_with_ties(50, channels_last=False)
    assert_same(one_step(fused, images, torch.tensor([4, 3, 2, 1])),
                one_step(reference, images, torch.tensor([4, 3, 2, 1])))
    with torch.no_grad():
        torch.testing.assert_close(fused.eval()(images), reference.eval()(images), **EXACT)


def test_seed_checkpoints_load_unchanged():
    fused, reference = fused_and_reference("cnn_regularized")
    assert list(fused.state_dict()) == list(reference.state_dict())
    assert "conv1.weight" in fused.state_dict() and "batchnorm4.running_var" in fused.state_dict()
    fresh = create_model("cnn_regularized", num_classes=5)
    fresh.load_state_dict(reference.state_dict(), strict=True)


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        for name in DDP_MODELS:
            fused, reference = fused_and_reference(name)
            torch.manual_seed(2)
            images, labels = images_with_ties(54, batch=8), torch.arange(8) % 5
            shard = slice(rank * 4, rank * 4 + 4)  # each process its half of the global batch
            steps = [one_step(nn.parallel.DistributedDataParallel(model), images[shard], labels[shard])
                     for model in (fused, reference)]
            if rank == 0:
                torch.save([{k: v for k, v in step.items() if not k.startswith("input")} for step in steps],
                           f"{folder}/{name}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_fused_step_equals_the_seed_order_under_ddp(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2)
    for name in DDP_MODELS:
        fused, reference = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        assert any(key.startswith("grad module.conv1") for key in fused)  # DDP-wrapped, synced grads
        assert_same(fused, reference)
