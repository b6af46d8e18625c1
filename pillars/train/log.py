"""What a run reports while it trains: metrics.jsonl, TensorBoard, and the progress bar."""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from pillars.config import write_text_atomic
from pillars.train.checkpoints import written

_event_files = itertools.count()   # numbers the event files of this process, as SummaryWriter does


def _step_and_split(line: str) -> tuple[float, str]:
    """A metrics.jsonl line's step and split; a line cut short by a kill counts as past any checkpoint."""
    try:
        row = json.loads(line)
        return row["step"], row["split"]
    except (ValueError, KeyError, TypeError):
        return math.inf, ""


class EventFile:
    """TensorBoard's event file, written in the calling thread and flushed at every record, so that a failed
    write stops the run there with a WriteError. (SummaryWriter writes from a thread of its own: on a full
    disk that thread dies printing a traceback, and the loop hears of it only at a later write.)"""

    def __init__(self, run_dir: Path, purge_step: int | None):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.record_writer import RecordWriter
        self.path = run_dir / (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                               f"{os.getpid()}.{next(_event_files)}")
        with written(self.path):
            self.file = open(self.path, "wb")
        self.records = RecordWriter(self.file)
        self.add(Event(file_version="brain.Event:2"))
        if purge_step is not None:   # TensorBoard drops what earlier files logged from this step on
            self.add(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add(self, event) -> None:
        event.wall_time = time.time()
        with written(self.path):
            self.records.write(event.SerializeToString())
            self.file.flush()

    def scalars(self, values: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.summary import scalar
        self.add(Event(step=step, summary=Summary(value=[v for tag, x in values.items()
                                                         for v in scalar(tag, x).value])))

    def image(self, tag: str, image, step: int) -> None:
        """A (C, H, W) image in [0, 1]."""
        from tensorboard.compat.proto.event_pb2 import Event
        from torch.utils.tensorboard.summary import image as image_summary
        self.add(Event(step=step, summary=image_summary(tag, image, dataformats="CHW")))

    def close(self) -> None:
        with contextlib.suppress(OSError):   # every record was flushed, and checked, when it was written
            self.file.close()


class MetricsLog:
    """metrics.jsonl and TensorBoard, written by the main process only; a failed write raises a WriteError
    that names the file."""

    def __init__(self, run_dir: Path, resume_step: int | None, total: int):
        self.path = run_dir / "metrics.jsonl"
        with written(self.path):
            if resume_step is not None and self.path.exists():
                write_text_atomic(self.path, "".join(ln + "\n" for ln in self.path.read_text().splitlines()
                                                     if self._kept(ln, resume_step, total)))
            elif resume_step is None and self.path.exists():   # a fresh start where a killed run left its log
                self.path.unlink()
        self.tb = EventFile(run_dir, purge_step=resume_step + 1 if resume_step is not None else None)

    @staticmethod
    def _kept(line: str, resume_step: int, total: int) -> bool:
        """What a killed run logged up to its checkpoint. The final evaluations come after the last
        checkpoint (at step `total`), so a resumed run logs them again."""
        step, split = _step_and_split(line)
        return step < resume_step or (step == resume_step and (split == "train" or step < total))

    def write(self, step: int, split: str, values: dict) -> None:
        with written(self.path), open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self.tb.scalars({f"{split}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}, step)

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
