"""What a run's section says about the pretrained weights it started from (timm's, from the Hub):
the file and its SHA-256, the licence (flagged where it does not allow commercial use), and the
size the weights were trained at where the run uses another. Read from metrics.json only."""
from __future__ import annotations

import re

PERMISSIVE = {"apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "cc0-1.0"}
Blocks = list[tuple[str, object]]


def licence_note(licence: str | None) -> str:
    """How the weights' licence reads in a report: plain where permissive, flagged otherwise."""
    if not licence or licence in ("unknown", "None"):
        return "licence not stated: check the model card before any use beyond research"
    if re.search(r"(^|[-_])nc([-_]|$)|noncommercial|non-commercial", licence.lower()):
        return f"{licence}: NON-COMMERCIAL, not for commercial use"
    if licence.lower() in PERMISSIVE:
        return licence
    return f"{licence}: a licence of its own, read its terms before commercial use"


def weights_blocks(metrics: dict, cfg: dict) -> Blocks:
    """Where a timm run's pretrained weights came from, their licence (flagged where not for commercial
    use) and the size they were trained at where the run uses another."""
    weights = metrics.get("weights")
    if not weights:
        return []
    line = (f"Pretrained weights: {weights['file']} (sha256 {str(weights['sha256'])[:12]}), licence "
            f"{licence_note(weights.get('license'))}; resized {weights['interpolation']}.")
    if weights.get("trained_at") and weights["trained_at"] != cfg["data"]["image_size"]:
        line += (f" The weights were trained at {weights['trained_at']} px; this run uses "
                 f"{cfg['data']['image_size']} px, so their features see objects at another scale.")
    return [("p", line)]
