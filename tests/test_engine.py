import pytest
import torch

from cnnstudy.engine import evaluate, native_bf16, train_one_epoch, use_bf16
from cnnstudy.models import create_model

CPU = torch.device("cpu")


def test_precision_auto_follows_the_hardware():
    assert use_bf16(CPU, "fp32") is False
    assert use_bf16(CPU, "bf16") is True
    assert use_bf16(CPU, "auto") is native_bf16(CPU)
    assert native_bf16(torch.device("meta")) is False


@pytest.mark.parametrize("bf16", [False, True])
def test_one_epoch_learns_in_either_precision(bf16):
    torch.manual_seed(0)
    labels = torch.arange(64) % 2
    images = torch.randn(64, 3, 48, 48) * 0.1 + labels.view(-1, 1, 1, 1).float() * torch.tensor(
        [1.0, -1.0, 0.5]).view(1, 3, 1, 1)
    batches = [(images[i:i + 16], labels[i:i + 16], torch.arange(i, i + 16)) for i in range(0, 64, 16)]
    model = create_model("cnn_slim", num_classes=2).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(8):
        row = train_one_epoch(model, batches, optimizer, torch.nn.CrossEntropyLoss(), CPU, bf16=bf16)
    assert row["train_acc"] > 0.8
    out = evaluate(model, batches, CPU, bf16)
    assert out["acc"] > 0.9 and out["probs"].dtype.name == "float32"
