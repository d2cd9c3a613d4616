"""download_dataset against a local HTTP server serving synthetic archives (never the internet)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emfformer.data.cases import DataError
from emfformer.data.download import DOWNLOADS, download_dataset
from emfformer.data.msd import read_msd_dataset
from emfformer.data.synthetic import write_acdc_phantoms, write_msd_phantoms


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, base URL) of a local HTTP server serving that folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def hippo_tar(served: tuple[Path, str], tmp_path: Path) -> tuple[str, str]:
    """URL and MD5 of a synthetic Task04_Hippocampus.tar."""
    folder, base = served
    task = write_msd_phantoms(tmp_path / "build" / "Task04_Hippocampus", n_cases=3, shape=(12, 12, 10))
    archive = folder / "Task04_Hippocampus.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(task, arcname="Task04_Hippocampus")
    return f"{base}/{archive.name}", _md5(archive)


def _left(to: Path) -> list[str]:
    return sorted(p.name for p in to.iterdir()) if to.exists() else []


def test_official_sources() -> None:
    assert DOWNLOADS["hippocampus"].url.endswith("/Task04_Hippocampus.tar")
    assert DOWNLOADS["hippocampus"].md5 == "9d24dba78a72977dbd1d2e110310f31b"
    assert DOWNLOADS["acdc"].url.startswith("https://humanheart-project.creatis.insa-lyon.fr/")
    assert DOWNLOADS["acdc"].md5 is None


def test_download_hippocampus(hippo_tar: tuple[str, str], tmp_path: Path) -> None:
    url, md5 = hippo_tar
    to = tmp_path / "cache"
    dest = download_dataset("hippocampus", to, url=url, md5=md5, progress=False)
    assert dest == to / "Task04_Hippocampus"
    assert _left(to) == ["Task04_Hippocampus"]  # no temp folder or archive left
    assert len(read_msd_dataset(dest).cases) == 3
    # already there: returned without downloading (this URL would fail)
    assert download_dataset("hippocampus", to, url="http://127.0.0.1:1/x.tar", progress=False) == dest


def test_bad_checksum(hippo_tar: tuple[str, str], tmp_path: Path) -> None:
    url, _ = hippo_tar
    to = tmp_path / "cache"
    with pytest.raises(DataError, match="Checksum mismatch"):
        download_dataset("hippocampus", to, url=url, md5="0" * 32, progress=False)
    assert not to.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(DataError, match="Checksum mismatch"):
        download_dataset("hippocampus", existing, url=url, md5="0" * 32, progress=False)
    assert _left(existing) == []


def test_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.tar"
    with pytest.raises(DataError, match=r"Cannot download http://127\.0\.0\.1:\d+/x\.tar: .*EMFFORMER_DATA"):
        download_dataset("hippocampus", tmp_path / "to", url=url, progress=False)
    assert not (tmp_path / "to").exists()


def test_http_error(served: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="404"):
        download_dataset("hippocampus", tmp_path / "to", url=f"{served[1]}/missing.tar", progress=False)


def test_path_traversal_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    with tarfile.open(folder / "evil.tar", "w") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="outside the target folder"):
        download_dataset("hippocampus", tmp_path / "to", url=f"{base}/evil.tar", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "to").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_devices_in_a_tar_are_refused(
    served: tuple[Path, str], tmp_path: Path, kind: bytes
) -> None:
    folder, base = served
    with tarfile.open(folder / "links.tar", "w") as tf:
        info = tarfile.TarInfo("Task04_Hippocampus/dataset.json")
        info.type, info.linkname = kind, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="is a link or device"):
        download_dataset("hippocampus", tmp_path / "to", url=f"{base}/links.tar", progress=False)
    assert not (tmp_path / "to").exists()


def test_wrong_layout(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    with zipfile.ZipFile(folder / "other.zip", "w") as zf:
        zf.writestr("something/readme.txt", "not a dataset")
    with pytest.raises(DataError, match="no folder with dataset.json"):
        download_dataset("hippocampus", tmp_path / "to", url=f"{base}/other.zip", progress=False)
    (folder / "junk.tar").write_bytes(b"neither tar nor zip" * 100)
    with pytest.raises(DataError, match="not a readable tar or zip"):
        download_dataset("hippocampus", tmp_path / "to", url=f"{base}/junk.tar", progress=False)


def test_download_acdc_zip(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    build = write_acdc_phantoms(
        tmp_path / "build" / "database",
        {"training": [1, 2], "testing": [101]},
        size=(20, 20),
        n_slices=(2, 2),
    )
    with zipfile.ZipFile(folder / "acdc.zip", "w") as zf:
        for path in sorted(build.rglob("*")):
            zf.write(path, path.relative_to(build.parent).as_posix())
    to = tmp_path / "cache"
    dest = download_dataset("acdc", to, url=f"{base}/acdc.zip", progress=False)
    assert dest == to / "ACDC" and _left(to) == ["ACDC"]
    assert sorted(p.name for p in dest.iterdir()) == ["testing", "training"]
