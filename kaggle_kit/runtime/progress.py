"""One progress path for training, prediction, generation, benches and downloads.

- On a terminal (the stream is a TTY) a tqdm bar; everywhere else (Jupyter/Kaggle notebooks, CI,
  pipes, log files) plain lines, at most one every ``interval`` seconds plus a last one:
  ``predict: 120/300 rows (40%) | 35.2 rows/s | elapsed 0:03 | ETA 0:05``. A bar in a notebook
  or a log file leaves escape fragments (``\\x1b[A``) and carriage-return debris; a line does not.
  ``KIT_PROGRESS=bar|lines|off`` forces one style (tests, or a terminal recorded with ``script``).
- :func:`quiet_known_warnings`: the known-harmless third-party warnings, filtered only around the
  kit's own calls into the library (``warnings.catch_warnings`` plus a logging filter that is
  removed again on exit); nothing is silenced globally, and unknown warnings still show.

Standard library only at import time; tqdm (a dependency of transformers, so on Kaggle's image) is
imported only when a bar is actually drawn on a terminal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
import warnings
from typing import Callable, Optional

STYLE_ENV = "KIT_PROGRESS"

# (warning category name or "", message regex): harmless warnings a kit call triggers in a library.
KNOWN_WARNINGS = (
    # transformers 5 deprecates the property; peft's prepare_model_for_kbit_training / the Trainer
    # still read it. Nothing for a user to do.
    ("FutureWarning", r"`?is_gradient_checkpointing`? is deprecated"),
    # tqdm.auto in a Jupyter kernel without ipywidgets; the kit never draws bars there anyway.
    ("TqdmWarning", r".*IProgress not found.*"),
    # torch.utils.checkpoint asks for use_reentrant explicitly; the kit passes use_reentrant=False.
    ("UserWarning", r".*torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly.*"),
)
# (logger name, message regex): log records a library emits on every import/load and that do not apply.
KNOWN_LOG_RECORDS = (
    # bitsandbytes on a CPU-only machine tries the optional `kernels` hub package first; it then uses
    # its own CPU implementation. The record is a warning though nothing is wrong.
    ("bitsandbytes", r"Failed to load CPU gemm_4bit_forward from kernels-community"),
    ("", r"Failed to load CPU gemm_4bit_forward from kernels-community"),
)


_CPU_RATES = [False]  # set by cpu_rates(): every bar also shows units per CPU-second of this process


@contextlib.contextmanager
def cpu_rates():
    """Within the block every :class:`Progress` also shows units per CPU-second (benches on shared machines)."""
    was = _CPU_RATES[0]
    _CPU_RATES[0] = True
    try:
        yield
    finally:
        _CPU_RATES[0] = was


def style(stream=None) -> str:
    """'bar' on a terminal, 'lines' elsewhere; ``KIT_PROGRESS`` (bar, lines, off) overrides."""
    forced = os.environ.get(STYLE_ENV, "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    stream = stream if stream is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # closed or odd streams
        return "lines"


def on_terminal(stream=None) -> bool:
    return style(stream) == "bar"


def duration(seconds: Optional[float]) -> str:
    """``0:42``, ``12:03``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _plural(unit: str) -> str:
    if not unit or unit.endswith("s"):
        return unit
    return unit + ("es" if unit.endswith(("x", "ch", "sh")) else "s")


