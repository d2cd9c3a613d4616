"""Bench plots (bench/plots.py): the y axis carries numbers at every range, --quick sizes included."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from emfformer.bench.plots import scaling_figure


def _labels(low: float, high: float) -> list[str]:
    """The y tick labels inside the axes of a two-point latency plot from ``low`` to ``high`` ms."""
    points = [
        {"size": 64, "status": "ok", "latency_ms": low},
        {"size": 128, "status": "ok", "latency_ms": high},
    ]
    report = {"meta": {"scaling_reference": 64}, "scaling": {"emf_former_t": points}}
    fig = scaling_figure(report, "latency_ms", "latency, batch 1 (ms)")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]


@pytest.mark.parametrize("low, high", [(2.1, 2.3), (2.0, 6.5), (40.0, 900.0), (1.0, 5000.0)])
def test_latency_axis_has_numbers_at_quick_sizes_and_beyond(low: float, high: float) -> None:
    labels = _labels(low, high)
    assert len(labels) >= 3, labels  # a decade-only log axis showed none between 2 and 9 ms
    assert all(float(t) > 0 for t in labels)  # plain numbers, not 10^x mathtext
