"""Recurrent language models: the LSTM written from its equations against the library's fused kernel.

    python benchmarks/rnn.py                       # everything below, on this machine
    python benchmarks/rnn.py --steps 5 --warmup 1  # shorter
    python benchmarks/rnn.py --device cuda         # on the GPU (cuDNN for the fused layer)
    python benchmarks/rnn.py --threads 1           # one CPU thread

A char-level `LanguageModel` (2-layer LSTM, hidden 256 by default; tied embedding of the same width) is
trained on random windows of the State of the Union training text. Printed:

1. Training throughput, tokens/s of forward + backward + AdamW step (batch 64 x context 128 by default),
   for the LSTM run through its equations in Python (fused=False) and through the library kernel
   (fused=True), each in fp32 and under bf16 autocast, and the fused/equations ratio. The same batches
   and the same initial weights are used by every row; `--warmup` steps are run first and not timed,
   then `--steps` steps are timed.
2. The tanh RNN of the same sizes, fused, for comparison.
3. Generation: `LanguageModel.generate` (eval mode, no_grad, fp32, temperature 1) of `--gen-length` new
   tokens after an 8-character prompt, for a batch of 1 and of 32 sequences, fused and equations;
   samples/s and new tokens/s (one untimed run first, then the mean of `--gen-repeats` runs). On a CPU
   `generate` switches oneDNN off for the call: it calls the layer once per token, and oneDNN's per-call
   set-up would cost more than the arithmetic.
4. Achieved FLOP/s of the training step. The count is made from the shapes, not measured: per token a
   recurrent layer multiplies its input (width `in`) and previous state (width H) by the gate matrices,
   G*H*(in + H) multiply-adds with G = 4 gates for the LSTM and G = 1 for the tanh RNN; a projection
   hidden->embed when they differ (hidden*embed), and the tied output layer (embed*V). FLOPs = 2 x
   multiply-adds. Element-wise work (gate nonlinearities, cell update, softmax, optimizer) and the
   embedding lookup are not counted. The backward pass is taken as 2x the forward, so a training step is
   3x the forward count. As a reference, the rate of one large square matmul (torch.mm, `--peak-size`,
   fp32 and bf16) is measured: it is an *attainable* peak on this machine, not the vendor's
   theoretical peak; "% of mm" compares each row with the matmul of its own precision.

Figures taken while other programs use the CPU are indicative only. With as many torch threads as cores
and other busy processes, the many small operations of a recurrent network can slow down by 10-100x
(threads waiting on each other); `--threads 1` then gives steadier, more meaningful figures.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pillars.data import text  # noqa: E402
from pillars.data.tokenizers import CharTokenizer  # noqa: E402
from pillars.models.rnn import LanguageModel, LanguageModelConfig  # noqa: E402
from benchmarks.common import matmul_rate, pick_device, sync  # noqa: E402

PROMPT = 8   # characters of real text before generation starts


# ----------------------------------------------------------------------------- set-up

def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def machine_line(device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    cpu = platform.processor() or ""
    return (f"{where}{f' ({cpu})' if cpu and device.type == 'cpu' else ''}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} CPU threads, python {platform.python_version()}")


def load_ids(chars: int) -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    splits = text.corpus_splits("sotu")
    tok = CharTokenizer.train(splits["train"])
    return tok, tok.encode(splits["train"][:chars]), tok.encode(splits["valid"][:100_000])


# ----------------------------------------------------------------------------- FLOP count

def forward_flops_per_token(cfg: LanguageModelConfig) -> int:
    """2 x the multiply-adds of the model's matmuls for one token (see the module docstring)."""
    gates = 4 if cfg.cell == "lstm" else 1
    macs = 0
    width = cfg.embed
    for _ in range(cfg.layers):
        macs += gates * cfg.hidden * (width + cfg.hidden)
        width = cfg.hidden
    if cfg.hidden != cfg.embed:
        macs += cfg.hidden * cfg.embed
    macs += cfg.embed * cfg.vocab_size
    return 2 * macs


# ----------------------------------------------------------------------------- the measurements

def make_model(cfg: LanguageModelConfig, device: torch.device, seed: int) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(cfg).to(device)


