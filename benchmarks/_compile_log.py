"""Run the ``tagger`` command and record every kernel it compiles (not those it loads from the
cache): function, signature and seconds, nested compilations included.

Usage::

    python benchmarks/_compile_log.py LOG.json train sample-ner -o model.tagger --quiet

The log is a JSON list of ``{"function", "signature", "seconds", "depth"}``, in the order the
compilations ended; depth 0 is a compilation started by Python code (its seconds include those of
the functions compiled inside it).
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time

from numba.core import event


class _Recorder(event.Listener):
    def __init__(self):
        self.entries: list[dict] = []
        self._stack = threading.local()

    def _starts(self) -> list:
        if not hasattr(self._stack, "starts"):
            self._stack.starts = []
        return self._stack.starts

    def on_start(self, ev) -> None:
        self._starts().append(time.perf_counter())

    def on_end(self, ev) -> None:
        starts = self._starts()
        started = starts.pop()
        data = ev.data or {}
        dispatcher = data.get("dispatcher")
        func = getattr(dispatcher, "py_func", None)
        name = f"{func.__module__}.{func.__qualname__}" if func is not None else str(dispatcher)
        self.entries.append({"function": name, "signature": str(data.get("args", ""))[:200],
                             "seconds": time.perf_counter() - started, "depth": len(starts)})


def main() -> None:
    log_path, argv = sys.argv[1], sys.argv[2:]
    recorder = _Recorder()
    event.register("numba:compile", recorder)

    def dump() -> None:
        with open(log_path, "w", encoding="utf-8") as fh:
            json.dump(recorder.entries, fh, indent=1)

    atexit.register(dump)
    from tagger.cli import main as tagger_main

    sys.argv = ["tagger", *argv]
    tagger_main()


if __name__ == "__main__":
    main()
