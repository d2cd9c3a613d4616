"""Download, check and unpack the public datasets: MSD Task04 Hippocampus and ACDC.

Sources:

- **hippocampus**: ``Task04_Hippocampus.tar`` (MSD, CC-BY-SA 4.0) from the mirror that MONAI uses,
  URL and MD5 as in MONAI ``monai/apps/datasets.py``, ``DecathlonDataset.resource`` / ``.md5``.
  The archive unpacks to ``Task04_Hippocampus/`` (``dataset.json``, ``imagesTr``, ``labelsTr``,
  ``imagesTs``).
- **acdc**: the official Creatis "humanheart-project" database (CC BY-NC-SA 4.0, non-commercial
  research only; cite Bernard et al., IEEE TMI 2018): a zip of the ``database`` folder
  (``database/training``, ``database/testing``). No official checksum is published, so none is checked
  by default; the unpacked layout is verified with `read_acdc` instead.

Steps: stream the archive into a temporary folder inside ``to`` (tqdm bar), check its MD5, unpack it
there (refusing absolute paths, ``..`` and links), verify the layout with the readers, then rename the
dataset folder into place. On any failure nothing is left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from emfformer.data.acdc import acdc_base, read_acdc
from emfformer.data.cases import DataError
from emfformer.data.locate import DATASET_FOLDERS
from emfformer.data.msd import check_msd_dataset, read_msd_dataset
from emfformer.progress import tqdm

__all__ = ["DOWNLOADS", "DownloadSource", "download_dataset"]

_CHUNK = 1 << 20
_TIMEOUT_S = 60
_OFFLINE_HINT = (
    "If this machine has no internet access, download the archive on a machine that has, unpack it, "
    "and pass --data DIR (or set EMFFORMER_DATA=DIR)."
)


@dataclass(frozen=True)
class DownloadSource:
    """Where a dataset comes from and the folder it becomes under ``--to``."""

    url: str  # archive URL (tar, tar.gz or zip)
    md5: str | None  # MD5 of the archive, None when no official checksum exists
    folder: str  # name of the dataset folder created under `to`
    origin: str  # where url/md5 were taken from


DOWNLOADS: dict[str, DownloadSource] = {
    "hippocampus": DownloadSource(
        url="https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar",
        md5="9d24dba78a72977dbd1d2e110310f31b",
        folder=DATASET_FOLDERS["hippocampus"],
        origin="MONAI monai/apps/datasets.py, DecathlonDataset.resource/md5 (mirror of medicaldecathlon.com)",
    ),
    "acdc": DownloadSource(
        url="https://humanheart-project.creatis.insa-lyon.fr/database/api/v1/folder/637218e573e9f0047faa00fc/download",
        md5=None,
        folder=DATASET_FOLDERS["acdc"],
        origin="Creatis humanheart-project database, ACDC folder (https://www.creatis.insa-lyon.fr/Challenge/acdc/)",
    ),
}


def _fetch(url: str, target: Path, progress: bool) -> str:
    """Stream ``url`` into ``target``; return the MD5 hex digest."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "emfformer"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, target.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DataError(f"Cannot download {url}: {exc}. {_OFFLINE_HINT}") from exc
    return digest.hexdigest()


