"""Recurrent networks: the LSTM written from its equations, a tanh RNN, and models built on them.

A recurrent network reads a sequence one step at a time and carries a state from step to step, so what it
saw earlier can decide what it does now. A plain tanh RNN multiplies its gradient by the same recurrent
matrix at every step back in time, so the signal from distant steps vanishes or explodes (Hochreiter 1991;
Bengio et al. 1994). The LSTM (Hochreiter & Schmidhuber 1997) adds a cell `c` updated by *addition*,
guarded by gates; with the forget gate of Gers et al. (2000) the equations are, for input x_t:

    i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)      input gate
    f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)      forget gate
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)         candidate cell
    o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)      output gate
    c_t = f_t * c_t-1 + i_t * g_t                   the cell: an additive path for the gradient
    h_t = o_t * tanh(c_t)

`LSTM` and `RNN` below subclass `nn.LSTM` and `nn.RNN`, so they hold exactly the library's parameters
(`weight_ih_l0` stacks W_i, W_f, W_g, W_o; `weight_hh_l0` the U's; two biases) and their state_dicts are
interchangeable with it. `fused=False` runs the equations above in Python, one step at a time;
`fused=True` runs the library's kernel (cuDNN on a GPU) on the same parameters. The tests show the two
agree in outputs, states and gradients.
"""
from __future__ import annotations

import functools
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars.models import decoding
from pillars.models.sampling import sample_next


def lstm_layer(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih, w_hh, b_ih, b_hh):
    """One LSTM layer over x (T, B, in) from state (h, c) of shape (B, H): the equations, step by step.
    Returns every step's h and c, each (T, B, H)."""
    wx = F.linear(x, w_ih, b_ih)           # W x_t + b for every step at once: no recurrence in this part
    hs, cs = [], []
    for t in range(x.shape[0]):
        gates = wx[t] + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


def rnn_layer(x: torch.Tensor, h: torch.Tensor, w_ih, w_hh, b_ih, b_hh):
    """One Elman RNN layer: h_t = tanh(W x_t + U h_{t-1} + b)."""
    wx = F.linear(x, w_ih, b_ih)
    outputs = []
    for t in range(x.shape[0]):
        h = torch.tanh(wx[t] + F.linear(h, w_hh, b_hh))
        outputs.append(h)
    return torch.stack(outputs), h


@functools.cache
def bf16_lstm_kernel_runs_here() -> bool:
    """Whether the CPU's library LSTM kernel (oneDNN) runs under bf16 autocast: it refuses on CPUs without
    AVX-512 ("could not create a primitive descriptor"), where a bf16 run then keeps the LSTM in fp32."""
    probe = nn.LSTM(4, 4)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), _onednn(True):   # even if first asked while decoding
            probe(torch.zeros(2, 1, 4))
        return True
    except RuntimeError:
        return False


class _Recurrent:
    """What LSTM and RNN share: the layer-by-layer loop, inter-layer dropout, batch_first."""

    def _check_supported(self):
        if self.bidirectional or getattr(self, "proj_size", 0):
            raise ValueError("the equations path covers unidirectional layers without projection")
        if not self.bias:
            raise ValueError("the equations path expects bias=True")

    def _layer_weights(self, k: int):
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def _time_major(self, x):
        return x.transpose(0, 1) if self.batch_first else x

    def _between_layers(self, out, k):
        if k < self.num_layers - 1 and self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        return out


class LSTM(_Recurrent, nn.LSTM):
    """`nn.LSTM`'s parameters run through the equations (fused=False) or the library kernel (fused=True).
    The forget-gate bias starts at 1 (Gers et al. 2000; Jozefowicz et al. 2015), so the cell remembers by
    default at the start of training."""

    def __init__(self, *args, fused: bool = True, forget_bias: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not fused:
            self._check_supported()
        self.fused = fused
        H = self.hidden_size
        with torch.no_grad():
            for name, bias in self.named_parameters():
                if name.startswith("bias_"):   # both biases of every layer and direction
                    bias[H:2 * H].fill_(forget_bias / 2)

    def forward(self, x, state=None):
        device = (x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x).device
        if self.fused and device.type == "cpu" and torch.is_autocast_enabled("cpu") \
                and not bf16_lstm_kernel_runs_here():   # CPUs without AVX-512: the kernel in fp32
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float(), None if state is None else tuple(s.float() for s in state))
        if self.fused:
            return super().forward(x, state)
        self._check_supported()
        x = self._time_major(x)
        B = x.shape[1]
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            state = (zeros, zeros)
        hs, cs = [], []
        out = x
        for k in range(self.num_layers):
            out, cells = lstm_layer(out, state[0][k], state[1][k], *self._layer_weights(k))
            hs.append(out[-1])
            cs.append(cells[-1])
            out = self._between_layers(out, k)
        return self._time_major(out), (torch.stack(hs), torch.stack(cs))


