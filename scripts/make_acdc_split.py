"""Generate the published ACDC patient split ``src/emfformer/splits/acdc_split.json``.

The 100 official training patients come in blocks of 20 per pathology group (001-020 DCM, 021-040 HCM,
041-060 MINF, 061-080 NOR, 081-100 RV). Per group, a seeded shuffle picks 14 train / 2 val / 4 test
patients, giving 70 / 10 / 20 overall. The 50 official testing patients (101-150) form
``external_test``. The seed is recorded in the JSON; re-running with it reproduces the file exactly.

Usage::

    python scripts/make_acdc_split.py [--seed 2017] [--out src/emfformer/splits/acdc_split.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from emfformer.io import atomic_write_text

DEFAULT_SEED = 2017
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "emfformer" / "splits" / "acdc_split.json"
GROUP_BLOCKS = {"DCM": (1, 20), "HCM": (21, 40), "MINF": (41, 60), "NOR": (61, 80), "RV": (81, 100)}
PER_GROUP = {"train": 14, "val": 2, "test": 4}


def make_split(seed: int = DEFAULT_SEED) -> dict:
    """Build the split dict (patient ids as ``patientXXX``) with a stratified, seeded draw."""
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {name: [] for name in PER_GROUP}
    groups: dict[str, list[str]] = {}
    for group, (first, last) in GROUP_BLOCKS.items():
        patients = [f"patient{i:03d}" for i in range(first, last + 1)]
        groups[group] = patients
        shuffled = patients[:]
        rng.shuffle(shuffled)
        start = 0
        for name, count in PER_GROUP.items():
            parts[name].extend(shuffled[start : start + count])
            start += count
    return {
        "dataset": "ACDC",
        "description": (
            "Patient-level split of the 100 official ACDC training patients into 70 train / 10 val / "
            "20 test (14/2/4 per pathology group); external_test = the 50 official testing patients. "
            "Both ED and ES frames of a patient belong to the same part."
        ),
        "generator": "scripts/make_acdc_split.py",
        "seed": seed,
        "groups": groups,
        "train": sorted(parts["train"]),
        "val": sorted(parts["val"]),
        "test": sorted(parts["test"]),
        "external_test": [f"patient{i:03d}" for i in range(101, 151)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the per-group shuffle")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the split JSON")
    args = parser.parse_args(argv)
    atomic_write_text(args.out, json.dumps(make_split(args.seed), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
