"""The README's results table, written from the runs of the commands it names, never by hand.

    python benchmarks/run_all.py                    # train what is missing (hours on a CPU), write the table
    python benchmarks/run_all.py --only weather-lstm digits-cnn
    python benchmarks/run_all.py --table-only       # the table from the runs already made

Each row is `pillars train TASK` with the task's defaults (the README's configuration), run into
`runs/readme/TASK`, or with a longer configuration from configs/ (CONFIGS below): a finished run is reused
and an interrupted one resumed, so the command can be stopped and started again. The tour's rows come from `runs/tour` (`pillars tour`), the translate-race's from `runs/translate-race` (`pillars experiment translate-race`:
its LSTM run is `bible-fr-en-translate` at the task's defaults, validated on every verse ten times). The table is written to
`benchmarks/results.md` and between the `results:start` / `results:end` markers of README.md; a row whose
run has not been made here keeps the row the README has (made on the machine it names), or says it was
not run yet. Each row names the machine its run was made on.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillars import tasks  # noqa: E402
from pillars.config import write_text_atomic  # noqa: E402

TASKS = ["fashion-cnn", "fashion-resnet", "mnist-5k-cnn", "digits-cnn", "tree-detect", "brain-segment",
         "sotu-char-lstm", "sotu-lstm", "weather-lstm", "movie-sentiment-lstm", "spoken-digits-lstm",
         "sotu-char-gpt", "sotu-gpt", "fashion-vit", "movie-sentiment-transformer", "bible-translate",
         "fashion-dcgan", "fashion-cdcgan", "mnist-5k-dcgan"]
# longer configurations in configs/, each a row of its own: name -> (task, file); run into runs/readme/NAME
CONFIGS = {"fashion-resnet-fast": ("fashion-resnet", "configs/fashion-resnet-fast.toml"),
           "fashion-resnet-long": ("fashion-resnet", "configs/fashion-resnet-long.toml")}
ROWS = [*TASKS[:2], "fashion-resnet-fast", "fashion-resnet-long", *TASKS[2:]]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def row(label: str, run_dir: Path, kept: dict[str, str] | None = None) -> str:
    """The table row of a finished run; without one here, the row the README already has (made on the machine
    it names), else "not run yet"."""
    path = run_dir / "summary.json"
    if not path.exists() or json.loads(path.read_text()).get("status") != "finished":
        return (kept or {}).get(label, f"| {label} | not run yet | | | |")
    s = json.loads(path.read_text())
    speed = (f"{s['tokens_per_s']:,.0f} tokens/s" if s.get("tokens_per_s") else f"{s['samples_per_s']:,.0f} samples/s")
    precision = {"32": "fp32", "16": "fp16"}.get(s["precision"], s["precision"])
    family = tasks.get(s["task"]).family
    return (f"| {label} | {family.headline(s)} | {family.baselines_text(s)} | {s['train_time_s']:.0f} s, "
            f"{s['steps']:,} steps, {speed}, {precision} | {s['machine']}, torch {s['torch']} |")


def table(runs: Path, tour_dir: Path, race_dir: Path, kept: dict[str, str] | None = None) -> str:
    lines = ["| command | result on the test set | baselines on the same test set | training | machine |",
             "|---|---|---|---|---|"]
    for key, name in (("cnn", "CNN"), ("lstm", "LSTM"), ("gpt", "GPT"), ("gan", "DCGAN")):
        lines.append(row(f"`pillars tour`: {name}", tour_dir / key, kept))
    for name in ROWS:
        command = f"pillars train {CONFIGS[name][0]} --config {CONFIGS[name][1]}" if name in CONFIGS else \
            f"pillars train {name}"
        lines.append(row(f"`{command}`", runs / name, kept))
    for model, name in (("lstm", "attention LSTM, the task's defaults"), ("transformer", "Transformer")):
        lines.append(row(f"`pillars experiment translate-race`: {name}", race_dir / model, kept))
    return "\n".join(lines) + race_table()


def readme_rows(page: str) -> dict[str, str]:
    """The rows of the README's results table by their first cell: a machine without a row's run keeps it."""
    block = page.split(START, 1)[-1].split(END, 1)[0]
    return {line.split(" | ", 1)[0][2:]: line for line in block.splitlines()
            if line.startswith("| `pillars ") and "not run yet" not in line}


def race_table() -> str:
    """The rows of `python benchmarks/race.py` (benchmarks/race.json), if it has been run."""
    path = ROOT / "benchmarks" / "race.json"
    if not path.exists():
        return "\n\n`python benchmarks/race.py` has not been run yet."
    races = json.loads(path.read_text())
    lines = ["\n\n| `python benchmarks/race.py`: time to | ours | reference recipe, re-implemented | ratio | "
             "reference as published | share of the matmul peak, ours / reference | machine (1-min load average at the end; the race itself keeps 2 threads busy) |",
             "|---|---|---|---|---|---|---|"]
    sec = lambda t: "not reached" if t is None else f"{t:.1f} s"  # noqa: E731
    share = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731
    for race in races.values():
        peaks = race.get("peaks_gflops")
        machine = race["machine"] + (f"; torch.mm fp32 {peaks['32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s"
                                     if peaks else "")
        for r in race["rows"]:
            ratio = f"{r['reference_s'] / r['ours_s']:.2f}x" if r["ours_s"] and r["reference_s"] else ""
            lines.append(f"| {r['target']} | {sec(r['ours_s'])} ({r['ours']}) | {sec(r['reference_s'])} "
                         f"({r['reference']}) | {ratio} | {sec(r['published_s'])} | {share(r['ours_efficiency'])} / "
                         f"{share(r['reference_efficiency'])} | {machine} ({race['load_average']}), {race['date']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="TASK", help="train only these tasks (the table still lists all)")
    p.add_argument("--table-only", action="store_true", help="train nothing; write the table from existing runs")
    p.add_argument("--runs", default="runs/readme", help="folder of the runs (default runs/readme)")
    p.add_argument("--tour", default="runs/tour", help="the tour's folder (default runs/tour)")
    p.add_argument("--translate-race", default="runs/translate-race",
                   help="the translate-race's folder (default runs/translate-race)")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args()
    folder = Path(args.runs)
    unknown = sorted(set(args.only or []) - set(ROWS))
    if unknown:
        raise SystemExit(f"error: unknown task(s) {unknown}; the table's rows are: {', '.join(ROWS)}")
    if not args.table_only:
        from pillars import runs, train
        for name in args.only or ROWS:
            task, config_file = CONFIGS.get(name, (name, None))
            cfg = train.resolve_config(task, str(ROOT / config_file) if config_file else None)
            summary = runs.train_or_reuse(task, cfg, folder / name, progress=False)
            if summary.get("status") != "finished":
                raise SystemExit("stopped: run the same command again to continue")
    readme = Path(args.readme)
    page = readme.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"error: {readme} has no {START} ... {END} block to fill")
    text = table(folder, Path(args.tour), Path(args.translate_race), readme_rows(page))
    write_text_atomic(ROOT / "benchmarks" / "results.md", text + "\n")
    page = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: f"{START}\n{text}\n{END}", page, flags=re.S)
    write_text_atomic(readme, page)
    print(text)


if __name__ == "__main__":
    main()