class RNN(_Recurrent, nn.RNN):
    """`nn.RNN` (tanh) with the same two paths as `LSTM`: the baseline the LSTM was invented to beat."""

    def __init__(self, *args, fused: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if self.nonlinearity != "tanh":
            raise ValueError("the equations path implements the tanh RNN")
        if not fused:
            self._check_supported()
        self.fused = fused

    def forward(self, x, state=None):
        if self.fused:
            return super().forward(x, state)
        self._check_supported()
        x = self._time_major(x)
        if state is None:
            state = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
        hs, out = [], x
        for k in range(self.num_layers):
            out, h = rnn_layer(out, state[k], *self._layer_weights(k))
            hs.append(h)
            out = self._between_layers(out, k)
        return self._time_major(out), torch.stack(hs)


def recurrent(cell: str, input_size: int, hidden: int, layers: int, dropout: float = 0.0,
              fused: bool = True, forget_bias: float = 1.0, bidirectional: bool = False) -> nn.Module:
    """A batch-first recurrent stack: cell 'lstm' or 'rnn' (tanh); bidirectional ones run the library's kernel."""
    kw = dict(num_layers=layers, dropout=dropout if layers > 1 else 0.0, batch_first=True, fused=fused,
              bidirectional=bidirectional)
    if cell == "lstm":
        return LSTM(input_size, hidden, forget_bias=forget_bias, **kw)
    if cell == "rnn":
        return RNN(input_size, hidden, **kw)
    raise ValueError(f"cell must be 'lstm' or 'rnn', not {cell!r}")


# ----------------------------------------------------------------------------- language model

@dataclass
class LanguageModelConfig:
    vocab_size: int = 100
    embed: int = 256          # the output layer reuses the embedding matrix (Press & Wolf 2017)
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    cell: str = "lstm"
    fused: bool = True


class LanguageModel(nn.Module):
    """Embedding -> dropout -> recurrent stack -> dropout -> (projection) -> tied softmax over the vocabulary:
    predicts token t+1 from tokens up to t (Mikolov et al. 2010; Zaremba et al. 2014)."""

    def __init__(self, cfg: LanguageModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.rnn = recurrent(cfg.cell, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout, cfg.fused)
        self.drop = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.hidden, cfg.embed, bias=False) if cfg.hidden != cfg.embed else nn.Identity()
        self.head = nn.Linear(cfg.embed, cfg.vocab_size)
        self.head.weight = self.embedding.weight    # tied input and output embeddings

    def forward(self, idx: torch.Tensor, state=None):
        """idx (B, T) token ids -> logits (B, T, vocab), final recurrent state."""
        out, state = self.rnn(self.drop(self.embedding(idx)), state)
        return self.head(self.project(self.drop(out))), state

    def cells(self, idx: torch.Tensor) -> torch.Tensor:
        """The last layer's cell values c_t at every step (B, T, hidden), for looking inside the memory."""
        if self.cfg.cell != "lstm":
            raise ValueError("cell states exist only in an LSTM")
        x = self.embedding(idx).transpose(0, 1)
        zeros = x.new_zeros(idx.shape[0], self.cfg.hidden)
        for k in range(self.cfg.layers):
            x, c = lstm_layer(x, zeros, zeros, *self.rnn._layer_weights(k))
        return c.transpose(0, 1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, length: int, temperature: float = 1.0, top_k: int = 0,
                 generator: torch.Generator | None = None, top_p: float = 0.0) -> torch.Tensor:
        """Continue idx (B, T) by `length` sampled tokens; temperature 0 picks the most likely token.
        On the CPU, oneDNN's fused LSTM costs about a millisecond of set-up per call, more than one step of
        a small model takes, so generation (one call per token) runs without it."""
        with _onednn(False) if idx.device.type == "cpu" else nullcontext():
            logits, state = self(idx)
            out = [idx]
            for _ in range(length):
                nxt = sample_next(logits[:, -1].float(), temperature, top_k, generator, top_p=top_p)
                out.append(nxt)
                logits, state = self(nxt, state)
        return torch.cat(out, dim=1)


@contextmanager
def _onednn(enabled: bool):
    with warnings.catch_warnings():   # flags() warns about TF32 on Intel GPUs, which does not concern us
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=enabled):
            yield


