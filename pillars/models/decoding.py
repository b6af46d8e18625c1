"""Greedy and beam search for any encoder-decoder here (the Transformer's, the LSTM with attention's).

A model takes part through three methods and its config's `max_len`, `tgt_vocab` and `eos_id`:

    start(src, copies) -> state     encode the padded sources once, each repeated `copies` times (beams),
                                    with the decoder's state before its first token (bos)
    step(tokens, state) -> logits   the next-token logits (N, tgt_vocab) after the newest tokens (N, 1); the
                                    state (a KV cache, a recurrent state) is updated in place
    reorder(state, rows)            keep the decoder state of `rows` (N,), in that order: beams that survive
                                    a step, each with the history of the beam it extends
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def strip(tokens: list[int], eos: int) -> list[int]:
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


@torch.no_grad()
def greedy(model, src: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
    """The most likely next token at each step, up to eos or max_len tokens (default: the config's);
    one list of token ids per source, without bos and eos."""
    cfg = model.cfg
    state, tok = model.start(src, 1)
    out, done = [], torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_len or cfg.max_len):
        tok = model.step(tok, state).argmax(-1, keepdim=True)
        out.append(tok)
        done |= tok[:, 0] == cfg.eos_id
        if done.all():
            break
    return [strip(row, cfg.eos_id) for row in torch.cat(out, 1).tolist()]


@torch.no_grad()
def beam_search(model, src: torch.Tensor, beam: int = 4, max_len: int | None = None,
                length_penalty: float = 0.6) -> list[list[int]]:
    """Keep the `beam` most likely partial targets of each source; a target ending in eos is finished
    and scored log P(y | x) / lp(y), with GNMT's lp(y) = ((5 + |y|) / 6)^alpha (Wu et al. 2016; no
    coverage penalty), since raw log-probabilities favour short outputs. A source is done once it has
    `beam` finished targets (as fairseq); at max_len the live beams are scored as they stand. Returns
    the best target per source, as token ids without bos and eos."""
    B, V, eos = len(src), model.cfg.tgt_vocab, model.cfg.eos_id
    state, tokens = model.start(src, beam)
    logp = torch.full((B, beam), float("-inf"), device=src.device)
    logp[:, 0] = 0.0                       # one live beam at the start, or the beams would be copies
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    def lp(n: int) -> float:
        return ((5 + n) / 6) ** length_penalty

    for _ in range(max_len or model.cfg.max_len):
        logits = model.step(tokens[:, -1:], state).float()
        scores = (logp.view(-1, 1) + F.log_softmax(logits, -1)).view(B, beam * V)
        top, idx = scores.topk(2 * beam, dim=1)          # 2 beam: `beam` survive even if beam of them end
        origin, token = idx // V, idx % V
        ends = (token == eos) & (top > float("-inf"))
        for b, k in ends[:, :beam].nonzero().tolist():   # only an end among the best `beam` counts
            if len(finished[b]) < beam:
                seq = tokens[b * beam + origin[b, k], 1:].tolist()
                finished[b].append((top[b, k].item() / lp(len(seq) + 1), seq))
        if all(len(f) >= beam for f in finished):
            break
        logp, keep = top.masked_fill(token == eos, float("-inf")).topk(beam, dim=1)
        rows = (torch.arange(B, device=src.device).unsqueeze(1) * beam + origin.gather(1, keep)).view(-1)
        tokens = torch.cat([tokens[rows], token.gather(1, keep).view(-1, 1)], dim=1)
        model.reorder(state, rows)     # beams move within their source, whose encoding is the same for all
    for b in range(B):
        if len(finished[b]) < beam:
            finished[b] += [(logp[b, k].item() / lp(tokens.shape[1] - 1), tokens[b * beam + k, 1:].tolist())
                            for k in range(beam) if logp[b, k] > float("-inf")]
    return [max(f, key=lambda s: s[0])[1] for f in finished]
