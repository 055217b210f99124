"""The timm path end to end without internet: a stand-in Hugging Face Hub on 127.0.0.1 (tests/hubserver.py)
serves random weights of the three timm models in studies/timm_zoo.yaml; the study runs against it
(HF_ENDPOINT), then offline pre-flight, export and explain of a timm run. Numbers are not meaningful.

    CNNSTUDY_DATA=../shared/data .venv/bin/python benchmarks/timm_zoo.py --out /tmp/timm_zoo
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hubserver import HubServer, random_weights  # noqa: E402

REPOS = {"timm/test_convnext.r160_in1k": "test_convnext", "timm/test_vit.r160_in1k": "test_vit",
         "timm/mobilenetv3_small_050.lamb_in1k": "mobilenetv3_small_050"}


def cnnstudy(*args: str, env: dict) -> float:
    started = time.perf_counter()
    print("$ cnnstudy " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "cnnstudy", *args], env=env, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/timm_zoo")
    parser.add_argument("--jobs", default="1")
    args = parser.parse_args()
    out = Path(args.out)
    study = str(ROOT / "studies" / "timm_zoo.yaml")
    with HubServer({repo: random_weights(arch) for repo, arch in REPOS.items()}) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(out / "hf-home")}
        took = cnnstudy("run", study, "--out", str(out / "study"), "--jobs", args.jobs, env=env)
        print(f"study: {took:.0f} s, {len(hub.requests)} requests to the stand-in Hub")
    offline = {**env, "HF_HOME": str(out / "hf-empty"), "CNNSTUDY_OFFLINE": "1"}
    print(f"offline pre-flight with an empty cache: {cnnstudy('run', study, '--out', str(out / 'offline'), env=offline):.1f} s")
    run = str(out / "study" / "timm_zoo" / "backbones" / "vit")
    cnnstudy("export", run, "--format", "onnx", env=env)
    cnnstudy("explain", run, str(Path(os.environ.get("CNNSTUDY_DATA", "../shared/data").split(":")[-1]) /
                                 "hymenoptera" / "val" / "ants"), "--out", str(out / "explain-vit"), env=env)


if __name__ == "__main__":
    main()