# ----------------------------------------------------------------------------- classifier and forecaster

@dataclass
class SequenceClassifierConfig:
    vocab_size: int = 100
    num_classes: int = 2
    embed: int = 128
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.3
    cell: str = "lstm"
    fused: bool = True
    features: int = 0            # > 0: the inputs are frames of this many features (speech), not token ids
    bidirectional: bool = False  # a second stack reads each sequence backwards (Schuster & Paliwal 1997)


class SequenceClassifier(nn.Module):
    """Reads a right-padded sequence of tokens or frames and classifies it from the final states: the forward
    stack's after the last real step, and with `bidirectional` the backward stack's after it has read back to
    the first. No state used ever sees the padding: a forward stack's output is read off at the last real
    step (it has not read what follows), and a bidirectional one reads packed sequences
    (`pack_padded_sequence`), which hold no padding. Only a bidirectional one packs: the CPU's fused kernel
    (oneDNN) does not take packed input, which costs 2-4x the time of padded rows there."""

    def __init__(self, cfg: SequenceClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed, padding_idx=0) if not cfg.features else None
        self.rnn = recurrent(cfg.cell, cfg.features or cfg.embed, cfg.hidden, cfg.layers, cfg.dropout, cfg.fused,
                             bidirectional=cfg.bidirectional)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden * (2 if cfg.bidirectional else 1), cfg.num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T) token ids, or (B, T, features) frames, padded after the real steps; lengths (B,) -> logits
        (B, classes)."""
        inputs = x if self.embedding is None else self.drop(self.embedding(x))
        if not self.cfg.bidirectional:
            out, _ = self.rnn(inputs[:, :int(lengths.max())])
            return self.head(self.drop(out[torch.arange(len(x), device=x.device), (lengths - 1).clamp(min=0)]))
        packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state   # (layers * 2, B, hidden), the last layer's last
        return self.head(self.drop(torch.cat([h[-2], h[-1]], dim=-1)))


@dataclass
class ForecasterConfig:
    features: int = 1          # input variables per time step (the target first)
    horizon: int = 24          # steps predicted at once
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.0
    cell: str = "lstm"
    fused: bool = True
    residual: bool = True      # predict the change from the last observed target value
    forget_bias: float = 1.0   # LSTM: initial forget-gate bias; larger keeps memories longer at the start


class Forecaster(nn.Module):
    """Reads a window of past values (B, T, features) and predicts the next `horizon` values of the target
    at once from the final state (a direct multi-step forecast). With `residual=False` it is a plain
    sequence regressor (the adding problem)."""

    def __init__(self, cfg: ForecasterConfig):
        super().__init__()
        self.cfg = cfg
        self.rnn = recurrent(cfg.cell, cfg.features, cfg.hidden, cfg.layers, cfg.dropout, cfg.fused, cfg.forget_bias)
        self.head = nn.Linear(cfg.hidden, cfg.horizon)
        if cfg.residual:   # start from "no change" relative to the last value
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        y = self.head(out[:, -1])
        return x[:, -1:, 0] + y if self.cfg.residual else y


# ----------------------------------------------------------------------------- encoder-decoder with attention

class Attention(nn.Module):
    """Global attention with the "general" score of Luong et al. (2015, sec. 3.1): the decoder's state s_t
    (its top LSTM layer at target step t) scores every encoder state h_j, and the softmax of the scores over
    the real source positions weights the encoder states into a context vector, read with s_t:

        score(s_t, h_j) = s_t^T W_a h_j
        a_tj = exp(score(s_t, h_j)) / sum_k exp(score(s_t, h_k))     (k over the source's real tokens)
        c_t  = sum_j a_tj h_j
        h~_t = tanh(W_c [c_t; s_t])                                    the attentional state, fed to the softmax

    Bahdanau et al. (2015) scored with a one-layer network, v^T tanh(W s_{t-1} + U h_j), which needs a
    (B, T, S, width) tensor; the bilinear score is one batched product. Padding is masked: its score is
    -inf, so exp gives it no weight."""

    def __init__(self, query: int, memory: int, out: int):
        super().__init__()
        self.w_a = nn.Linear(memory, query, bias=False)
        self.w_c = nn.Linear(memory + query, out, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """W_a h_j for every source position (B, S, query): once per source, not once per target step."""
        return self.w_a(memory)

    def forward(self, s: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor,
                keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """s (B, T, query); memory (B, S, memory); pad (B, S) True at padding -> h~ (B, T, out) and the
        weights a (B, T, S)."""
        keys = self.keys(memory) if keys is None else keys
        scores = (s @ keys.transpose(1, 2)).masked_fill(pad[:, None, :], float("-inf"))   # s_t^T W_a h_j
        weights = F.softmax(scores, -1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(memory.dtype)  # a_tj
        context = weights @ memory                                                         # c_t
        return torch.tanh(self.w_c(torch.cat([context, s], dim=-1))), weights


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) with each row's first lengths[i] steps in reverse order and its padding left after them.
    Applied twice it is the identity, so it also puts a backward pass's outputs back in source order."""
    t = torch.arange(x.shape[1], device=x.device)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, idx.view(*idx.shape, *(1,) * (x.dim() - 2)).expand_as(x))


