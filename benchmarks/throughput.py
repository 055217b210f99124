"""Training throughput benchmark (not a test): how close does cnnstudy get to the compute limit?

All in one process, on the same images (animals3: natural JPEGs), for each model and image size:
  (a) compute limit: the training step on random tensors already in memory, cnnstudy's step setup
      (channels_last, tuned allocator, threads = cores, bf16 autocast where the CPU has native bf16);
  (b) cnnstudy end to end: decode-once cache + batched seed augmentation + the same step;
  (c) the naive pipeline (the seed's way): ImageFolder + the seed's PIL transforms +
      DataLoader(num_workers=2, batch 32) + a plain fp32 NCHW loop, glibc's default allocator;
  (d) that plain loop on the in-memory tensors of (a): what the step setup alone is worth (a/d).
Prints images/second, the ratios b/a, b/c and a/d, and the cache build time. Then (a) against the
machine (see roofline.py): FLOPs per image, GFLOP/s and the share of the GEMM peak measured in this
process; `--reference` adds the seed CNNs' unfused order (before/after in one sitting), `--profile`
the time per kind of op and the bytes the memory-bound ops move per image.

    .venv/bin/python benchmarks/throughput.py [--sizes 64 224] [--batches 8] [--rounds 3]
    .venv/bin/python benchmarks/throughput.py --step-only --reference --profile --models cnn_baseline
    .venv/bin/python benchmarks/throughput.py --policies [--sizes 64 224]   # augmentation policies vs none
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder

import roofline
from cnnstudy.config import AugmentConfig
from cnnstudy.data.cache import cached_images
from cnnstudy.data.loaders import CachedLoader
from cnnstudy.data.sources import open_image_file, resolve_dataset, scan_folder
from cnnstudy.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform
from cnnstudy.training.devices import choose_precision
from cnnstudy.training.engine import train_one_epoch
from cnnstudy.models.registry import create_model
from cnnstudy.training.runtime import cpu_flags, set_allocator, tune_runtime

STATS = (IMAGENET_MEAN, IMAGENET_STD)
BATCH = 32


class Repeat:
    """The same in-memory batch `count` times: no data cost at all (one random batch per size)."""
    _batches: dict = {}

    def __init__(self, size: int, count: int, device: torch.device) -> None:
        key = (size, str(device))
        if key not in self._batches:
            self._batches[key] = (torch.randn(BATCH, 3, size, size, device=device),
                                  torch.randint(0, 3, (BATCH,), device=device), torch.arange(BATCH))
        self.batch, self.count = self._batches[key], count

    def __iter__(self):
        return iter([self.batch] * self.count)

    def __len__(self) -> int:
        return self.count


def images_per_second(run, batches: int, device: torch.device = torch.device("cpu")) -> float:
    run(2)  # warm-up: allocator, kernels, worker start-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run(batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU's queued work counts
    return batches * BATCH / (time.perf_counter() - started)


def cnnstudy_step(model_name: str, loader_for, device: torch.device, fused: bool = True) -> callable:
    model = create_model(model_name, 3).to(device).to(memory_format=torch.channels_last)
    model.fused = fused  # False: the seed CNNs' reference order (other models have no such switch)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    criterion = nn.CrossEntropyLoss()
    precision = choose_precision(device, "auto")
    return lambda n: train_one_epoch(model, loader_for(n), optimizer, criterion, device, desc="bench",
                                     precision=precision, progress=False)


def plain_loop(model: nn.Module, batches, device: torch.device) -> None:
    """The textbook loop: NCHW fp32, a .item() per step."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for images, labels, *_ in batches:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()


def naive_step(model_name: str, root, size: int, device: torch.device) -> callable:
    """What a user writes: PIL transforms per image in 2 workers, a plain NCHW fp32 loop."""
    dataset = ImageFolder(str(root), transform=train_transform(size, "seed", STATS), loader=open_image_file)
    model = create_model(model_name, 3).to(device)

    def run(n: int) -> None:
        subset = Subset(dataset, torch.randperm(len(dataset))[: n * BATCH].tolist())
        plain_loop(model, DataLoader(subset, batch_size=BATCH, shuffle=True, num_workers=2), device)
    return run


