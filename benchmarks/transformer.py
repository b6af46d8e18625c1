"""GPT training speed: attention written from its equation against F.scaled_dot_product_attention.

    python benchmarks/transformer.py                       # everything below, on this machine
    python benchmarks/transformer.py --steps 5 --warmup 1  # shorter
    python benchmarks/transformer.py --device cuda         # on the GPU, with model FLOPs utilisation
    python benchmarks/transformer.py --width 768 --layers 12 --heads 12 --context 1024 --batch 16

A char-level `GPT` (4 layers, width 256, 4 heads, context 256 by default) is trained on random windows of
the State of the Union training text. Printed:

1. Training throughput, tokens/s of forward + backward + AdamW step, for the attention path that writes
   softmax(Q K^T / sqrt(d)) V out (fused=False) and the one through F.scaled_dot_product_attention
   (fused=True: FlashAttention / memory-efficient kernels on a GPU), each in fp32 and under bf16
   autocast; the same batches and initial weights for every row; `--warmup` steps untimed, then `--steps`.
2. Achieved FLOP/s and, on a GPU whose peak is known (or given with --peak-tflops), model FLOPs
   utilisation: MFU = (FLOPs per token x tokens/s) / peak, with FLOPs per token = 6 N + 12 L T d
   (Chowdhery et al. 2022, appendix B, as nanoGPT): N the parameters (the tied embedding counted once, as
   the output layer; learned positions left out), L layers, T context, d width. The 12 L T d term counts
   the attention scores and their weighted sum, forward and backward, over the full T x T square (the
   causal half is not subtracted). The peak is the device's dense bf16 tensor-core rate for the bf16 rows
   and its TF32 rate for fp32 (PyTorch's default matmul precision is full fp32, so fp32 rows run below it
   unless --tf32 is given).
3. Generation with and without the KV cache: `GPT.generate` of `--gen-length` tokens after a prompt of
   up to 16 tokens (fewer when the whole sequence would outgrow the context), batch 1, eval mode, fp32; new tokens/s and the ratio (the same comparison `pillars explain`
   plots for a trained run).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pillars.data import text  # noqa: E402
from pillars.data.tokenizers import CharTokenizer  # noqa: E402
from pillars.explain import generation_speed  # noqa: E402
from pillars.models.transformer import GPT, GPTConfig  # noqa: E402
from benchmarks.common import pick_device, sync  # noqa: E402

# Dense peak TFLOP/s (bf16 tensor cores, TF32) from the vendors' data sheets (SXM parts, no sparsity).
PEAKS = {"H200": (989.4, 494.7), "H100": (989.4, 494.7), "A100": (312.0, 156.0), "L4": (121.0, 60.0),
         "A10G": (125.0, 62.5), "RTX 4090": (165.2, 82.6)}


def peak_tflops(device: torch.device, precision: str, given: float) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32) in PEAKS.items():
        if key in name:
            return bf16 if precision == "bf16" else tf32
    return None


def flops_per_token(model: GPT) -> float:
    cfg = model.cfg
    n = sum(p.numel() for p in model.parameters()) - model.pos.weight.numel()
    return 6 * n + 12 * cfg.layers * cfg.context * cfg.width


def train_speed(cfg: GPTConfig, batches: list[torch.Tensor], state: dict, device: torch.device, precision: str,
                warmup: int, compile_: bool) -> float:
    model = GPT(cfg).to(device)
    model.load_state_dict(state)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    cast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
            else contextlib.nullcontext())
    start = 0.0
    for i, b in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = b[:, :-1], b[:, 1:]
        with cast:
            logits, _ = step_model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return (len(batches) - warmup) * batches[0].shape[0] * (batches[0].shape[1] - 1) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--gen-length", type=int, default=256)
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step's model")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on the GPU for the fp32 rows")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak, for MFU (default: known GPUs)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    train_text = text.corpus_splits("sotu")["train"]
    tok = CharTokenizer.train(train_text)
    ids = torch.from_numpy(tok.encode(train_text[:2_000_000]))
    g = torch.Generator().manual_seed(0)
    T = args.context
    batches = []
    for _ in range(args.warmup + args.steps):
        starts = torch.randint(0, len(ids) - T - 1, (args.batch,), generator=g)
        batches.append(torch.stack([ids[s:s + T + 1] for s in starts.tolist()]).to(device))
    cfg = GPTConfig(vocab_size=len(tok), context=T, layers=args.layers, heads=args.heads, width=args.width,
                    dropout=0.0)
    torch.manual_seed(0)
    reference = GPT(cfg)
    state = reference.state_dict()
    per_token = flops_per_token(reference)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, " \
        f"{torch.get_num_threads()} threads"
    print(f"GPT {args.layers} layers x {args.width} wide, {args.heads} heads, context {T}, vocab {len(tok)}: "
          f"{sum(p.numel() for p in reference.parameters()):,} parameters; batch {args.batch}; "
          f"{where}; torch {torch.__version__}")
    print(f"{per_token / 1e6:.1f} MFLOPs per training token (6N + 12LTd)\n")
    print(f"{'attention':<12}{'precision':<10}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}")
    speeds = {}
    for precision in ("fp32", "bf16"):
        for fused, name in ((False, "equation"), (True, "SDPA")):
            try:
                tps = train_speed(GPTConfig(**{**cfg.__dict__, "fused": fused}), batches, state, device, precision,
                                  args.warmup, args.compile)
            except torch.OutOfMemoryError:
                print(f"{name:<12}{precision:<10}{'out of memory':>12}")
                continue
            speeds[name, precision] = tps
            achieved = tps * per_token / 1e12
            peak = peak_tflops(device, precision, args.peak_tflops)
            mfu = f"{achieved / peak:.1%}" if peak else "-"
            print(f"{name:<12}{precision:<10}{tps:>12,.0f}{achieved:>10.2f}{mfu:>8}")
    for precision in ("fp32", "bf16"):
        if ("SDPA", precision) in speeds and ("equation", precision) in speeds:
            print(f"SDPA / equation, {precision}: {speeds['SDPA', precision] / speeds['equation', precision]:.2f}x")

    model = GPT(cfg).to(device).eval()
    model.load_state_dict(state)
    prompt = batches[0][:1, :max(1, min(16, T + 1 - args.gen_length))]   # all of it within the context
    cached = generation_speed(model, prompt, args.gen_length, use_cache=True)
    plain = generation_speed(model, prompt, args.gen_length, use_cache=False)
    print(f"\ngeneration of {args.gen_length} tokens, batch 1, fp32: with the KV cache {cached:,.0f} tokens/s, "
          f"recomputing {plain:,.0f} tokens/s: {cached / plain:.1f}x")


if __name__ == "__main__":
    main()
