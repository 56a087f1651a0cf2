"""``python -m bench [FILTER...]``: run every ``bench/bench_*.py`` module's ``main()``.

A filter selects the modules whose name contains it (``python -m bench simulator``; ``loadtest``,
``simulator``, ``operator``, ``autoscale`` (streams vs queue signal), ``independent``: Locust against
NVIDIA AIPerf, bench/README.md). A ``main()`` that returns a non-zero int (or raises) marks the run
failed; the others still run.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = discover()
    selected = [n for n in names if not argv or any(f in n for f in argv)]
    if not selected:
        print(f"no benchmark matches {argv}; available: {', '.join(names) or 'none'}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for name in selected:
        print(f"=== {name} ===", flush=True)
        start = time.monotonic()
        try:
            result = importlib.import_module(f"bench.{name}").main()
        except Exception:
            traceback.print_exc()
            result = 1
        print(
            f"=== {name}: {'ok' if not result else 'FAILED'} in {time.monotonic() - start:.1f} s ===\n",
            flush=True,
        )
        if result:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