def measure(model_name: str, size: int, batches: int, rounds: int, source, root,
            device: torch.device = torch.device("cpu"), reference: bool = False, step_only: bool = False) -> dict:
    """Images/second of (a) and, unless `step_only`, (b), (c), (d); with `reference`, also (a) in the
    seed CNNs' unfused order ("a_ref"), in the same alternating rounds."""
    row = {"model": model_name, "size": size}
    set_allocator(True)
    steps = {"a": cnnstudy_step(model_name, lambda n: Repeat(size, n, device), device)}
    if reference:
        steps["a_ref"] = cnnstudy_step(model_name, lambda n: Repeat(size, n, device), device, fused=False)
    if not step_only:
        items = [item for part in source.items.values() for item in part]
        started = time.perf_counter()
        array = cached_images(source, [item for item, _ in items], size, progress=False)
        row["cache_s"] = time.perf_counter() - started
        labels = [label for _, label in items]
        cached = lambda n: CachedLoader(array[: n * BATCH * 2], labels[: n * BATCH * 2], BATCH,  # noqa: E731
                                        STATS, device, shuffle=True, augment=AugmentConfig(policy="seed"))
        steps["b"] = cnnstudy_step(model_name, lambda n: _first(cached(n), n), device)
    # Alternating rounds, best of each: a 2-core machine's noise hits every side alike.
    for _ in range(rounds):
        for key, run in steps.items():
            row[key] = max(row.get(key, 0.0), images_per_second(run, batches, device))
    if not step_only:
        set_allocator(False)
        class_root = root / source.layout.folders.get("train", source.layout.folders.get("all", ""))
        row["c"] = images_per_second(naive_step(model_name, class_root, size, device), batches, device)
        plain = create_model(model_name, 3).to(device)
        row["d"] = images_per_second(lambda n: plain_loop(plain, Repeat(size, n, device), device), batches, device)
        set_allocator(True)
    return row


def _first(loader, n: int):
    for i, batch in enumerate(loader):
        if i == n:
            return
        yield batch


def print_table(models: list[str], sizes: list[int], batches: int, rounds: int, dataset: str,
                device: torch.device) -> list[dict]:
    """Measure every model at every size and print one table; returns the rows."""
    root = resolve_dataset(dataset)
    source = scan_folder(root)
    print(f"{dataset}: {sum(map(len, source.items.values()))} images, batch {BATCH}, {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{choose_precision(device, 'auto')} in (a) and (b)")
    print(f"CPU flags: {cpu_flags()}")
    print(f"{'model':16s} {'px':>4s} {'(a) limit':>10s} {'(b) ours':>10s} {'(c) naive':>10s} "
          f"{'(d) plain':>10s} {'b/a':>6s} {'b/c':>6s} {'a/d':>6s} {'cache s':>8s}   (images/second)")
    rows = []
    for size in sizes:
        for model_name in models:
            r = measure(model_name, size, batches, rounds, source, root, device)
            print(f"{r['model']:16s} {size:>4d} {r['a']:>10.1f} {r['b']:>10.1f} {r['c']:>10.1f} "
                  f"{r['d']:>10.1f} {r['b'] / r['a']:>6.2f} {r['b'] / r['c']:>6.2f} {r['a'] / r['d']:>6.2f} "
                  f"{r['cache_s']:>8.1f}", flush=True)
            rows.append(r)
    return rows


def print_roofline(models: list[str], sizes: list[int], batches: int, rounds: int, device: torch.device,
                   reference: bool, profile: bool) -> list[dict]:
    """The step (a) against this process's GEMM peak and copy bandwidth, per model and size."""
    precision = choose_precision(device, "auto")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak, bandwidth = roofline.gemm_peak(dtype, device), roofline.copy_bandwidth(device)
    print(f"\nthe step (a) against this machine: {precision}, GEMM peak {peak:.0f} GFLOP/s (best of three "
          f"4096x4096 {dtype}), copy bandwidth {bandwidth:.1f} GB/s (read + write, best of five 512 MiB copies)")
    head = f"{'model':16s} {'px':>4s} {'GFLOP/img':>9s} {'img/s':>8s} {'GFLOP/s':>8s} {'% peak':>7s}"
    print(head + (f" {'unfused':>8s} {'% peak':>7s} {'speed-up':>8s}" if reference else ""))
    rows = []
    for size in sizes:
        for model_name in models:
            r = measure(model_name, size, batches, rounds, None, None, device, reference, step_only=True)
            one_step = cnnstudy_step(model_name, lambda n: Repeat(size, n, device), device)
            r["flops"] = roofline.step_flops(lambda: one_step(1), BATCH)
            line = (f"{model_name:16s} {size:>4d} {r['flops'] / 1e9:>9.3f} {r['a']:>8.1f} "
                    f"{r['a'] * r['flops'] / 1e9:>8.1f} {r['a'] * r['flops'] / 1e9 / peak:>7.1%}")
            if reference:
                line += (f" {r['a_ref']:>8.1f} {r['a_ref'] * r['flops'] / 1e9 / peak:>7.1%} "
                         f"{r['a'] / r['a_ref']:>7.2f}x")
            print(line, flush=True)
            if profile:
                print(roofline.profile_report(lambda: one_step(1), BATCH, r["a"], bandwidth), flush=True)
            rows.append(r | {"peak": peak, "bandwidth": bandwidth})
    return rows