def train_speed(cfg: LanguageModelConfig, batches: torch.Tensor, warmup: int, device: torch.device,
                precision: str, seed: int) -> dict:
    """Tokens/s of `len(batches) - warmup` timed training steps; batches (N, B, T + 1) token ids."""
    model = make_model(cfg, device, seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    V = cfg.vocab_size

    def step(batch):
        x, y = batch[:, :-1], batch[:, 1:]
        with autocast(device, precision):
            logits, _ = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for k in range(warmup):
        step(batches[k])
    sync(device)
    start = time.perf_counter()
    for k in range(warmup, len(batches)):
        loss = step(batches[k])
    loss = loss.item()   # waits for the device
    seconds = time.perf_counter() - start
    steps = len(batches) - warmup
    tokens = steps * batches.shape[1] * (batches.shape[2] - 1)
    return {"tokens_per_s": tokens / seconds, "s_per_step": seconds / steps, "loss": loss}


def generation_speed(cfg: LanguageModelConfig, prompts: torch.Tensor, length: int, repeats: int,
                     device: torch.device, seed: int) -> dict:
    model = make_model(cfg, device, seed).eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with torch.no_grad():
        model.generate(prompts, length, temperature=1.0, generator=gen)   # untimed first run
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model.generate(prompts, length, temperature=1.0, generator=gen)
        sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {"samples_per_s": len(prompts) / seconds, "tokens_per_s": len(prompts) * length / seconds,
            "s_per_call": seconds}


# ----------------------------------------------------------------------------- printing

def print_table(title: str, columns: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}")
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths))))
        for r in rows:
            print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
        for n in notes:
            print(n)
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console = Console(width=max(110, Console().width))
    console.print(table)
    for n in notes:
        console.print(n, highlight=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps before them")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context", type=int, default=128, help="characters per training sequence")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, help="embedding width (default: --hidden)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--gen-length", type=int, default=200, help="new tokens per generated sequence")
    p.add_argument("--gen-batches", default="1,32", help="generation batch sizes, comma-separated")
    p.add_argument("--gen-repeats", type=int, default=2, help="timed generate calls per row")
    p.add_argument("--peak-size", type=int, default=2048, help="n of the n x n torch.mm reference")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: train,rnn,generate,peak")
    args = p.parse_args()
    for name in ("steps", "batch_size", "context", "hidden", "layers", "gen_length", "gen_repeats", "peak_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"train", "rnn", "generate", "peak"}
    if unknown:
        p.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
    try:
        gen_batches = [int(b) for b in args.gen_batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--gen-batches: expected comma-separated whole numbers, not {args.gen_batches!r}")
    if any(b < 1 for b in gen_batches):
        p.error("--gen-batches: each batch size must be at least 1")
    device = pick_device(args.device)
    precisions = ["fp32", "bf16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions = ["fp32"]
        print("note: this GPU does not support bf16; bf16 rows left out")

    # data: the first 2M characters of the training text are plenty for random windows
    tok, train_ids, valid_ids = load_ids(2_000_000)
    g = np.random.default_rng(args.seed)
    n = args.warmup + args.steps
    starts = g.integers(0, len(train_ids) - args.context - 1, size=(n, args.batch_size))
    batches = torch.from_numpy(train_ids[starts[..., None] + np.arange(args.context + 1)]).to(device)
    base = dict(vocab_size=len(tok), embed=args.embed or args.hidden, hidden=args.hidden, layers=args.layers,
                dropout=args.dropout)
    lstm_cfg = {fused: LanguageModelConfig(**base, cell="lstm", fused=fused) for fused in (False, True)}
    rnn_cfg = LanguageModelConfig(**base, cell="rnn", fused=True)

    print(machine_line(device))
    print(f"sotu characters, vocabulary {len(tok)}; model: {args.layers}-layer, hidden {args.hidden}, "
          f"embed {base['embed']}, dropout {args.dropout}; training batch {args.batch_size} x context "
          f"{args.context}, {args.warmup} warm-up + {args.steps} timed steps, AdamW", flush=True)

    peak = {}
    if "peak" not in skip:
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if prec in precisions:
                peak[prec] = matmul_rate(device, dtype, args.peak_size)

    # ---- training
    rows = []   # (label, cfg, precision, result)
    if "train" not in skip:
        for prec in precisions:
            for fused in (False, True):
                label = f"LSTM {'fused' if fused else 'equations'}"
                print(f"  training {label}, {prec} ...", flush=True)
                rows.append((label, lstm_cfg[fused], prec,
                             train_speed(lstm_cfg[fused], batches, args.warmup, device, prec, args.seed)))
    if "rnn" not in skip:
        for prec in precisions:
            print(f"  training tanh RNN fused, {prec} ...", flush=True)
            rows.append(("tanh RNN fused", rnn_cfg, prec,
                         train_speed(rnn_cfg, batches, args.warmup, device, prec, args.seed)))

    gen_rows = []
    if "generate" not in skip:
        for b in gen_batches:
            pstarts = g.integers(0, len(valid_ids) - PROMPT, size=b)
            prompts = torch.from_numpy(valid_ids[pstarts[:, None] + np.arange(PROMPT)]).to(device)
            for label, fused in (("LSTM equations", False), ("LSTM fused", True)):
                print(f"  generating {label}, batch {b} ...", flush=True)
                gen_rows.append((label, b, generation_speed(lstm_cfg[fused], prompts, args.gen_length,
                                                            args.gen_repeats, device, args.seed)))

    # ---- tables
    if rows:
        print()
        speed = {(label, prec): r["tokens_per_s"] for label, _, prec, r in rows}
        table = []
        for label, cfg, prec, r in rows:
            train_flops = 3 * forward_flops_per_token(cfg) * r["tokens_per_s"]
            ratio = ""
            if label == "LSTM fused" and ("LSTM equations", prec) in speed:
                ratio = f"{r['tokens_per_s'] / speed[('LSTM equations', prec)]:.2f}x"
            vs_fp32 = ""
            if prec != "fp32" and (label, "fp32") in speed:
                vs_fp32 = f"{r['tokens_per_s'] / speed[(label, 'fp32')]:.2f}x"
            table.append([label, prec, f"{r['tokens_per_s']:,.0f}", f"{r['s_per_step'] * 1000:,.0f}", ratio, vs_fp32,
                          f"{train_flops / 1e9:,.1f}",
                          f"{train_flops / peak[prec]:.1%}" if prec in peak else "-", f"{r['loss']:.3f}"])
        flop_notes = [f"  {lab}: {forward_flops_per_token(c) / 1e6:.3f} MFLOP forward per token, x3 for a training "
                      "step" for lab, c in (("LSTM", lstm_cfg[True]), ("tanh RNN", rnn_cfg))
                      if any(label.startswith(lab) for label, _, _, _ in rows)]
        print_table(
            f"Training: tokens/s of forward + backward + AdamW, batch {args.batch_size} x {args.context}",
            ["layer", "precision", "tokens/s", "ms/step", "fused/eqns", "vs fp32", "GFLOP/s", "% of mm", "loss"],
            table,
            ["GFLOP/s is counted, not measured: 2 x the matmul multiply-adds per token from the shapes (recurrent "
             "layers G*H*(in+H), G = 4 for the LSTM, 1 for the RNN; projection; tied output layer embed*V), "
             "times 3 for forward + backward (backward taken as 2x forward), times tokens/s; element-wise work "
             "not counted.", *flop_notes,
             "% of mm: that figure over the measured rate of one torch.mm of the same precision (below), an "
             "attainable-peak reference, not the hardware's theoretical peak. loss: the last timed step's."])
    if gen_rows:
        eqns = {b: r["tokens_per_s"] for label, b, r in gen_rows if label == "LSTM equations"}
        print()
        print_table(
            f"Generation: LanguageModel.generate, {args.gen_length} new tokens after a {PROMPT}-character prompt, "
            "eval, no_grad, fp32, temperature 1",
            ["layer", "batch", "samples/s", "tokens/s", "s/call", "fused/eqns"],
            [[label, str(b), f"{r['samples_per_s']:,.2f}", f"{r['tokens_per_s']:,.0f}", f"{r['s_per_call']:.3f}",
              f"{r['tokens_per_s'] / eqns[b]:.2f}x" if label.startswith("LSTM fused") else ""]
             for label, b, r in gen_rows],
            ["On a CPU, generate runs the fused layer without oneDNN, whose set-up would be paid on every "
             "one-token call (see LanguageModel.generate)."] if device.type == "cpu" else [])
    if peak:
        print()
        print(f"matmul reference (torch.mm, {args.peak_size} x {args.peak_size}, best of ~1 s): "
              + ", ".join(f"{prec} {rate / 1e9:,.0f} GFLOP/s" for prec, rate in peak.items()))
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
