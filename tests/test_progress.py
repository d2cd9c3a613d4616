from __future__ import annotations

import io

from emfformer.progress import tqdm


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_plain_lines_without_carriage_returns() -> None:
    out = io.StringIO()
    for _ in tqdm(range(500), desc="epoch 1", file=out):
        pass
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3 and "500/500" in lines[-1]  # not one line per update


def test_a_postfix_per_step_does_not_force_a_line_per_step() -> None:
    out = io.StringIO()
    bar = tqdm(range(500), desc="epoch 1", file=out)
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")  # what the training loop does every step
        bar.set_postfix_str(f"step {i}")
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and "500/500" in lines[-1]


def test_on_a_terminal_it_is_the_usual_bar() -> None:
    out = _Tty()
    for _ in tqdm(range(5), desc="x", file=out, mininterval=0):
        pass
    assert "\r" in out.getvalue()
