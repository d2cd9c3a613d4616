"""docs/reliability.md: every catalogue row names a test that exists, and there are at least 40 rows."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^`]*\])?`")


def _rows() -> list[tuple[str, list[tuple[str, str]]]]:
    text = (ROOT / "docs" / "reliability.md").read_text()
    catalogue = text.split("## Not covered by a test")[0]
    rows = []
    for line in catalogue.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: ") and not line.startswith("| #"):
            rows.append((line, NODE.findall(line)))
    return rows


def test_catalogue_has_at_least_40_rows_each_backed_by_a_test() -> None:
    rows = _rows()
    assert len(rows) >= 40, len(rows)
    for line, nodes in rows:
        assert nodes, f"row without a test node id: {line[:120]}"
        for path, name in nodes:
            source = ROOT / path
            assert source.is_file(), f"{path} (row: {line[:80]})"
            assert re.search(rf"^def {name}\(", source.read_text(), re.M), f"{path}::{name} does not exist"