def _safe_target(dest: Path, name: str, archive: Path) -> Path:
    parts = Path(name.replace("\\", "/")).parts
    target = (dest / name).resolve()
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"Refusing to unpack {archive}: member {name!r} points outside the target folder.")
    if not target.is_relative_to(dest.resolve()):
        raise DataError(f"Refusing to unpack {archive}: member {name!r} points outside the target folder.")
    return target


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``dest`` without path traversal or links."""
    dest.mkdir(parents=True, exist_ok=True)
    with archive.open("rb") as f:
        is_zip = f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    if is_zip:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                _safe_target(dest, member.filename, archive)
            zf.extractall(dest)
        return
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _safe_target(dest, member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"Refusing to unpack {archive}: member {member.name!r} is a link or device."
                    )
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706 filters; members were checked above
                tf.extractall(dest, members=members)
    except tarfile.TarError as exc:
        raise DataError(
            f"{archive} is not a readable tar or zip archive ({exc}); the download may be damaged."
        ) from exc


def _find_root(name: str, extracted: Path) -> Path:
    """The dataset folder inside the unpacked archive (at most two levels down)."""
    levels = [extracted, *(p for p in extracted.iterdir() if p.is_dir())]
    levels += [q for p in levels[1:] for q in p.iterdir() if q.is_dir()]
    if name == "acdc":
        found = [p for p in levels if (p / "training").is_dir() or (p / "testing").is_dir()]
        expected = "training/ and testing/ (inside database/)"
    else:
        found = [p for p in levels if (p / "dataset.json").is_file()]
        expected = "dataset.json, imagesTr/, labelsTr/"
    if not found:
        raise DataError(f"The downloaded archive has no folder with {expected}; is it the right archive?")
    return found[0]


def _verify(name: str, root: Path, progress: bool) -> None:
    """Read the dataset with its reader; raise DataError if the layout or files are wrong."""
    if name == "acdc":
        base = acdc_base(root)
        read_acdc(base, "training")
        if (base / "testing").is_dir():
            read_acdc(base, "testing", require_labels=False)
    else:
        check_msd_dataset(read_msd_dataset(root, check=False), progress=progress)


def download_dataset(
    name: str, to: Path, url: str | None = None, md5: str | None = None, progress: bool = True
) -> Path:
    """Download a dataset archive, check it, and unpack it to ``to / <folder>``.

    Args:
        name: ``"hippocampus"`` (-> ``Task04_Hippocampus``) or ``"acdc"`` (-> ``ACDC``).
        to: parent folder; created if needed, e.g. `emfformer.data.locate.default_cache_dir()`.
        url: another URL for the archive (a mirror, a ``file://`` path, a test server). With a custom
            URL the official MD5 is not applied; pass ``md5`` to check one.
        md5: expected MD5 of the archive (overrides the official one). The official ACDC download has
            no published checksum, so ACDC is checked by its unpacked layout only.
        progress: show tqdm progress bars.

    Returns:
        The dataset folder ``to / <folder>``, ready for `read_dataset`. If it already exists and reads
        correctly, nothing is downloaded.

    Raises:
        ValueError: unknown ``name``.
        DataError: unreachable URL / offline (message names the URL and the error), checksum mismatch,
            unsafe or unreadable archive, wrong layout, or an existing but incomplete target folder.
            Nothing is left behind in these cases.
    """
    if name not in DOWNLOADS:
        raise ValueError(f"name must be one of {sorted(DOWNLOADS)}, got {name!r}.")
    source = DOWNLOADS[name]
    expected_md5 = md5 if url is not None else (md5 or source.md5)
    url = url or source.url
    to = Path(to).expanduser()
    dest = to / source.folder
    if dest.exists():
        try:
            _verify(name, dest, progress)
        except DataError as exc:
            raise DataError(
                f"{dest} exists but is not a complete {name} dataset ({exc}). Delete it and retry."
            ) from exc
        return dest
    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.folder}.download-", dir=to))
    ok = False
    try:
        archive = work / "archive"
        digest = _fetch(url, archive, progress)
        if expected_md5 and digest != expected_md5.lower():
            raise DataError(
                f"Checksum mismatch for {url}: MD5 {digest}, expected {expected_md5}. The download is damaged "
                "or the file changed; nothing was kept. Retry, or check the URL."
            )
        extracted = work / "extracted"
        _extract(archive, extracted)
        archive.unlink()
        root = _find_root(name, extracted)
        _verify(name, root, progress)
        try:
            os.rename(root, dest)
        except OSError as exc:
            raise DataError(f"Cannot move the unpacked dataset to {dest}: {exc}.") from exc
        ok = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not ok and created and not any(to.iterdir()):
            to.rmdir()
    return dest
