"""The entry point of one rank of a data-parallel job (see parallel.py):
`python -m workbench.train.rank RUN_DIR [--judged]` trains the run folder's spec in this
process; a failing rank leaves its error in the folder for the caller to report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workbench.plumbing.process import die_with_parent
from workbench.record import read_run_spec
from workbench.train.loop import run_here
from workbench.train.parallel import Verdicts


def main() -> None:
    run_dir = Path(sys.argv[1])
    die_with_parent()
    try:
        run_here(read_run_spec(run_dir), run_dir, on_eval=Verdicts(run_dir) if "--judged" in sys.argv else None)
    except BaseException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        (run_dir / f".error-rank{os.environ.get('RANK', '0')}").write_text(f"{type(e).__name__}: {first}")
        raise


if __name__ == "__main__":
    main()
