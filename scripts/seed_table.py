"""Mean ± std over seeds of evaluation folders, one markdown row per group.

    python scripts/seed_table.py "EMF-former-S=runs/s*/axis2/eval_test_tta" "UNet=runs/cmp/unet_s*/eval_test_tta"

Each argument is ``label=glob``; every folder the glob matches holds a ``metrics.json`` written by
``emfformer evaluate``. Prints fg Dice, fg mIoU and HD95 (mean ± sample std over the folders, in %/mm).
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
from pathlib import Path


def _stat(values: list[float], scale: float) -> str:
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    print("| model | seeds | Dice fg % | **mIoU fg %** | HD95 mm | per seed mIoU % |")
    print("|---|---:|---:|---:|---:|---|")
    for arg in argv:
        label, pattern = arg.split("=", 1)
        folders = sorted(glob.glob(pattern))
        if not folders:
            print(f"no folder matches {pattern!r}", file=sys.stderr)
            return 2
        summaries = [json.loads((Path(f) / "metrics.json").read_text())["summary"] for f in folders]
        dice, miou = [s["mean_dice_fg"] for s in summaries], [s["miou_fg"] for s in summaries]
        hd = [s["hd95_fg_mm"] for s in summaries]
        seeds = " / ".join(f"{100 * v:.2f}" for v in miou)
        print(
            f"| {label} | {len(folders)} | {_stat(dice, 100)} | **{_stat(miou, 100)}** | {_stat(hd, 1)} | {seeds} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
