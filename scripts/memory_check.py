"""Peak RSS of one training epoch's data loading as the dataset grows (the bounded-memory claim).

    python scripts/memory_check.py [--cases 8 16 32] [--shape 256 256 24]

For each size, a fresh process writes a synthetic CT dataset of N cases (nnU-Net layout), preprocesses
it into the memory-mapped store and draws every patch of one epoch through `PatchDataset`, then
reports its peak RSS (``ru_maxrss``) and the size of the preprocessed arrays on disk. Flat RSS while the
store grows = training data is streamed from disk, not held in RAM.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _child(n: int, shape: list[int]) -> dict:
    from emfformer.data.msd import read_msd_dataset
    from emfformer.data.patches import PatchDataset
    from emfformer.data.preprocess import PreprocessConfig
    from emfformer.data.store import preprocess_cases
    from emfformer.data.synthetic_nnunet import write_nnunet_dataset

    tmp = Path(tempfile.mkdtemp())
    info = read_msd_dataset(
        write_nnunet_dataset(tmp / "ct", "ct", n_cases=n, shape=tuple(shape)), check=False
    )
    stored = preprocess_cases(info.cases, PreprocessConfig(size=128), tmp / "store", progress=False)
    after_preprocess = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds = PatchDataset(stored, 128, context=3)
    total = 0.0
    for i in range(len(ds)):
        total += float(ds[i]["image"][0, 0, 0])
    disk = sum(p.stat().st_size for p in (stored[0].image.parent).glob("*.npy"))
    return {"cases": n, "slices": len(ds), "store_mib": disk / 2**20,
            "peak_rss_mib_preprocess": after_preprocess / 1024,
            "peak_rss_mib_epoch": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_growth_in_epoch_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--shape", type=int, nargs=3, default=[256, 256, 24])
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.shape)))
        return
    print("| cases | slices | store on disk MiB | peak RSS MiB (epoch) | RSS growth during the epoch MiB |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.cases:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--shape", *map(str, args.shape)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['cases']} | {r['slices']} | {r['store_mib']:.0f} | {r['peak_rss_mib_epoch']:.0f} | "
              f"{r['rss_growth_in_epoch_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
