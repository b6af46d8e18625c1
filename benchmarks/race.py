"""The race: our best configurations against two reference recipes, side by side on this machine.

    python benchmarks/race.py                  # both races (about 30 minutes on 2 CPU cores)
    python benchmarks/race.py --only fashion   # or: --only sotu
    python benchmarks/race.py --long           # also the ResNet for the 94% row (about 50 minutes more)
    python benchmarks/race.py --precision 32   # our side in fp32 even where the CPU has bf16 units

The CPU is named with its matrix units (AMX, AVX-512 BF16, or AVX2 alone) and the measured rate of a large
matmul in fp32 and bf16, at the start and above each table; our side trains in precision "auto" (bf16 where
the CPU computes it natively, else fp32), or the one --precision names.

Fashion-MNIST, time to 91%, 92%, 93% and 94% validation accuracy:
  reference  the pytorch/examples `mnist/main.py` recipe, re-implemented here: its `Net` (two 3x3 convs of
             32 and 64, max-pool, dropout 0.25, fc 9216->128, dropout 0.5, fc 128->10, log-softmax + NLL),
             Adadelta lr 1.0, StepLR gamma 0.7 every epoch, batch 64 reshuffled each epoch, inputs
             normalised with (0.1307, 0.3081), fp32, eager. The images sit in memory as tensors (the original
             reads them through a DataLoader, which only makes it slower).
  ours       named configurations, each `pillars train fashion-cnn --config configs/NAME.toml` through
             the project's training loop: fashion-cnn-91 (16 and 32 channels, no dropout, 2 epochs),
             fashion-cnn-92 (the same with a wider hidden layer and mirror images, 3 epochs), fashion-cnn-93
             (the network of -92 for 5 epochs); a threshold's time is the fastest of them, and the table
             names it. With --long also `pillars train fashion-resnet --config
             configs/fashion-resnet-94.toml` (the task's default ResNet, 20 epochs), the one that reaches
             94%; without it the 94% row says so.
Both train on the same images and are evaluated at fixed intervals on the same validation images, held
out of the training set as fashion-cnn holds them out (`valid_fraction`, a stratified split with a fixed
seed); the test set is read once, at the end. The clock is training time only (the loop's `train_time_s`:
evaluations and checkpoints are not counted), so a threshold's time is the training time at the first
evaluation that reaches it.

State of the Union, characters, time to a validation loss of 1.858 nats per character:
  the text is `pillars data export sotu` (the addresses in year order, a blank line between them), split
  as the text-file task splits a user's file (`val_fraction`); both sides train on its training text and
  are timed on its validation text.
  reference  nanoGPT's documented CPU configuration, re-implemented here: a GPT of 4 layers, 4 heads, 128
             wide, context 64, no bias, no dropout; batch 12 of random windows, AdamW (0.9, 0.99), weight
             decay 0.1 on matrices, lr 1e-3 with 100 warmup iterations and a cosine to 1e-4 at 2,000,
             gradient clip 1.0, fp32.
  ours       `pillars train text-file --set data=sotu.txt --config configs/text-file-lstm-race.toml`: one
             LSTM layer of 256, batch 16 of 128 characters, 120 steps, chosen to reach the threshold soonest.
The validation loss is the mean over the validation characters, read in windows of each model's own
context that overlap by half, so every character after the first window has at least half a context of
history on both sides (nanoGPT's own estimate reads random windows and scores every position, which gives
the reference a higher loss than this).

Efficiency: each side's FLOPs per training step are counted by torch.utils.flop_counter (forward and
backward, matrix products and convolutions; for the LSTM, whose fused kernel the counter cannot see, from
its shapes as in benchmarks/rnn.py: 3 x the forward's matmuls) and divided by its time per step; the peak is the
rate of a large torch.mm in the same precision on this machine (an attainable peak, not the data sheet's).

The references' own times as published with the issue (an AMD EPYC with AVX-512 BF16, their original code,
the test set, all 60,000 training images): 91% at 148 s, 92% at 252 s (plateau about 92.9%); 1.858 after
91 s. They are printed beside ours for scale.

Where a step's time goes: benchmarks/profile_step.py (torch.profiler over the same configurations).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import matmul_rate  # noqa: E402
from pillars import data, runs, train  # noqa: E402
from pillars.config import write_text_atomic  # noqa: E402
from pillars.devices import machine_name, resolve_precision  # noqa: E402
from pillars.models import rnn  # noqa: E402
from pillars.tasks.images import held_out, scaled_pixels  # noqa: E402

FASHION_THRESHOLDS = (0.91, 0.92, 0.93, 0.94)
SOTU_THRESHOLD = 1.858
PUBLISHED = {"fashion": {0.91: 148.0, 0.92: 252.0, 0.93: None, 0.94: None}, "sotu": 91.0}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Our side: named configurations (configs/*.toml), each trained once; a threshold's time is the fastest of them.
# precision "auto": bf16 where the CPU computes it natively (AMX, AVX-512 BF16), else fp32: on an AVX2-only CPU
# a bf16 matmul is emulated (about 1 GFLOP/s against 130-190 in fp32 on a 2-core AMD EPYC)
OURS_FASHION = (("fashion-cnn", "fashion-cnn-91.toml"), ("fashion-cnn", "fashion-cnn-92.toml"),
                ("fashion-cnn", "fashion-cnn-93.toml"))
# with --long, also the configurations that take longer than the reference's time on a CPU: the 94% row
OURS_FASHION_LONG = (("fashion-resnet", "fashion-resnet-94.toml"),)
LONG_THRESHOLDS = (0.94,)   # the rows that only OURS_FASHION_LONG is meant to reach
OURS_SOTU = "text-file-lstm-race.toml"
OUR_PRECISION = {"value": "auto"}   # --precision: our side's, for every configuration (each sets "auto")


# ----------------------------------------------------------------------------- our side: the project's loop

def ours(task: str, overrides: dict, metric: str, config_file: str | None = None
         ) -> tuple[list[tuple[float, float]], dict, Path]:
    """Train through pillars' loop into a temporary folder; [(train seconds, metric)] at each evaluation (the
    periodic evaluations read the task's validation set)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"race-{task}-"))
    cfg = train.resolve_config(task, config_file, overrides=overrides | {"precision": OUR_PRECISION["value"]})
    summary = runs.start(task, cfg, run_dir, progress=False, baselines=False)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    points = [(r["train_time_s"], r[metric]) for r in lines if r["split"] == "valid"]
    return points, summary, run_dir


