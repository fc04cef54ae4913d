"""`python -m bench [names...]`: run the benchmarks (all by default), one JSON line each on stdout.

Exit status: 0 when every benchmark ran (met or not: see each line's `met`), 1 when one could not run, 2 for an
unknown name.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import Callable

from bench import (batch, burst, fleet_fanout, flux_notify, generation, intake, intake_load, promotion, push_to_commit,
                   race, scale)
from bench.common import emit, progress

BENCHMARKS: dict[str, Callable[[], dict]] = {
    "intake": intake.run,
    "intake_under_load": intake_load.run,
    "eventgrid_batch": batch.run,
    "push_to_commit": push_to_commit.run,
    "scale": scale.run,
    "burst": burst.run,
    "generation": generation.run,
    "race": race.run,
    "flux_notify": flux_notify.run,
    "promotion": promotion.run,
    "fleet_fanout": fleet_fanout.run,
}


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        started = time.perf_counter()
        try:
            line = BENCHMARKS[name]()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            line = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "met": False}
            failed.append(name)
        emit(line)
        progress(f"{name} done in {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
