"""Weights on the Hugging Face Hub (timm's), found or fetched before a study trains, and verified.

Where a file is looked for, in order:
1. the Hugging Face cache (`HF_HOME`/`HF_HUB_CACHE`), where `huggingface_hub` keeps what it fetched;
2. `$TORCH_HOME/hub/checkpoints/hf/<repo>/<file>`: put there by hand or fetched from `CNNSTUDY_MIRROR`
   (`<mirror>/hf/<repo>/<file>`).
Fetching goes through `huggingface_hub.hf_hub_download`, which honours `HF_ENDPOINT` (a private hub
or proxy) and `HF_HUB_OFFLINE`. A cached file is checked against the Hub's SHA-256 of it (an LFS
file's ETag, which the cache names its blob by); one that does not match is deleted and named.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..data.fetch import FetchError, RemoteFile, download, head_error
from ..fileio import file_digest

SHA256 = re.compile(r"^[0-9a-f]{64}$")
PROBE_TIMEOUT_S = 10
_unreachable: dict[str, str] = {}  # endpoint -> why: asked once per process, not once per file with retries
_verified: dict[tuple, str] = {}  # (path, size, mtime) -> sha256, so a file is hashed once per process


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@dataclass(frozen=True)
class HubWeights:
    model: str  # as the study names it, e.g. timm/convnext_nano.in12k_ft_in1k
    repo: str
    filename: str

    @property
    def store_path(self) -> Path:
        """Where a hand-placed or mirrored copy lives."""
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / "hf" / self.repo / self.filename

    def local(self) -> Path | None:
        """The verified file on this machine, or None; reads no network."""
        cached = _from_hf_cache(self.repo, self.filename)
        if cached is not None:
            verify_blob(cached, self)
            return cached
        if not self.store_path.is_file():
            return None
        check_readable(self.store_path, self)  # a mirror or a hand gives no hash to check against
        return self.store_path

    def sha256(self, path: Path) -> str:
        """The file's SHA-256: the cache's blob name where it is one (verified by `local`), else hashed."""
        blob = path.resolve().name
        return blob if SHA256.match(blob) else digest_once(path)

    def instructions(self) -> str:
        return (f"{self.model} weights: {self.filename} of {hub_endpoint()}/{self.repo} -> run `cnnstudy data "
                f"fetch --study <study file>` where the Hub is reachable (or set HF_ENDPOINT / CNNSTUDY_MIRROR), "
                f"or put the file at {self.store_path}")

    def fetch(self) -> Path:
        found = self.local()
        if found is not None:
            return found
        if os.environ.get("CNNSTUDY_MIRROR", "").strip():
            remote = RemoteFile(f"{hub_endpoint()}/{self.repo}/resolve/main/{self.filename}")
            return download(remote, self.store_path, f"hf/{self.repo}", self.store_path.parent)
        if hf_offline():
            raise FetchError("HF_HUB_OFFLINE is set, so the Hub is not asked")
        probe(f"{hub_endpoint()}/{self.repo}/resolve/main/{self.filename}")
        return self._from_hub()

    def _from_hub(self) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(self.repo, self.filename))
        except Exception as err:  # noqa: BLE001 - offline, unreachable, 404, gated: all end the same way
            raise FetchError(f"cannot fetch {self.filename} of {self.repo} from {hub_endpoint()} "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        verify_blob(path, self)
        return path


def probe(url: str) -> None:
    """Stop at once where the Hub cannot be reached at all (huggingface_hub would retry each file with
    backoff, over a minute per file); any HTTP answer, even an error, means it can."""
    endpoint = hub_endpoint()
    if endpoint not in _unreachable:
        _unreachable[endpoint] = head_error(url, PROBE_TIMEOUT_S) or ""
    if _unreachable[endpoint]:
        raise FetchError(f"cannot reach {endpoint} ({_unreachable[endpoint]})")


def digest_once(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_digest(path)
    return _verified[key]


def check_readable(path: Path, item: "HubWeights") -> None:
    """A file without a published hash to check must at least be a whole safetensors file."""
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as err:  # noqa: BLE001 - truncated, not safetensors at all: all the same to the user
        raise FetchError(f"{path} is not a readable safetensors file ({err}); delete it and fetch "
                         f"{item.repo}/{item.filename} again") from None


def _from_hf_cache(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def verify_blob(path: Path, item: HubWeights) -> None:
    """A cached Hub file against the SHA-256 its blob is named by (the Hub's ETag of an LFS file);
    a mismatch deletes the blob and its link, so the next fetch gets it again."""
    blob = path.resolve()
    if not SHA256.match(blob.name):
        return  # a small non-LFS file: the Hub gives a git hash, not a SHA-256, to check against
    actual = digest_once(blob)
    if actual != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise FetchError(f"{item.repo}/{item.filename} in the Hugging Face cache has sha256 {actual}, but the Hub "
                         f"published {blob.name}; the file was deleted. Fetch it again (cnnstudy data fetch --study); if "
                         "it keeps failing, the Hub or the proxy at HF_ENDPOINT serves another file")
