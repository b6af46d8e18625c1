"""Where a training step's time goes: torch.profiler over the race's configurations of our side.

    python benchmarks/profile_step.py                 # both (about 2 minutes on 2 CPU cores)
    python benchmarks/profile_step.py --only fashion  # or: --only sotu; --steps N profiles N steps
    python benchmarks/profile_step.py --options       # and the loop's options on the fast configuration

Each configuration is built by the project's loop (`pillars.train.loop.build_trainer`), exactly as the race
trains it, and runs its own `train_step`/`after_step` (logging included; evaluations and checkpoints are
pushed past the profiled steps; one evaluation is timed apart). The loop labels the parts of a step (`step: data`,
`forward`, `backward`, `optimizer`, `log`), so the profile splits each step into:
  - compute: the time inside the operators (convolutions, matmuls, the LSTM kernel, element-wise ops;
    autograd's own work for each node of the backward pass counts here too);
  - overhead: Python and the dispatcher between operators (a label's time not spent in any operator), and
    the loop's own work outside the labels (learning rate, counters);
and prints the per-operator table (self time), one evaluation's time, and the step's FLOPs against the
rate of a large matmul in the same precision. A run without --only keeps its report in
benchmarks/profile_step.txt, or in the file --report names (one report per kind of CPU: profile_step-amx.txt
holds an Intel Xeon with AMX in bf16).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.race import (CONFIGS, OURS_FASHION, OURS_SOTU, cpu_peaks, job_step_flops,  # noqa: E402
                             precision_name, sotu_text_file)
from pillars import train  # noqa: E402
from pillars.config import write_text_atomic  # noqa: E402
from pillars.devices import machine_name  # noqa: E402
from pillars.train import loop  # noqa: E402
from pillars.train.log import default_console  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer", "log")
REPORT = Path(__file__).resolve().parent / "profile_step.txt"
LINES: list[str] = []


def say(text: str) -> None:
    """Print a line of the report, and keep it for the report's file."""
    print(text, flush=True)
    LINES.append(text)


def build(task: str, overrides: dict, config: str | None = None) -> loop.Trainer:
    far = "1000000"   # no evaluation or checkpoint inside the profiled steps
    cfg = train.resolve_config(task, str(CONFIGS / config) if config else None,
                               overrides={**overrides, "eval_every": far, "checkpoint_every": far, "max_steps": far})
    t = loop.build_trainer(task, cfg, Path(tempfile.mkdtemp(prefix=f"profile-{task}-")), default_console(),
                           single_process=True, needs=None)
    loop.prepare(t, resume=False)
    t.t0, t.window = time.time(), loop.Window()
    t.raw_model.train()
    return t


def steps(t: loop.Trainer, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        lr = loop.train_step(t)
        loop.after_step(t, lr, False, None)
    return (time.perf_counter() - began) / n


def report(name: str, task: str, overrides: dict, n: int, peaks: dict, config: str) -> dict:
    say(f"\n== {name}: pillars train {task} --config configs/{config} "
        + " ".join(f"--set {k}={v}" for k, v in overrides.items()))
    eval_every = train.resolve_config(task, str(CONFIGS / config), overrides=overrides)["eval_every"] or "epoch"
    t = build(task, overrides, config)
    steps(t, 5)                                  # warm up: allocator, oneDNN primitives
    per_step = steps(t, n)                       # wall clock, no profiler
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled_step = steps(t, n)
    events = prof.key_averages()
    labels = {e.key[len("step: "):]: e for e in events if e.key.startswith("step: ")}
    ops = [e for e in events if not e.key.startswith(("step: ", "Optimizer.", "ProfilerStep"))]
    ms = lambda us: us / n / 1e3   # noqa: E731  (profiler microseconds over n steps -> ms a step)
    parts = sum(ms(e.cpu_time_total) for e in labels.values())      # inclusive time of the labelled parts
    op_time = sum(ms(e.self_cpu_time_total) for e in ops)           # inside the operators
    glue = sum(ms(e.self_cpu_time_total) for e in labels.values())  # in a part, in no operator
    loop_rest = max(0.0, profiled_step * 1e3 - parts)               # the loop outside the parts
    began = time.perf_counter()
    loop.evaluate(t, "valid")
    eval_s = time.perf_counter() - began
    precision = precision_name()
    flops = job_step_flops(t.job, precision)
    rate = flops / per_step
    say(f"  a step: {per_step * 1e3:.1f} ms without the profiler ({t.cfg['batch_size'] / per_step:,.0f} samples/s), "
        f"{flops / 1e9:.3f} GFLOP -> {rate / 1e9:.1f} GFLOP/s, {100 * rate / peaks[precision]:.1f}% of torch.mm "
        f"{precision} ({peaks[precision] / 1e9:.0f} GFLOP/s)")
    say(f"  under the profiler, {profiled_step * 1e3:.1f} ms a step:")
    for ph in PHASES:
        if ph in labels:
            inclusive, own = ms(labels[ph].cpu_time_total), ms(labels[ph].self_cpu_time_total)
            say(f"    {ph:<10} {inclusive:8.2f} ms  (Python and dispatch {own:6.2f} ms)")
    whole = profiled_step * 1e3
    say(f"    compute (operators) {op_time:.1f} ms = {100 * op_time / whole:.1f}%; Python and dispatch in the parts "
        f"{glue:.1f} ms = {100 * glue / whole:.1f}%; the loop around them {loop_rest:.1f} ms = "
        f"{100 * loop_rest / whole:.1f}%")
    every = eval_every if isinstance(eval_every, int) else t.steps_per_epoch
    say(f"  one evaluation on the validation set: {eval_s:.2f} s, every {every} steps in the race: "
        f"{100 * eval_s / (eval_s + every * per_step):.0f}% of the wall clock (the race's clock leaves it out)")
    say("  operators by own time, per step:")
    for e in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]:
        own = ms(e.self_cpu_time_total)
        say(f"    {e.key[:48]:<48} {own:8.2f} ms  {100 * own / op_time:5.1f}%  x{e.count // n}")
    return {"per_step_s": per_step, "flops": flops, "eval_s": eval_s}


