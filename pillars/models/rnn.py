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
        with torch.autocast("cpu", dtype=torch.bfloat16):
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
        with _without_onednn() if idx.device.type == "cpu" else nullcontext():
            logits, state = self(idx)
            out = [idx]
            for _ in range(length):
                nxt = sample_next(logits[:, -1].float(), temperature, top_k, generator, top_p=top_p)
                out.append(nxt)
                logits, state = self(nxt, state)
        return torch.cat(out, dim=1)


@contextmanager
def _without_onednn():
    with warnings.catch_warnings():   # flags() warns about TF32 on Intel GPUs, which does not concern us
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
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