POLICIES = {"none": AugmentConfig(), "seed": AugmentConfig(policy="seed"),
            "trivialaugment": AugmentConfig(policy="trivialaugment"),
            "randaugment": AugmentConfig(policy="randaugment"), "autoaugment": AugmentConfig(policy="autoaugment"),
            "modern": AugmentConfig(policy="trivialaugment", crop="random-resized", color=0.4, erase=0.25,
                                    mixup=0.2, cutmix=1.0)}


def print_policies(model_name: str, sizes: list[int], batches: int, rounds: int, dataset: str,
                   device: torch.device) -> list[dict]:
    """Training images/second (cached loader + step) per augmentation policy against `none`, and the
    loader alone (augmentation without the step), in alternating rounds, best of each."""
    source = scan_folder(resolve_dataset(dataset))
    items = [item for part in source.items.values() for item in part]
    labels = [label for _, label in items]
    print(f"\naugmentation policies, {model_name}, cached loader on {device}, batch {BATCH}, "
          f"{choose_precision(device, 'auto')}; 'modern' = trivialaugment + random-resized crop + colour 0.4 + "
          "erase 0.25 + mixup 0.2 / cutmix 1.0")
    print(f"{'px':>4s} {'policy':15s} {'train img/s':>11s} {'x none':>7s} {'loader img/s':>12s}")
    rows = []
    for size in sizes:
        array = cached_images(source, [item for item, _ in items], size, progress=False)
        loader = lambda n, aug: CachedLoader(array[: n * BATCH], labels[: n * BATCH], BATCH, STATS,  # noqa: E731
                                             device, shuffle=True, augment=aug, num_classes=3)
        best = {}
        for _ in range(rounds):
            for name, aug in POLICIES.items():
                step = cnnstudy_step(model_name, lambda n, aug=aug: loader(n, aug), device)
                best[name] = max(best.get(name, 0.0), images_per_second(step, batches, device))
                only = lambda n, aug=aug: [None for _ in loader(n, aug)]  # noqa: E731
                best[name + "/loader"] = max(best.get(name + "/loader", 0.0), images_per_second(only, batches, device))
        for name in POLICIES:
            print(f"{size:>4d} {name:15s} {best[name]:>11.1f} {best[name] / best['none']:>7.2f} "
                  f"{best[name + '/loader']:>12.1f}", flush=True)
            rows.append({"size": size, "policy": name, "train": best[name], "loader": best[name + "/loader"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--models", nargs="+", default=["cnn_baseline", "cnn_regularized"])
    parser.add_argument("--batches", type=int, default=8, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (a)/(b) rounds, best kept")
    parser.add_argument("--dataset", default="animals3")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU path")
    parser.add_argument("--step-only", action="store_true", help="only the step against the machine's limits")
    parser.add_argument("--reference", action="store_true",
                        help="also time the seed CNNs' unfused order (conv, BatchNorm, ReLU, pool): before/after")
    parser.add_argument("--profile", action="store_true", help="per-op profile (CPU time) and bytes moved per image")
    parser.add_argument("--policies", action="store_true",
                        help="only training img/s per augmentation policy against none (first of --models)")
    args = parser.parse_args()
    tune_runtime()
    device = torch.device(args.device)
    if args.policies:
        print(f"CPU flags: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        print_policies(args.models[0], args.sizes, args.batches, args.rounds, args.dataset, device)
        return 0
    if not args.step_only:
        print_table(args.models, args.sizes, args.batches, args.rounds, args.dataset, device)
    else:
        print(f"batch {BATCH}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
              f"CPU flags: {cpu_flags()}")
    print_roofline(args.models, args.sizes, args.batches, args.rounds, device, args.reference, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