class Progress:
    """Progress of ``total`` units of work: a tqdm bar on a terminal, else plain throttled lines.

    ``log`` receives each plain line (default: print to stderr). ``extra`` is called for a short
    text appended to every line (e.g. rows per CPU-second). Thread-safe ``update``; use as a
    context manager or call ``close`` (which prints the last line: count, rate, time taken).
    """

    def __init__(self, total: Optional[int], desc: str, unit: str = "row", *, log: Optional[Callable] = None,
                 enabled: bool = True, interval: float = 15.0, extra: Optional[Callable[[], str]] = None, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.log = log or (lambda line: print(line, file=self.stream, flush=True))
        self.interval, self.extra = float(interval), extra
        self.mode = style(self.stream) if enabled else "off"
        self.done, self.t0, self._last = 0, time.monotonic(), time.monotonic()
        self.cpu0, self.show_cpu = time.process_time(), _CPU_RATES[0]
        self._lock = threading.Lock()
        self._closed = False
        self.postfix = ""
        self.bar = None
        if self.mode == "bar":
            from tqdm.std import tqdm  # the plain-terminal class: no notebook widget lookup

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream, leave=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def rate(self) -> Optional[float]:
        dt = time.monotonic() - self.t0
        return self.done / dt if dt > 0 and self.done else None

    def cpu_text(self) -> str:
        cpu = time.process_time() - self.cpu0
        return f"{self.done / cpu:,.1f} {_plural(self.unit)}/CPU-s" if cpu > 0 and self.done else f"- {_plural(self.unit)}/CPU-s"

    def line(self) -> str:
        rate = self.rate()
        elapsed = time.monotonic() - self.t0
        head = f"{self.desc}: {self.done:,}"
        if self.total:
            head += f"/{self.total:,} {_plural(self.unit)} ({self.done / self.total:.0%})"
        else:
            head += f" {_plural(self.unit)}"
        parts = [head, f"{rate:,.1f} {_plural(self.unit)}/s" if rate else f"- {_plural(self.unit)}/s"]
        if self.show_cpu:
            parts.append(self.cpu_text())
        if self.postfix:
            parts.append(self.postfix)
        if self.extra is not None:
            more = self.extra()
            if more:
                parts.append(more)
        timing = f"elapsed {duration(elapsed)}"
        if self.total and rate and self.done < self.total:
            timing += f", ETA {duration((self.total - self.done) / rate)}"
        parts.append(timing)
        return " | ".join(parts)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += int(n)
            if self.bar is not None:
                self.bar.update(int(n))
                more = [self.cpu_text()] if self.show_cpu else []
                more += [self.postfix] if self.postfix else []
                more += [self.extra()] if self.extra is not None else []
                if more:
                    self.bar.set_postfix_str(" | ".join(m for m in more if m), refresh=False)
                return
            now = time.monotonic()
            if self.mode == "lines" and now - self._last >= self.interval and (not self.total or self.done < self.total):
                self._last = now
                self.log(self.line())

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        """Extra figures shown beside the count (tqdm's name, so either can be passed around)."""
        self.postfix = text

    def write(self, text: str) -> None:
        """A line of its own that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.log(text)

    def close(self, summary: bool = True) -> None:
        """End the bar; ``summary`` prints the last line (count, rate, time taken)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.bar is not None:
                self.bar.close()
            if self.mode != "off" and summary:
                self.log(self.line())


def progress(total, desc, unit="row", **kwargs) -> Progress:
    """Shorthand for :class:`Progress`."""
    return Progress(total, desc, unit, **kwargs)


class _RecordFilter(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.pattern.search(record.getMessage())
        except Exception:  # noqa: BLE001 - a record that cannot format is not ours to drop
            return True


@contextlib.contextmanager
def quiet_known_warnings():
    """Hide only :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` while the block runs.

    Use it around the kit's own calls into transformers/peft/bitsandbytes (loading, training,
    predicting); every other warning still reaches the user, and the filters are gone afterwards.
    """
    added = []
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            cat = _category(category)
            if cat is not None:
                warnings.filterwarnings("ignore", message=message, category=cat)
        for name, pattern in KNOWN_LOG_RECORDS:
            logger = logging.getLogger(name)
            flt = _RecordFilter(pattern)
            logger.addFilter(flt)
            targets = [logger]
            handlers = list(logger.handlers) + list(logging.getLogger().handlers)
            if logging.lastResort is not None:  # what prints a record when nobody configured logging
                handlers.append(logging.lastResort)
            for handler in handlers:
                handler.addFilter(flt)
                targets.append(handler)
            added.append((flt, targets))
        hf = _library_bars_off() if style() != "bar" else None
        try:
            yield
        finally:
            if hf is not None:
                hf.enable_progress_bar()
            for flt, targets in added:
                for t in targets:
                    t.removeFilter(flt)


def _library_bars_off():
    """Off transformers' own bars (weight loading) where bars do not render; returns the module to turn them on again."""
    try:
        from transformers.utils import logging as hf
    except ImportError:  # pragma: no cover
        return None
    if not hf.is_progress_bar_enabled():
        return None
    hf.disable_progress_bar()
    return hf


def _category(name: str):
    builtin = {"FutureWarning": FutureWarning, "UserWarning": UserWarning, "DeprecationWarning": DeprecationWarning}
    if name in builtin:
        return builtin[name]
    if name == "TqdmWarning":
        mod = sys.modules.get("tqdm")
        if mod is None:
            try:
                import tqdm as mod  # noqa: PLC0415 - only to name the category; tqdm comes with transformers
            except ImportError:
                return None
        return getattr(mod, "TqdmWarning", None)
    return None


def recorder(decisions: list, log: Optional[Callable] = None) -> Callable:
    """``decide(msg)`` for a run: keeps each decision (repair, fill, re-run, budget step) in ``decisions``
    (for the result and ``--json``) and logs it."""

    def decide(msg: str) -> None:
        decisions.append(msg)
        if log is not None:
            log(msg)

    return decide
