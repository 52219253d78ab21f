"""Score the NAB development subset and print the three NAB profiles.

    python -m anomalies.engine.nab_eval [--nab ../shared/data/nab] [--out nab-out]

It runs the same code as `manage.py detect_anomalies`, then the shared scorer.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from .csv_runner import run_csv_files

DEFAULT_NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    parser.add_argument("--out", type=Path, default=Path("nab-out"))
    parser.add_argument("--scorer", type=Path, default=None)
    args = parser.parse_args(argv)
    files = sorted((args.nab / "data").glob("*/*.csv"))
    if not files:
        print(f"no CSV files under {args.nab / 'data'}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    run_csv_files(files, args.out)
    print(f"scored {len(files)} files in {time.perf_counter() - started:.1f}s")
    scorer = args.scorer or args.nab.parents[1] / "tools" / "nab_score.py"
    return subprocess.call([sys.executable, str(scorer), str(args.nab), str(args.out)])


if __name__ == "__main__":
    raise SystemExit(main())