def options(n: int) -> None:
    """The fast configuration's step under the loop's other settings, one after the other: channels_last off,
    torch.compile (its first step includes the compilation), and AdamW's fused CPU kernel."""
    task, config = OURS_FASHION[0]
    say(f"\n== the loop's options, on pillars train {task} --config configs/{config} (ms a step, {n} steps)")
    for name, extra in (("as configured", {}), ("--set channels_last=false", {"channels_last": "false"}),
                        ("--set compile=true", {"compile": "true"}), ("AdamW(fused=True)", None)):
        t = build(task, extra or {}, config)
        if extra is None:   # the same groups and settings, the fused kernel
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in t.optimizer.param_groups]
            t.optimizer = torch.optim.AdamW(groups, lr=t.cfg["lr"], betas=t.optimizer.defaults["betas"], fused=True)
        first = steps(t, 1)
        steps(t, 4)
        say(f"  {name:<28} {steps(t, n) * 1e3:7.1f} ms   (first step {first:.1f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("fashion", "sotu"))
    p.add_argument("--steps", type=int, default=20, help="steps to time and to profile (default 20)")
    p.add_argument("--report", type=Path, default=REPORT, help="where a run without --only keeps its report "
                   f"(default {REPORT.relative_to(REPORT.parents[1])})")
    p.add_argument("--options", action="store_true",
                   help="also time the fast configuration with channels_last off, torch.compile, and fused AdamW")
    args = p.parse_args()
    if args.only is None and args.report.is_dir():
        p.error(f"--report {args.report} is a folder; name a file in it, e.g. {args.report / REPORT.name}")
    if args.only is None and not args.report.resolve().parent.is_dir():
        p.error(f"--report {args.report}: the folder {args.report.resolve().parent} does not exist; make it first")
    say(f"machine: {machine_name()}, torch {torch.__version__}")
    peaks = cpu_peaks()
    say(f"attainable peaks (a 1024^3 torch.mm): fp32 {peaks['32'] / 1e9:.0f} GFLOP/s, bf16 "
          f"{peaks['bf16'] / 1e9:.0f} GFLOP/s; precision auto is {precision_name()} here")
    if args.only in (None, "fashion"):
        for task, config in OURS_FASHION:
            report(f"Fashion-MNIST ({config})", task, {}, args.steps, peaks, config)
    if args.only in (None, "sotu"):
        report("State of the Union characters", "text-file", {"data": str(sotu_text_file())}, args.steps, peaks,
               OURS_SOTU)
    if args.options:
        options(args.steps)
    if args.only is None:
        command = shlex.join(["python", "benchmarks/profile_step.py", *sys.argv[1:]])
        head = f"{command}, {time.strftime('%Y-%m-%d')}\n"
        write_text_atomic(args.report, head + "\n".join(LINES) + "\n")
        print(f"-> {args.report}")


if __name__ == "__main__":
    main()
