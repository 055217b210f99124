"""Fetching datasets and weights, against a server on 127.0.0.1 (no internet here): verified,
resumed, locked, refused with one clear line."""
import gzip
import hashlib
import http.server
import io
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from cnnstudy.config import StudyError
from cnnstudy.data import catalogue
from cnnstudy.data.catalogue import CATALOGUE, Entry, fetch_dataset
from cnnstudy.data.errors import DataError
from cnnstudy.data.fetch import RemoteFile
from cnnstudy.data.sources import scan_folder
from cnnstudy.runner.study import run_study

from helpers import SHARED_DATA, make_image_folder, write_study


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files with Range support; `cut` files send half their bytes on a full request."""
    cut: set = set()
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        Handler.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if path.name in Handler.cut and not start:
            body = body[: len(body) // 2]  # the connection drops halfway
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: Handler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Handler.cut, Handler.requests = set(), []
    home = tmp_path / "home"
    monkeypatch.setenv("CNNSTUDY_DATA", str(home))
    monkeypatch.setenv("CNNSTUDY_MIRROR", f"http://127.0.0.1:{httpd.server_port}")
    monkeypatch.delenv("CNNSTUDY_OFFLINE")
    yield root, home
    httpd.shutdown()


def tiny_archive(tmp_path) -> bytes:
    folder = make_image_folder(tmp_path / "src" / "tiny_data" / "train", classes=("ant", "bee"), per_class=4)
    make_image_folder(folder.parent / "val", classes=("ant", "bee"), per_class=2, seed=1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        bundle.add(folder.parent, arcname="tiny_data")
    return buffer.getvalue()


def publish(root: Path, monkeypatch, data: bytes, md5: str | None = None, counts=None) -> Entry:
    (root / "tiny").mkdir(exist_ok=True)
    (root / "tiny" / "tiny.tgz").write_bytes(data)
    entry = Entry("tiny", (RemoteFile("https://example.org/data/tiny.tgz", md5=md5),), 2, 12, 1, "MIT", "-", "-",
                  "train/{ant,bee}, val/{ant,bee}", catalogue._unpack_single_folder, counts)
    monkeypatch.setitem(CATALOGUE, "tiny", entry)
    return entry


def test_a_good_archive_is_fetched_verified_and_laid_out(server, tmp_path, monkeypatch):
    root, home = server
    data = tiny_archive(tmp_path)
    publish(root, monkeypatch, data, hashlib.md5(data).hexdigest())
    folder = fetch_dataset("tiny", log=lambda _: None)
    assert folder == home / "tiny"
    source = scan_folder(folder)
    assert source.classes == ["ant", "bee"] and source.layout.folders == {"train": "train", "val": "val"}
    assert sorted(p.name for p in home.iterdir()) == [".tiny.lock", "downloads", "tiny"]
    assert not any((home / "downloads").iterdir())  # the archive is removed once installed
    assert fetch_dataset("tiny") == folder and len(Handler.requests) == 1  # present: not fetched again


def test_a_tampered_byte_is_refused_and_nothing_is_left(server, tmp_path, monkeypatch):
    root, home = server
    data = tiny_archive(tmp_path)
    publish(root, monkeypatch, data[:100] + bytes([data[100] ^ 1]) + data[101:], hashlib.md5(data).hexdigest())
    with pytest.raises(DataError, match="tiny.tgz does not match its published checksum.*deleted"):
        fetch_dataset("tiny")
    assert not (home / "tiny").exists() and not list((home / "downloads" / "tiny").iterdir())


def test_a_download_cut_halfway_resumes_with_a_range_request(server, tmp_path, monkeypatch):
    root, home = server
    data = tiny_archive(tmp_path)
    publish(root, monkeypatch, data, hashlib.md5(data).hexdigest())
    Handler.cut = {"tiny.tgz"}
    assert scan_folder(fetch_dataset("tiny", log=lambda _: None)).classes == ["ant", "bee"]
    assert Handler.requests[0][1] is None and Handler.requests[1][1] == f"bytes={len(data) // 2}-"


def test_without_a_checksum_the_image_counts_are_checked(server, tmp_path, monkeypatch):
    root, home = server
    publish(root, monkeypatch, tiny_archive(tmp_path), counts={"train": 8, "val": 5})
    with pytest.raises(DataError, match="holds 4 images in val/ where 5 are expected"):
        fetch_dataset("tiny")
    assert not (home / "tiny").exists()


def test_404_and_refused_connection_name_the_url_and_the_folder(server, tmp_path, monkeypatch):
    root, home = server
    publish(root, monkeypatch, b"unused")
    (root / "tiny" / "tiny.tgz").unlink()
    with pytest.raises(DataError) as caught:
        fetch_dataset("tiny")
    message = str(caught.value)
    assert "/tiny/tiny.tgz (Not Found)" in message and f"put tiny.tgz into {home / 'downloads' / 'tiny'}" in message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("CNNSTUDY_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DataError, match=f"cannot download http://127.0.0.1:{port}/tiny/tiny.tgz .*refused"):
        fetch_dataset("tiny")


def test_two_fetches_at_once_end_with_one_intact_copy(server, tmp_path, monkeypatch):
    root, home = server
    data = tiny_archive(tmp_path)
    publish(root, monkeypatch, data, hashlib.md5(data).hexdigest())
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_dataset("tiny", log=lambda _: None))
        except Exception as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [home / "tiny"] * 3
    assert len(Handler.requests) == 1 and sum(1 for _ in (home / "tiny").rglob("*.png")) == 12
    assert [p.name for p in home.iterdir() if p.name.startswith(".tiny.tmp")] == []


def test_offline_stops_with_the_url_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSTUDY_DATA", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"(?s)offline.*hymenoptera_data.zip from https://download.pytorch.org/"
                                        r"tutorial/hymenoptera_data.zip -> put it in .*home/downloads/hymenoptera/"):
        fetch_dataset("hymenoptera", offline=True)


def test_a_study_needing_missing_weights_stops_before_training(tmp_path, monkeypatch, image_folder):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CNNSTUDY_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("CNNSTUDY_OFFLINE")
    phases = ("\n  - name: p1\n    runs:\n      - {name: base, model: cnn_slim}\n"
              "  - name: p4\n    runs:\n      - {name: r50, model: {name: resnet50, pretrained: true}}\n")
    study = write_study(tmp_path / "s.yaml", image_folder, phases)
    with pytest.raises(StudyError) as caught:
        run_study(study, out_dir=tmp_path / "runs", log=lambda _: None)
    message = str(caught.value)
    assert "nothing was trained" in message
    assert "resnet50 weights: resnet50-11ad3fa6.pth from https://download.pytorch.org/models/resnet50-11ad3fa6.pth" \
           in message and "hub/checkpoints/" in message
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()
    monkeypatch.setenv("CNNSTUDY_OFFLINE", "1")
    with pytest.raises(StudyError, match="--offline forbids fetching them; nothing was trained:\n  resnet50 weights"):
        run_study(study, out_dir=tmp_path / "runs", log=lambda _: None)


def test_the_real_fashion_mnist_files_are_checked_against_the_published_md5s(server, monkeypatch):
    """Zalando's .gz files carry their file name in the gzip header; a re-packed copy (Debian's drops
    it) holds the same images but cannot match the published MD5s, and must be refused as such."""
    shared = SHARED_DATA / "fashion-mnist"
    if not shared.is_dir():
        pytest.skip(f"shared dataset 'fashion-mnist' not found at {shared}")
    root, home = server
    shutil.copytree(shared, root / "fashion-mnist")
    upstream_headers = all(gzip_has_name(p) for p in shared.glob("*.gz"))
    if upstream_headers:
        folder = fetch_dataset("fashion-mnist", log=lambda _: None)
        assert sorted(p.name for p in folder.glob("*.gz")) == sorted(f.name for f in CATALOGUE["fashion-mnist"].files)
    else:
        with pytest.raises(DataError, match="does not match its published checksum \\(md5 "):
            fetch_dataset("fashion-mnist", log=lambda _: None)
        assert not (home / "fashion-mnist").exists()
    for remote in CATALOGUE["fashion-mnist"].files:  # the images themselves are intact either way
        with gzip.open(shared / remote.name) as handle:
            assert handle.read(4) == bytes([0, 0, 8, 3 if "images" in remote.name else 1])


def gzip_has_name(path: Path) -> bool:
    with open(path, "rb") as handle:
        return bool(handle.read(4)[3] & 0x08)  # FNAME flag


def test_extraction_refuses_paths_outside_the_folder(tmp_path):
    from cnnstudy.data.archives import extract

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        bundle.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "evil.tgz").write_bytes(buffer.getvalue())
    (tmp_path / "out").mkdir()
    with pytest.raises(tarfile.TarError):
        extract(tmp_path / "evil.tgz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
