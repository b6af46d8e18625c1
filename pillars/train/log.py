"""What a run reports while it trains: metrics.jsonl, TensorBoard, and the progress bar."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from pillars.config import write_text_atomic


def _step_and_split(line: str) -> tuple[float, str]:
    """A metrics.jsonl line's step and split; a line cut short by a kill counts as past any checkpoint."""
    try:
        row = json.loads(line)
        return row["step"], row["split"]
    except (ValueError, KeyError, TypeError):
        return math.inf, ""


class MetricsLog:
    """metrics.jsonl and TensorBoard, written by the main process only."""

    def __init__(self, run_dir: Path, resume_step: int | None, total: int):
        from torch.utils.tensorboard import SummaryWriter
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            write_text_atomic(self.path, "".join(ln + "\n" for ln in self.path.read_text().splitlines()
                                                 if self._kept(ln, resume_step, total)))
        elif resume_step is None and self.path.exists():   # a fresh start in a folder a killed run left behind
            self.path.unlink()
        self.tb = SummaryWriter(str(run_dir), purge_step=resume_step + 1 if resume_step is not None else None)

    @staticmethod
    def _kept(line: str, resume_step: int, total: int) -> bool:
        """What a killed run logged up to its checkpoint. The final evaluations come after the last
        checkpoint (at step `total`), so a resumed run logs them again."""
        step, split = _step_and_split(line)
        return step < resume_step or (step == resume_step and (split == "train" or step < total))

    def write(self, step: int, split: str, values: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        self.tb.close()


def default_console():
    from rich.console import Console
    return Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 120)


def progress_bar(console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, disable=not enabled, transient=False)


def figures_text(result: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, (int, float)) and k != "train_time_s")