def first_time(points, reached) -> float | None:
    return next((t for t, v in points if reached(v)), None)


# ----------------------------------------------------------------------------- reference 1: pytorch/examples mnist

class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py's Net."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def reference_fashion(seconds: float, valid_fraction: float, eval_every: int = 235,
                      seed: int = 1) -> tuple[list, float, nn.Module, tuple, float]:
    """[(train seconds, validation accuracy)] at each evaluation, seconds per step, the model, a batch, and
    the test accuracy at the end."""
    torch.manual_seed(seed)   # the recipe's default seed
    arrays = data.load("fashion-mnist")
    norm = lambda p: (scaled_pixels(p) - 0.1307) / 0.3081   # noqa: E731
    tr, va = (torch.from_numpy(i) for i in held_out(arrays["train_y"], valid_fraction))   # ours's split
    x, y = norm(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long()
    train_x, train_y, valid_x, valid_y = x[tr], y[tr], x[va], y[va]
    test_x, test_y = norm(arrays["test_x"]), torch.from_numpy(arrays["test_y"]).long()
    points, per_step, model = train_reference_fashion(train_x, train_y, valid_x, valid_y, seconds, eval_every)
    return points, per_step, model, (train_x[:64], train_y[:64]), accuracy(model, test_x, test_y)


def train_reference_fashion(train_x, train_y, valid_x, valid_y, seconds: float, eval_every: int):
    model = ExamplesNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    points, trained, steps = [], 0.0, 0
    for epoch in range(14):
        perm = torch.randperm(len(train_x))
        model.train()
        t = time.perf_counter()
        for i in range(0, len(train_x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.nll_loss(model(train_x[idx]), train_y[idx]).backward()
            opt.step()
            steps += 1
            if steps % eval_every == 0 or i + 64 >= len(train_x):
                trained += time.perf_counter() - t
                points.append((trained, accuracy(model, valid_x, valid_y)))
                print(f"  reference  {trained:6.1f} s  step {steps:5d}  validation accuracy {points[-1][1]:.4f}",
                      flush=True)
                model.train()
                if trained > seconds:
                    return points, trained / steps, model
                t = time.perf_counter()
        sched.step()
    return points, trained / steps, model


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in zip(x.split(1000), y.split(1000))) / len(y)


# ----------------------------------------------------------------------------- reference 2: nanoGPT

class NanoBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(B, T, self.heads, C // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, block: int = 64, layers: int = 4, heads: int = 4, d: int = 128):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.h = nn.ModuleList(NanoBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("c_proj.weight", ".proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def reference_sotu(train_ids, val_ids, vocab: int, iters: int = 2000, eval_every: int = 250, seed: int = 1337):
    torch.manual_seed(seed)
    model = NanoGPT(vocab)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))

    def lr_at(it):
        if it < 100:
            return 1e-3 * (it + 1) / 101
        ratio = min(1.0, (it - 100) / (2000 - 100))
        return 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    def batch():
        ix = torch.randint(len(train_ids) - 64, (12,))
        idx = ix[:, None] + torch.arange(65)
        w = train_ids[idx]
        return w[:, :-1], w[:, 1:]

    points, trained = [], 0.0
    t = time.perf_counter()
    for it in range(1, iters + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(it - 1)
        x, y = batch()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it % eval_every == 0 or it == iters:
            trained += time.perf_counter() - t
            points.append((trained, window_loss(model, val_ids, 64)))
            print(f"  reference  {trained:6.1f} s  iter {it:5d}  val loss {points[-1][1]:.4f}", flush=True)
            model.train()
            t = time.perf_counter()
    x, y = batch()
    return points, trained / iters, model, (x, y)


@torch.no_grad()
def window_loss(model, ids: torch.Tensor, block: int) -> float:
    """Mean next-character loss over the held-out stream, read in windows of `block` that overlap by half,
    as ours is: every character after the first window is predicted from at least block/2 characters."""
    model.eval()
    half = block // 2
    starts = torch.arange(0, len(ids) - block, half)
    idx = starts[:, None] + torch.arange(block + 1)
    windows = ids[idx]
    x, y = windows[:, :-1], windows[:, 1:]
    scored = torch.ones_like(y, dtype=torch.bool)
    scored[1:, :half] = False   # scored by the window before
    total, count = 0.0, 0
    for xb, yb, sb in zip(x.split(256), y.split(256), scored.split(256)):
        nll = F.cross_entropy(model(xb).flatten(0, 1), yb.flatten(), reduction="none")
        total += nll[sb.flatten()].sum().item()
        count += int(sb.sum())
    return total / count


# ----------------------------------------------------------------------------- FLOPs

def step_flops(model: nn.Module, loss_fn, batch, precision: str) -> float:
    """FLOPs of one training step's forward and backward (matmuls and convolutions), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode
    model.train()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def shown(precision: str) -> str:
    return "fp32" if precision == "32" else precision


def precision_name() -> str:
    """What our side's precision is on this CPU, "auto" resolved: "bf16" or "32"."""
    return resolve_precision(OUR_PRECISION["value"], torch.device("cpu"))


def job_step_flops(job, precision: str) -> float:
    """FLOPs of one training step of a pillars job (its model, its first batch, its loss)."""
    batch = job.train.batch(0, 0, 1)
    if isinstance(job.model, rnn.LanguageModel):   # the counter cannot see inside the fused LSTM kernel:
        from benchmarks.rnn import forward_flops_per_token   # count from the shapes, as benchmarks/rnn.py does
        return 3.0 * forward_flops_per_token(job.model.cfg) * batch[0].numel()

    def loss_fn(model, batch):   # a job's loss may come with figures to log: (loss, extras)
        out = job.loss(model, batch)
        return out[0] if isinstance(out, tuple) else out
    return step_flops(job.model, loss_fn, batch, precision)


def our_step_flops(run_dir: Path) -> tuple[float, str]:
    return job_step_flops(runs.load(run_dir).job, precision_name()), precision_name()


# ----------------------------------------------------------------------------- report

def fmt(t: float | None) -> str:
    return "not reached" if t is None else f"{t:6.1f} s"


def efficiency_line(name: str, flops: float, per_step: float, peak: float, precision: str) -> str:
    rate = flops / per_step
    return (f"  {name:<30} {flops / 1e9:8.3f} GFLOP/step  {rate / 1e9:7.1f} GFLOP/s  {100 * rate / peak:5.1f}% of "
            f"torch.mm {precision} ({peak / 1e9:.0f} GFLOP/s)")


RESULTS = Path(__file__).resolve().parent / "race.json"


def cpu_peaks() -> dict:
    """The measured rate of a large (1024^3) torch.mm on this CPU, in FLOP/s: {"32": fp32, "bf16": bf16}."""
    return {"32": matmul_rate(torch.device("cpu"), torch.float32, 1024),
            "bf16": matmul_rate(torch.device("cpu"), torch.bfloat16, 1024)}


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_line(peaks: dict) -> str:
    """The CPU (vendor, its matrix units: AMX, AVX-512 BF16 or AVX2 alone) and the measured matmul peaks."""
    auto = resolve_precision("auto", torch.device("cpu"))
    forced = "" if OUR_PRECISION["value"] == "auto" else f"; ours in {shown(precision_name())} (--precision)"
    return (f"{machine_name()}, torch {torch.__version__}; torch.mm peaks fp32 {peaks['32'] / 1e9:.0f}, "
            f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; precision auto is {auto}{forced}")


def record(name: str, rows: list[dict], peaks: dict, test: dict | None = None) -> None:
    """Keep the race's rows in benchmarks/race.json (one entry per race and --precision, the latest run's), for
    the README."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if OUR_PRECISION["value"] != "auto":   # a race with --precision is kept beside the default's, not over it
        name = f"{name}-{shown(precision_name())}"
    load = load_average()
    results[name] = {"rows": rows, "machine": f"{machine_name()}, torch {torch.__version__}",
                     "peaks_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
                     **({"test_accuracy": test} if test else {}),
                     "load_average": round(load, 2), "date": time.strftime("%Y-%m-%d")}
    write_text_atomic(RESULTS, json.dumps(results, indent=2) + "\n")


class Trained(NamedTuple):
    """One of our configurations after its race: [(training seconds, validation figure)] and its run."""
    name: str       # how to train it: TASK --config configs/FILE
    config: str
    points: list
    summary: dict
    run_dir: Path


def race_fashion(args, peaks) -> None:
    print("\n== Fashion-MNIST: time to validation accuracy (training time) ==")
    trained = []
    for task, config in OURS_FASHION + (OURS_FASHION_LONG if args.long else ()):
        name = f"{task} --config configs/{config}"
        print(f"  ours: pillars train {name}")
        points, summary, run_dir = ours(task, {}, "accuracy", str(CONFIGS / config))
        for t, a in points:
            print(f"  ours       {t:6.1f} s  validation accuracy {a:.4f}  ({config})")
        trained.append(Trained(name, config, points, summary, run_dir))
    print("  reference: pytorch/examples mnist recipe (Adadelta, StepLR, batch 64, fp32 eager), on the same "
          "training and validation images")
    valid_fraction = runs.saved_config(trained[0].run_dir)[1]["valid_fraction"]
    ref_points, ref_per_step, ref_model, ref_batch, ref_test = reference_fashion(args.ref_seconds, valid_fraction)
    ref_flops = step_flops(ref_model, lambda m, b: F.nll_loss(m(b[0]), b[1]), ref_batch, "32")
    ref_efficiency = ref_flops / ref_per_step / peaks["32"]
    efficiency = {}
    print("  efficiency:")
    for run in trained:
        flops, precision = our_step_flops(run.run_dir)
        per_step = run.summary["train_time_s"] / run.summary["steps"]
        efficiency[run.name] = flops / per_step / peaks[precision]
        print(efficiency_line(f"ours ({run.config})", flops, per_step, peaks[precision], precision))
    print(efficiency_line("reference (examples Net)", ref_flops, ref_per_step, peaks["32"], "32"))
    print(f"\n  {machine_line(peaks)}")
    print(f"  {'threshold':>9}  {'ours':>11}  {'reference':>11}  {'ratio':>6}  {'published ref.':>14}  ours by")
    rows = []
    for th in FASHION_THRESHOLDS:
        missed = "none of ours (without --long)" if th in LONG_THRESHOLDS and not args.long else "none of ours"
        times = [(first_time(run.points, lambda v: v >= th), run.name) for run in trained]
        a, by = min(((t, n) for t, n in times if t is not None), default=(None, None))
        b = first_time(ref_points, lambda v: v >= th)
        ratio = f"{b / a:5.2f}x" if a and b else "  -   "
        pub = PUBLISHED["fashion"][th]
        print(f"  {th:>9.0%}  {fmt(a):>11}  {fmt(b):>11}  {ratio:>6}  {fmt(pub) if pub else 'not reached':>14}  "
              f"{by or '-'}")
        rows.append({"target": f"Fashion-MNIST {th:.0%} validation accuracy", "ours_s": a, "reference_s": b,
                     "published_s": pub, "ours": f"{by or missed}, {shown(precision_name())}",
                     "reference": "pytorch/examples mnist", "ours_efficiency": efficiency.get(by),
                     "reference_efficiency": ref_efficiency})
    for run in trained:
        print(f"  ours {run.name}: best validation {max(v for _, v in run.points):.2%}, test "
              f"{run.summary['final']['accuracy']:.2%} after {run.points[-1][0]:.0f} s of training")
    print(f"  reference: best validation {max(v for _, v in ref_points):.2%} within {ref_points[-1][0]:.0f} s, "
          f"test {ref_test:.2%}")
    record("fashion", rows, peaks, {run.name: run.summary["final"]["accuracy"] for run in trained}
           | {"reference": ref_test})


def sotu_text_file() -> Path:
    """`pillars data export sotu` into a temporary folder: the text our side trains on as a user's file."""
    from pillars.data.text import as_text
    text_path = Path(tempfile.mkdtemp(prefix="race-sotu-")) / "sotu.txt"
    write_text_atomic(text_path, as_text(data.load("sotu")["text"]))
    return text_path


def race_sotu(args, peaks) -> None:
    from pillars.data.tokenizers import CharTokenizer
    from pillars.tasks.language import text_splits
    print("\n== State of the Union, characters: time to validation loss 1.858 nats/char (training time) ==")
    text_path = sotu_text_file()
    text = text_path.read_text(encoding="utf-8")
    print(f"  ours: pillars train text-file --set data=sotu.txt --config configs/{OURS_SOTU}")
    points, summary, run_dir = ours("text-file", {"data": str(text_path)}, "loss", str(CONFIGS / OURS_SOTU))
    for t, v in points:
        print(f"  ours       {t:6.1f} s  val loss {v:.4f}")
    saved = runs.saved_config(run_dir)[1]
    shape = f"LSTM {saved['layers']} x {saved['hidden']}, batch {saved['batch_size']}"
    train_text, valid_text, _ = text_splits(saved, "")   # the texts ours read
    print(f"  text: {len(text):,} characters (pillars data export sotu sotu.txt); training {len(train_text):,}, "
          f"validation {len(valid_text):,}")
    tok = CharTokenizer.train(train_text)
    train_ids = torch.from_numpy(tok.encode(train_text)).long()
    val_ids = torch.from_numpy(tok.encode(valid_text)).long()
    print(f"  reference: nanoGPT CPU configuration (4 x 128, context 64, batch 12, 2,000 iterations, fp32); "
          f"vocabulary {len(tok)}")
    ref_points, ref_per_step, ref_model, ref_batch = reference_sotu(train_ids, val_ids, len(tok), args.ref_iters)
    a = first_time(points, lambda v: v <= SOTU_THRESHOLD)
    b = first_time(ref_points, lambda v: v <= SOTU_THRESHOLD)
    print(f"\n  {machine_line(peaks)}")
    print(f"  {'threshold':>9}  {'ours':>11}  {'reference':>11}  {'ratio':>6}  {'published ref.':>14}")
    ratio = f"{b / a:5.2f}x" if a and b else "  -   "
    print(f"  {SOTU_THRESHOLD:>9}  {fmt(a):>11}  {fmt(b):>11}  {ratio:>6}  {fmt(PUBLISHED['sotu']):>14}")
    print(f"  final: ours {points[-1][1]:.4f} after {points[-1][0]:.0f} s; reference {ref_points[-1][1]:.4f} after "
          f"{ref_points[-1][0]:.0f} s")
    flops, precision = our_step_flops(run_dir)
    per_step = summary["train_time_s"] / summary["steps"]
    ref_flops = step_flops(ref_model, lambda m, b: F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten()),
                           ref_batch, "32")
    print("  efficiency:")
    print(efficiency_line(f"ours ({shape})", flops, per_step, peaks[precision], precision))
    print(efficiency_line("reference (nanoGPT 4 x 128)", ref_flops, ref_per_step, peaks["32"], "32"))
    record("sotu", [{"target": f"sotu characters, validation loss {SOTU_THRESHOLD} nats", "ours_s": a,
                     "reference_s": b, "published_s": PUBLISHED["sotu"],
                     "ours": f"text-file --config configs/{OURS_SOTU} ({shape}), {shown(precision_name())}",
                     "reference": "nanoGPT CPU configuration",
                     "ours_efficiency": flops / per_step / peaks[precision],
                     "reference_efficiency": ref_flops / ref_per_step / peaks["32"]}], peaks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("fashion", "sotu"))
    p.add_argument("--long", action="store_true",
                   help="also train the Fashion-MNIST configuration for 94%% (a ResNet: about 50 minutes on a 2-core "
                        "AVX-512 CPU in fp32)")
    p.add_argument("--ref-seconds", type=float, default=330.0,
                   help="stop the Fashion-MNIST reference after this much training time (default 330)")
    p.add_argument("--ref-iters", type=int, default=2000, help="nanoGPT iterations (default 2000, as documented)")
    p.add_argument("--precision", choices=("auto", "32", "bf16"), default="auto",
                   help="our side's precision (default auto, as the configurations set it: bf16 where the CPU "
                        "computes it natively, else fp32); the references stay in fp32")
    args = p.parse_args()
    OUR_PRECISION["value"] = args.precision
    load = load_average()
    peaks = cpu_peaks()
    print(f"{machine_line(peaks)} (peaks: the best of repeated 1024^3 torch.mm); load average before: {load:.2f}")
    if args.only in (None, "fashion"):
        race_fashion(args, peaks)
    if args.only in (None, "sotu"):
        race_sotu(args, peaks)
    print(f"\nload average after: {load_average():.2f}")


if __name__ == "__main__":
    main()
