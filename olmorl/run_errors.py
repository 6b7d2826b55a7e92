"""Why a run stopped: errors the CLI prints as one clear message (no traceback) and exits 1.

Each says what failed and where to resume from: the newest intact checkpoint, or that there is
none yet.
"""

from pathlib import Path


class RunFailed(RuntimeError):
    """A run stopped by a failure it cannot ride out."""

    def __init__(self, what: str, last_checkpoint: Path | None):
        resume = (
            f"the last good checkpoint is {last_checkpoint}; rerun with --resume to continue"
            if last_checkpoint is not None
            else "no checkpoint was written yet: rerunning starts from the beginning"
        )
        super().__init__(f"{what}\n{resume}")
        self.last_checkpoint = last_checkpoint


def stopped(error: BaseException, run_dir: Path, cause: str = "") -> RunFailed:
    """`error` as a RunFailed naming the run directory's newest intact checkpoint, and `cause`
    (what else went wrong, e.g. a node that left) where known."""
    from olmorl.train.checkpoints import latest_checkpoint

    found = latest_checkpoint(run_dir)
    return RunFailed(f"{error}. {cause}" if cause else str(error), found[0] if found else None)
