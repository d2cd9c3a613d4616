"""Print the markdown tables of docs/architecture.md: shapes after every stage and params per stage.

.venv/bin/python scripts/architecture_table.py
"""

from __future__ import annotations

import torch

from emfformer.models import create_model
from emfformer.models.stats import count_flops, count_params


def shapes(model, size: int = 224) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    hooks = [model.stem.register_forward_hook(lambda m, i, o: out.append(("stem", tuple(o.shape))))]
    for k, st in enumerate(model.stages):
        hooks.append(
            st.register_forward_hook(
                lambda m, i, o, k=k: out.append((f"encoder stage {k + 1}", tuple(o.shape)))
            )
        )
    for k, dec in enumerate(model.decoder):
        hooks.append(
            dec.register_forward_hook(
                lambda m, i, o, k=k: out.append((f"decoder stage {k + 1}", tuple(o.shape)))
            )
        )
    hooks.append(
        model.head.register_forward_hook(
            lambda m, i, o: out.append(("head (before x2 upsampling)", tuple(o.shape)))
        )
    )
    with torch.no_grad():
        y = model.eval()(torch.zeros(1, 1, size, size))
    out.append(("output logits", tuple(y.shape)))
    for h in hooks:
        h.remove()
    return out


def main() -> None:
    print("| tensor | shape (B, C, H, W) at 224x224, EMF-former-S |\n|---|---|")
    for name, shp in shapes(create_model("emf_former_s")):
        print(f"| {name} | {shp} |")
    print()
    names = ["emf_former_t", "emf_former_s", "emf_former_b", "emf_former_s_twin", "emf_former_s_twin_sdpa"]
    models = {n: create_model(n) for n in names}
    print("| part | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    parts = ["stem", *(f"stages.{i}" for i in range(4)), *(f"decoder.{i}" for i in range(3)), "head"]
    for part in parts:
        cells = [f"{count_params(m.get_submodule(part)) / 1e3:.1f} k" for m in models.values()]
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"**{count_params(m) / 1e6:.3f} M**" for m in models.values()) + " |")
    flops = [f"{count_flops(m, (1, 1, 224, 224)) / 1e9:.2f}" for m in models.values()]
    print("| GFLOPs @224² (=2·GMACs) | " + " | ".join(flops) + " |")


if __name__ == "__main__":
    main()
