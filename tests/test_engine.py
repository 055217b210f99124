import pytest
import torch

from cnnstudy.training.engine import evaluate, train_one_epoch
from cnnstudy.models.registry import create_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_epoch_learns_in_either_precision(precision):
    torch.manual_seed(0)
    labels = torch.arange(64) % 2
    images = torch.randn(64, 3, 48, 48) * 0.1 + labels.view(-1, 1, 1, 1).float() * torch.tensor(
        [1.0, -1.0, 0.5]).view(1, 3, 1, 1)
    batches = [(images[i:i + 16], labels[i:i + 16], torch.arange(i, i + 16)) for i in range(0, 64, 16)]
    model = create_model("cnn_slim", num_classes=2).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(8):
        row = train_one_epoch(model, batches, optimizer, torch.nn.CrossEntropyLoss(), CPU, precision=precision)
    assert row["train_acc"] > 0.8
    out = evaluate(model, batches, CPU, precision)
    assert out["acc"] > 0.9 and out["probs"].dtype.name == "float32"


@pytest.mark.parametrize("kind, capability, cpu_bf16, expected", [
    ("cuda", (8, 0), False, "bf16"),   # A100: native bf16
    ("cuda", (9, 0), False, "bf16"),   # H100
    ("cuda", (7, 5), True, "fp16"),    # T4: bf16 only emulated, so fp16 with a scaler
    ("cuda", (7, 0), False, "fp16"),   # V100
    ("cpu", None, True, "bf16"),       # AVX512-BF16 or AMX
    ("cpu", None, False, "fp32"),      # AVX2 only
])
def test_auto_precision_is_native_only(monkeypatch, kind, capability, cpu_bf16, expected):
    from cnnstudy.training import devices

    asked = []
    monkeypatch.delenv("CNNSTUDY_AUTO_PRECISION", raising=False)  # the suite may run with it set
    monkeypatch.setattr(devices, "cuda_capability", lambda device: asked.append(device) or capability)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: cpu_bf16)
    device = torch.device(kind, 1) if kind == "cuda" else torch.device(kind)
    assert devices.choose_precision(device, "auto") == expected
    assert asked == ([device] if kind == "cuda" else [])  # the run's own device, not the current one
    assert devices.choose_precision(device, "fp32") == "fp32"


def test_auto_precision_can_be_forced_on_a_cpu_for_the_suite(monkeypatch):
    from cnnstudy.training import devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv("CNNSTUDY_AUTO_PRECISION", "bf16")
    assert devices.choose_precision(CPU, "auto") == "bf16" and devices.choose_precision(CPU, "fp32") == "fp32"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("CNNSTUDY_AUTO_PRECISION", "fp32")
    assert devices.choose_precision(CPU, "auto") == "fp32"


def test_only_fp16_uses_a_gradient_scaler():
    from cnnstudy.training.devices import grad_scaler

    assert grad_scaler(CPU, "fp16").is_enabled()
    assert not grad_scaler(CPU, "bf16").is_enabled() and not grad_scaler(CPU, "fp32").is_enabled()
