"""Getting a file from the internet (or a mirror) onto disk, verified, once.

- A download goes to `<file>.part` and resumes with an HTTP Range request after a cut.
- The file is checked (size, then MD5 or SHA-256 as published) before anything uses it; a
  mismatch deletes it and says so.
- `CNNSTUDY_MIRROR` replaces the publishers' hosts: a URL or a folder holding `<group>/<file name>`
  (group: the dataset name, or `torchvision` for weights). Checksums still apply.
- Whatever a fetch installs is built in a temporary folder and renamed into place, under a lock
  (`fcntl.flock`) so that two processes fetching the same thing do not both write it.
"""
from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from ..fileio import file_digest
from .errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

CHUNK = 1 << 20
TIMEOUT_S = 60
ATTEMPTS = 3


class FetchError(DataError):
    """A download that failed or did not verify; the message names the URL and where to put the file."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    md5: str | None = None  # as published by the maintainers
    sha256: str | None = None
    size: int | None = None  # bytes, where published
    sha256_prefix: str | None = None  # torch.hub's convention: the file name carries its hash's start

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def source_url(remote: RemoteFile, group: str) -> str:
    """The publisher's URL, or the mirror's copy of it."""
    mirror = os.environ.get("CNNSTUDY_MIRROR", "").strip()
    if not mirror:
        return remote.url
    if "://" not in mirror:
        return Path(mirror, group, remote.name).resolve().as_uri()
    return f"{mirror.rstrip('/')}/{group}/{remote.name}"


def head_error(url: str, seconds: float) -> str | None:
    """Why `url`'s host does not answer a HEAD request within `seconds`, or None where it answers: any
    HTTP answer, even an error, means the host is reachable."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=seconds).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))
    return None


def unreachable(remote: RemoteFile, group: str, seconds: float = 3.0) -> str | None:
    """Why `remote` cannot be fetched from here (its host, or the mirror's, does not answer within
    `seconds`, or the mirror folder lacks it), or None where it can."""
    url = source_url(remote, group)
    if url.startswith("file:"):
        return None if Path(urllib.request.url2pathname(url[5:])).is_file() else f"not in the mirror: {url}"
    return head_error(url, seconds)


def verify(path: Path, remote: RemoteFile) -> None:
    """Size and published checksum; a file that fails is deleted."""
    problem = None
    if remote.size is not None and path.stat().st_size != remote.size:
        problem = f"{path.stat().st_size:,} bytes where {remote.size:,} are published"
    elif remote.sha256_prefix:
        actual = file_digest(path, "sha256")
        problem = None if actual.startswith(remote.sha256_prefix) else \
            f"sha256 {actual}, the file name says {remote.sha256_prefix}..."
    else:
        for algorithm in ("sha256", "md5"):
            expected = getattr(remote, algorithm)
            if expected:
                actual = file_digest(path, algorithm)
                problem = None if actual == expected else f"{algorithm} {actual}, published {expected}"
                break
    if problem:
        path.unlink()
        raise FetchError(f"{remote.name} does not match its published checksum ({problem}); the download was "
                         f"deleted. Fetch it again; if it keeps failing, the source ({remote.url}) or the mirror "
                         "serves another file")


def download(remote: RemoteFile, target: Path, group: str, manual_folder: Path) -> Path:
    """`target` holds the verified file afterwards (one already there, e.g. put by hand, is checked too)."""
    if target.exists():
        verify(target, remote)
        return target
    url = source_url(remote, group)
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(ATTEMPTS):
        try:
            _transfer(url, part, remote.name)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
            if attempt == ATTEMPTS - 1:  # the .part stays: the next fetch resumes it
                raise _cannot(url, err, remote, manual_folder) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            raise _cannot(url, err, remote, manual_folder) from None
    part.replace(target)
    verify(target, remote)
    return target


def _cannot(url: str, err: Exception, remote: RemoteFile, manual_folder: Path) -> FetchError:
    reason = getattr(err, "reason", None) or err
    return FetchError(f"cannot download {url} ({reason}). Without internet, put {remote.name} into "
                      f"{manual_folder} by hand (or set CNNSTUDY_MIRROR)")


def _transfer(url: str, part: Path, label: str) -> None:
    """Fetch `url` into `part`, resuming where an earlier attempt stopped."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: an earlier attempt got it all
            return
        raise
    with response:
        resumed = have and getattr(response, "status", None) == 206
        total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
        with open(part, "ab" if resumed else "wb") as out, tqdm(
                total=total or None, initial=have if resumed else 0, unit="B", unit_scale=True,
                desc=f"fetching {label}", leave=False, dynamic_ncols=True) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    if total and part.stat().st_size < total:
        raise ConnectionError(f"connection closed after {part.stat().st_size:,} of {total:,} bytes")


@contextmanager
def install_lock(folder: Path, name: str) -> Iterator[None]:
    """Exclusive, waiting lock for installing `name` into `folder`: a second fetch waits, then finds it done."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A temporary folder beside `final`, renamed into place on success and removed on failure."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
