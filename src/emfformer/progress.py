"""Progress bars: tqdm on a terminal, plain periodic lines when output goes to a file or a pipe.

A redirected tqdm bar writes a carriage return per update, so a log file of a training fills with
thousands of overwritten bar states on one line. Off a terminal this module's `tqdm` prints one plain
line at most every 30 seconds (and the final state), which reads well in ``train.log`` and in CI.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm as _tqdm

__all__ = ["tqdm", "PLAIN_INTERVAL_S"]

PLAIN_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns each carriage-return update into one line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _PlainTqdm(_tqdm):
    """A bar whose postfix and description wait for the next periodic line instead of forcing one (tqdm
    redraws at once on every ``set_postfix`` by default: a line per training step in a log file)."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = False, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = False) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = False) -> None:
        super().set_description(desc, refresh=False)


def tqdm(*args: Any, **kwargs: Any) -> _tqdm:
    """`tqdm.auto.tqdm` with the same arguments; off a terminal: plain lines every 30 s, ASCII."""
    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return _tqdm(*args, **kwargs)
    kwargs.update(file=_Lines(stream), ascii=True, dynamic_ncols=False, ncols=100)
    kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), PLAIN_INTERVAL_S)
    kwargs["maxinterval"] = max(float(kwargs.get("maxinterval", 10.0)), PLAIN_INTERVAL_S)
    return _PlainTqdm(*args, **kwargs)
