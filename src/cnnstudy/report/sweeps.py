"""A swept run in the report: its search (best setting first, every trial, the metric against each
parameter, pruned trials marked) and the confirmation of the best setting against the base one,
all read from `<phase>/<run>/sweep.csv`, `sweep.json` and the run folders."""
from __future__ import annotations

import csv
from pathlib import Path

from ..runner.planning.fingerprint import flatten
from ..runner.search.sweep import STATE_FILE, TABLE_FILE, base_name
from . import plots
from .groups import Group

Blocks = list[tuple[str, object]]


def read_trials(group_dir: Path, params: list[str]) -> list[dict]:
    """sweep.csv's rows with typed values, in trial order."""
    with open(group_dir / TABLE_FILE, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{"trial": int(row["trial"]), "state": row["state"], "value": float(row["value"]) if row["value"] else None,
             "params": {key: _typed(row[key]) for key in params}, "epochs": row["epochs"], "error": row["error"]}
            for row in rows]


def _typed(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _space(spec: dict) -> dict[str, dict]:
    return {key: {"log": False, "choices": [_typed(str(c)) for c in space]} if isinstance(space, list)
            else {"log": bool(space.get("log")), "choices": None} for key, space in spec["params"].items()}


def setting(params: dict) -> str:
    return ", ".join(f"{key} {_short(value)}" for key, value in params.items())


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sweep_blocks(study_dir: Path, run: dict, run_id: str) -> Blocks:
    group_dir = study_dir / run_id
    if not (group_dir / STATE_FILE).exists() or not (group_dir / TABLE_FILE).exists():
        return [("p", "Sweep: not started yet.")]
    from ..fileio import read_json

    state, spec = read_json(group_dir / STATE_FILE), run["sweep"]
    trials = read_trials(group_dir, list(spec["params"]))
    counts = ", ".join(f"{n} {word}" for word, n in state["counts"].items() if n)
    blocks: Blocks = [("h3", f"Sweep of {run_id}")]
    best = state.get("best")
    if best:
        blocks.append(("p", f"Best setting: **{setting(best['params'])}** (trial t{best['trial']:03d}, "
                            f"{state['metric']} {best['value']:.4f} on the validation images)."))
    blocks.append(("p", f"{state['trials']} of {state['budget']} trial(s) ({counts}); method {state['method']}, "
                        f"{state['metric']} {'maximized' if state['direction'] == 'maximize' else 'minimized'}, "
                        f"pruning {spec.get('prune', 'none')}. Trials are chosen and scored on validation images "
                        "only; the test split scores the confirmed best setting, trained (like the base setting it "
                        "is compared with) on seeds no trial used. Pruned trials show the last value they "
                        "reached."))
    ranked = sorted(trials, key=lambda t: (t["state"] != "complete", t["value"] is None,
                                           -(t["value"] or 0) if state["direction"] == "maximize" else (t["value"] or 0)))
    blocks.append(("img", plots.plot_sweep(trials, _space(spec), state["metric"], study_dir / "plots" / f"sweep-{run_id.replace('/', '-')}.png")))
    columns = ["trial", "state", state["metric"], *spec["params"], "epochs", "error"]
    rows = [{"trial": f"t{t['trial']:03d}", "state": t["state"], state["metric"]: "" if t["value"] is None
             else f"{t['value']:.4f}", **{k: _short(v) for k, v in t["params"].items()}, "epochs": t["epochs"],
             "error": t["error"]} for t in ranked]
    return blocks + [("table", (rows, columns))]


def swept_setting(group: Group, keys: list[str]) -> dict:
    flat = flatten(group.records[0].config or {})
    return {key: flat.get(key) for key in keys}


def sweep_setting_words(best: Group, base: Group, result: dict, phase: str) -> str:
    """"cnn_head's sweep: train.lr 0.0031 against the base 0.017 (3 repeats each)": what the
    confirmation of a sweep compares (on seeds no trial used: the sweep's own section says so)."""
    keys = list((best.records[0].config or {}).get("sweep", {}).get("params", {}))
    changed = {k: v for k, v in swept_setting(best, keys).items() if v != swept_setting(base, keys)[k]}
    before = swept_setting(base, list(changed))
    repeats = f" ({len(best.records)} repeats each)" if len(best.records) > 1 else ""
    name = best.name if best.phase == phase else best.run_id
    if not changed:
        return f"{name}'s sweep found its base setting best; trained again{repeats} against it"
    base_words = ", ".join(_short(v) for v in before.values()) if len(before) == 1 else setting(before)
    return f"{name}'s sweep: {setting(changed)} against the base {base_words}{repeats}"