@dataclass
class Seq2SeqLSTMConfig:
    src_vocab: int = 1000
    tgt_vocab: int = 1000
    embed: int = 256
    hidden: int = 256              # the decoder's LSTM; each direction of the encoder has hidden / 2
    encoder_layers: int = 2
    decoder_layers: int = 2
    dropout: float = 0.1
    max_len: int = 256             # the most target tokens a translation may have
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    share_embeddings: bool = False  # one matrix for source and target tokens (a joint vocabulary)
    fused: bool = True


class Seq2SeqLSTM(nn.Module):
    """An encoder-decoder of LSTMs with attention (Sutskever et al. 2014; Bahdanau et al. 2015; Luong et al.
    2015), with the interface of `transformer.Seq2SeqTransformer`: forward(src, tgt_in) -> logits, and greedy
    and beam search through `pillars.models.decoding`.

    The encoder is a stack of bidirectional layers (Schuster & Paliwal 1997): in each, one LSTM reads the
    source forwards and one backwards, and their outputs, side by side, are the next layer's input; the top
    layer's are the memory h_j the decoder attends over. The backward LSTM reads each source reversed within
    its own length (`reverse_padded`), so it starts at the last real token and never reads padding, and the
    forward one reads padding only after every real token: both run as the library's fused kernel on padded
    rows, which on a CPU is several times faster than packed sequences. The decoder's LSTM starts from
    tanh(W [forward's last state; backward's last state]) (Bahdanau et al.'s s_0 read both directions), and
    its top layer's output s_t queries the memory through `Attention`; the softmax reads h~_t through the
    target embedding (Press & Wolf 2017). Without Luong's input feeding (h~_{t-1} as an input of step t) the
    decoder's LSTM runs over the whole target at once in training instead of one step at a time."""

    def __init__(self, cfg: Seq2SeqLSTMConfig):
        super().__init__()
        if cfg.share_embeddings and cfg.src_vocab != cfg.tgt_vocab:
            raise ValueError("shared embeddings need src_vocab == tgt_vocab")
        if cfg.hidden % 2:
            raise ValueError(f"hidden {cfg.hidden} must be even: each encoder direction has half of it")
        self.cfg = cfg
        E, H = cfg.embed, cfg.hidden
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, E)
        self.src_embed = self.tgt_embed if cfg.share_embeddings else nn.Embedding(cfg.src_vocab, E)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(
            nn.ModuleList(LSTM(E if k == 0 else H, H // 2, batch_first=True, fused=cfg.fused) for _ in range(2))
            for k in range(cfg.encoder_layers))                       # (forward, backward) per layer
        self.bridge = nn.Linear(H, H)
        self.decoder = LSTM(E, H, num_layers=cfg.decoder_layers, dropout=cfg.dropout if cfg.decoder_layers > 1 else 0,
                            batch_first=True, fused=cfg.fused)
        self.attention = Attention(H, H, E)
        self.head = nn.Linear(E, cfg.tgt_vocab, bias=False)
        self.head.weight = self.tgt_embed.weight
        # N(0, 1/embed), times sqrt(embed) in _embed: unit-variance inputs, and logits h~ . e of about unit
        # scale, so the first loss is near ln V
        for embed in dict.fromkeys([self.src_embed, self.tgt_embed]):
            nn.init.normal_(embed.weight, 0.0, E ** -0.5)

    def _embed(self, embed: nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
        return self.drop(embed(idx) * self.cfg.embed ** 0.5)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """src (B, S), padded with pad_id -> memory (B, S, hidden), its padding mask (B, S), and the decoder's
        first state (h, c), each (decoder layers, B, hidden)."""
        pad = src == self.cfg.pad_id
        lengths = (~pad).sum(1).clamp(min=1)
        x = self._embed(self.src_embed, src)
        for k, (forward, backward) in enumerate(self.encoder):
            out_f, _ = forward(x)
            out_b, _ = backward(reverse_padded(x, lengths))   # out_b[:, t]: after reading tokens len-1 .. len-1-t
            last = torch.cat([out_f, out_b], dim=-1).gather(
                1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, out_f.shape[-1] * 2))[:, 0]
            x = torch.cat([out_f, reverse_padded(out_b, lengths)], dim=-1)
            if k < len(self.encoder) - 1:
                x = self.drop(x)
        h0 = torch.tanh(self.bridge(last)).unsqueeze(0).repeat(self.cfg.decoder_layers, 1, 1).contiguous()
        return x, pad, (h0, torch.zeros_like(h0))

    def decode(self, tgt: torch.Tensor, state, memory: torch.Tensor, pad: torch.Tensor,
               keys: torch.Tensor | None = None):
        """tgt (B, T) from the decoder state `state` -> logits (B, T, tgt_vocab), the state after the last
        token, and the attention weights (B, T, S)."""
        s, state = self.decoder(self._embed(self.tgt_embed, tgt), state)
        h, weights = self.attention(s, memory, pad, keys)
        return self.head(self.drop(h)), state, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (B, S); tgt_in (B, T), the target shifted right (bos first) -> logits (B, T, tgt_vocab)."""
        memory, pad, state = self.encode(src)
        return self.decode(tgt_in, state, memory, pad)[0]

    # decoding (pillars.models.decoding): the state is the memory, its keys W_a h_j and the decoder's (h, c)
    def start(self, src: torch.Tensor, copies: int) -> tuple[dict, torch.Tensor]:
        memory, pad, (h, c) = self.encode(src)
        memory, pad = memory.repeat_interleave(copies, 0), pad.repeat_interleave(copies, 0)
        state = {"memory": memory, "pad": pad, "keys": self.attention.keys(memory),
                 "hc": (h.repeat_interleave(copies, 1), c.repeat_interleave(copies, 1))}
        return state, torch.full((len(memory), 1), self.cfg.bos_id, dtype=torch.long, device=src.device)

    def step(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        logits, state["hc"], _ = self.decode(tokens, state["hc"], state["memory"], state["pad"], state["keys"])
        return logits[:, -1]

    def reorder(self, state: dict, rows: torch.Tensor) -> None:
        state["hc"] = tuple(s[:, rows] for s in state["hc"])

    def greedy(self, src: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
        with _onednn(False) if src.device.type == "cpu" else nullcontext():   # one call per token: see generate
            return decoding.greedy(self, src, max_len)

    def beam_search(self, src: torch.Tensor, beam: int = 4, max_len: int | None = None,
                    length_penalty: float = 0.6) -> list[list[int]]:
        with _onednn(False) if src.device.type == "cpu" else nullcontext():
            return decoding.beam_search(self, src, beam, max_len, length_penalty)

    @torch.no_grad()
    def cross_attention(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """The attention weights (1 layer, B, 1 head, T, S) while the decoder reads tgt_in teacher-forced."""
        memory, pad, state = self.encode(src)
        return self.decode(tgt_in, state, memory, pad)[2][None, :, None]
