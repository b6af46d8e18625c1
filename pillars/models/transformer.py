"""Transformers (Vaswani et al. 2017): attention written from its equation, and four models built on one block.

Attention lets every position read from every other in one step, weighting each by how well its key
matches the query (scaled dot-product attention, eq. 1 of the paper):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

The 1/sqrt(d_k) keeps the dot products of d_k-dimensional vectors at unit scale, so the softmax does not
saturate. Multi-head attention runs h of these on learned d_k = width/h projections side by side and
mixes their outputs:

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

A mask hides keys a query may not read: padding, and in a decoder the future (causal attention), so that
token t is predicted from tokens before it only. `fused=True` runs `F.scaled_dot_product_attention`
(FlashAttention or memory-efficient kernels on a GPU) on the same parameters; `fused=False` runs the
equation above; the tests show the two agree in outputs and gradients.

One pre-LayerNorm `Block` serves every model here: `GPT` (a causal language model, Radford et al. 2019),
`Seq2SeqTransformer` (the paper's encoder-decoder, for translation), `Encoder` (bidirectional, as BERT: read
through a [CLS] token by `EncoderClassifier`, pretrained by masked-token prediction as `MaskedLanguageModel`)
and `ViT` (Dosovitskiy et al. 2020: image patches as tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pillars.models import decoding
from pillars.models.sampling import sample_next


# ----------------------------------------------------------------------------- attention and the block

class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries from x over keys and values from x (self-attention) or from `memory`
    (cross-attention: a decoder reading the encoder's output).

    A cache (a dict, filled in place) makes decoding incremental: in self-attention the keys and values of
    the new tokens are appended to those of the tokens before them, so each step computes only its own;
    in cross-attention the memory's keys and values are computed on the first call and reused after."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0, bias: bool = True, causal: bool = False,
                 fused: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.causal, self.fused, self.dropout = heads, causal, fused, dropout
        self.q = nn.Linear(width, width, bias=bias)            # W^Q of every head, side by side
        self.kv = nn.Linear(width, 2 * width, bias=bias)       # W^K and W^V
        self.proj = nn.Linear(width, width, bias=bias)         # W^O
        self.resid_drop = nn.Dropout(dropout)
        self.record = False   # set True to keep the last call's attention weights in .weights (for plots)
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, cache: dict | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, Tq, width); memory (B, Tk, width) or None; key_padding_mask (B, Tk), True at keys to ignore
        (with a self-attention cache: over the cached and the new tokens). Returns the output (B, Tq, width)
        and, with need_weights (which takes the explicit path), the weights (B, heads, Tq, Tk), else None."""
        B, T, C = x.shape
        q = self._split(self.q(x))
        if memory is not None and cache:      # cross-attention: the memory's keys and values, computed once
            k, v = cache["k"], cache["v"]
        else:
            k, v = map(self._split, self.kv(x if memory is None else memory).split(C, dim=-1))
            if memory is None and cache:      # self-attention: the new tokens join the cached ones
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        p = self.dropout if self.training else 0.0
        weights = None
        need_weights = need_weights or self.record
        if self.fused and not need_weights:
            if self.causal and q.shape[2] == k.shape[2] and key_padding_mask is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:   # is_causal aligns the mask top-left, wrong when a cache puts the queries after Tk - Tq keys
                y = F.scaled_dot_product_attention(q, k, v, self._allowed(q, k, key_padding_mask), dropout_p=p)
        else:
            att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])     # Q K^T / sqrt(d_k)
            allowed = self._allowed(q, k, key_padding_mask)
            if allowed is not None:
                att = att.masked_fill(~allowed, float("-inf"))        # exp(-inf) = 0: hidden keys get no weight
            weights = F.softmax(att, dim=-1)
            y = F.dropout(weights, p, self.training) @ v
            if self.record:
                self.weights = weights.detach()
        y = y.transpose(1, 2).reshape(B, T, C)                        # Concat(head_1, ..., head_h)
        return self.resid_drop(self.proj(y)), weights

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, width) -> (B, heads, T, width / heads)."""
        return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def _allowed(self, q, k, key_padding_mask) -> torch.Tensor | None:
        """True where a query may read a key, broadcastable to (B, heads, Tq, Tk); None: everywhere.
        Causal: the Tq queries are the last Tq of the Tk positions, so query i reads keys 0 .. Tk - Tq + i."""
        Tq, Tk = q.shape[2], k.shape[2]
        allowed = None
        if self.causal and Tq > 1:   # one query, the newest token, reads every key: no mask to build
            allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
        if key_padding_mask is not None:
            real = ~key_padding_mask[:, None, None, :]
            allowed = real if allowed is None else allowed & real
        return allowed


class MLP(nn.Module):
    """The position-wise feed-forward network, width -> 4 width -> width, with GELU (as GPT and BERT;
    the paper used ReLU)."""

    def __init__(self, width: int, dropout: float, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width, bias=bias)
        self.proj = nn.Linear(4 * width, width, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One pre-LayerNorm Transformer layer:

        x = x + SelfAttention(LN(x))
        x = x + CrossAttention(LN(x), memory)      (decoder of a seq2seq model: cross=True)
        x = x + MLP(LN(x))

    The paper normalised after each residual sum (post-LN); normalising each branch's input instead
    leaves an identity path from the embeddings to the output, which trains deep stacks without a long
    warmup (Xiong et al. 2020) and is what GPT-2, ViT and most models since use."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0, bias: bool = True, causal: bool = False,
                 cross: bool = False, fused: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=bias)
        self.attn = MultiHeadAttention(width, heads, dropout, bias, causal, fused)
        self.ln_cross = nn.LayerNorm(width, bias=bias) if cross else None
        self.cross = MultiHeadAttention(width, heads, dropout, bias, False, fused) if cross else None
        self.ln_2 = nn.LayerNorm(width, bias=bias)
        self.mlp = MLP(width, dropout, bias)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_pad: torch.Tensor | None = None, cache: dict | None = None) -> torch.Tensor:
        """x (B, T, width); pad (B, T) True at padding keys; memory and memory_pad for cross-attention;
        cache: this layer's dict, filled in place with its "self" and "cross" keys and values."""
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.setdefault("self", {}), cache.setdefault("cross", {})
        x = x + self.attn(self.ln_1(x), key_padding_mask=pad, cache=self_cache)[0]
        if self.cross is not None:
            x = x + self.cross(self.ln_cross(x), memory, memory_pad, cache=cross_cache)[0]
        return x + self.mlp(self.ln_2(x))


def cached_length(cache: list[dict]) -> int:
    """How many tokens a model's cache (one dict per block) already holds."""
    return cache[0]["self"]["k"].shape[2] if cache[0] else 0


def gpt2_init(model: nn.Module, layers: int) -> None:
    """GPT-2's initialisation: weights N(0, 0.02), zero biases, and the projections that add into the
    residual stream (attention's W^O, the MLP's second layer) at 0.02 / sqrt(2 layers), so the stream's
    variance does not grow with depth."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02 / math.sqrt(2 * layers) if name.endswith(".proj") else 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


# ----------------------------------------------------------------------------- GPT (Radford et al. 2018, 2019)

@dataclass
class GPTConfig:
    vocab_size: int = 100
    context: int = 256        # the longest sequence; positions are learned, one per place in it
    layers: int = 4
    heads: int = 4
    width: int = 256
    dropout: float = 0.1
    bias: bool = True         # biases in the linear layers and LayerNorms
    fused: bool = True        # attention through F.scaled_dot_product_attention


class GPT(nn.Module):
    """A decoder-only causal language model: token + position embeddings -> causal blocks -> LN -> a softmax
    over the vocabulary whose matrix is the token embedding (tied, Press & Wolf 2017). It has the interface
    of `rnn.LanguageModel`, with a KV cache in the place of the recurrent state."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos = nn.Embedding(cfg.context, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout, cfg.bias, causal=True, fused=cfg.fused)
                                    for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width, bias=cfg.bias)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight
        gpt2_init(self, cfg.layers)

    def forward(self, idx: torch.Tensor, cache: list[dict] | None = None):
        """idx (B, T) -> logits (B, T, vocab) and the cache, which holds the keys and values of every token
        read so far. Given a cache from an earlier call, idx holds only the new tokens, and they take the
        positions after the cached ones."""
        if cache is None:
            cache = [{} for _ in self.blocks]
        start, T = cached_length(cache), idx.shape[1]
        if start + T > self.cfg.context:
            raise ValueError(f"{start} cached + {T} new tokens exceed the context of {self.cfg.context}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block, layer_cache in zip(self.blocks, cache):
            x = block(x, cache=layer_cache)
        return self.head(self.ln_f(x)), cache

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, length: int, temperature: float = 1.0, top_k: int = 0,
                 generator: torch.Generator | None = None, top_p: float = 0.0, use_cache: bool = True) -> torch.Tensor:
        """Continue idx (B, T) by `length` sampled tokens; temperature 0 picks the most likely token.
        With the cache each step reads only the newest token. Once the sequence outgrows the context, each
        step recomputes on the last `context` tokens without a cache, as without use_cache: a cache cannot
        be rolled forward, because every cached key was computed with its old absolute position and with
        attention over tokens that have since left the window."""
        ctx, out, cache = self.cfg.context, idx, None
        for _ in range(length):
            if use_cache and cache is not None and out.shape[1] <= ctx:
                logits, cache = self(out[:, -1:], cache)
            else:
                logits, cache = self(out[:, -ctx:])
            nxt = sample_next(logits[:, -1].float(), temperature, top_k, generator, top_p=top_p)
            out = torch.cat([out, nxt], dim=1)
        return out


# ----------------------------------------------------------------------------- encoder-decoder (Vaswani et al. 2017)

@dataclass
class Seq2SeqConfig:
    src_vocab: int = 1000
    tgt_vocab: int = 1000
    width: int = 256
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    max_len: int = 256             # the longest source, and the most target positions (bos included)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    share_embeddings: bool = False  # one matrix for source and target tokens (a joint vocabulary, as the paper)
    fused: bool = True


def sinusoids(length: int, width: int) -> torch.Tensor:
    """The paper's positional encoding (length, width): PE(pos, 2i) = sin(pos / 10000^(2i/width)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/width)); PE(pos + k) is a linear function of PE(pos)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    pe = torch.zeros(length, width)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class Seq2SeqTransformer(nn.Module):
    """The encoder reads the whole source (bidirectional, source pads masked); the decoder predicts the
    target token by token, attending causally to the target so far and, through cross-attention, to the
    encoder's output. Positions are the paper's sinusoids, added to embeddings scaled by sqrt(width); the
    softmax reuses the target embedding (Press & Wolf 2017).

    The target needs no padding mask: its pads come after its real tokens, and the causal mask already
    hides every later position from a real token; the loss ignores the pad positions. Label smoothing
    (the paper's eps = 0.1) belongs to that loss, in the task, not to the model."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        if cfg.share_embeddings and cfg.src_vocab != cfg.tgt_vocab:
            raise ValueError("shared embeddings need src_vocab == tgt_vocab")
        self.cfg = cfg
        W = cfg.width
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, W)
        self.src_embed = self.tgt_embed if cfg.share_embeddings else nn.Embedding(cfg.src_vocab, W)
        self.register_buffer("pe", sinusoids(cfg.max_len, W), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(W, cfg.heads, cfg.dropout, fused=cfg.fused)
                                     for _ in range(cfg.encoder_layers))
        self.encoder_ln = nn.LayerNorm(W)
        self.decoder = nn.ModuleList(Block(W, cfg.heads, cfg.dropout, causal=True, cross=True, fused=cfg.fused)
                                     for _ in range(cfg.decoder_layers))
        self.decoder_ln = nn.LayerNorm(W)
        self.head = nn.Linear(W, cfg.tgt_vocab, bias=False)
        self.head.weight = self.tgt_embed.weight
        # Embeddings N(0, 0.02) as GPT-2's, not N(0, 1/width): the head is the target embedding, and at the
        # start the residual stream is mostly the input token's embedding times sqrt(width), so each position
        # gives its own input token a logit of about (0.02 width)^2 / |stream|: 2 at width 256 (about 13 with
        # N(0, 1/width), which started the loss 5 nats above ln V). Learning is as fast after the first steps.
        gpt2_init(self, cfg.encoder_layers + cfg.decoder_layers)

    def _embed(self, embed: nn.Embedding, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        if start + idx.shape[1] > self.cfg.max_len:
            raise ValueError(f"position {start + idx.shape[1] - 1} is past max_len {self.cfg.max_len}")
        return self.drop(embed(idx) * math.sqrt(self.cfg.width) + self.pe[start:start + idx.shape[1]])

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S), padded with pad_id -> memory (B, S, width) and its padding mask (B, S)."""
        pad = src == self.cfg.pad_id
        x = self._embed(self.src_embed, src)
        for block in self.encoder:
            x = block(x, pad)
        return self.encoder_ln(x), pad

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
               cache: list[dict] | None = None) -> torch.Tensor:
        """tgt (B, T) -> logits (B, T, tgt_vocab). With a cache, tgt holds only the new tokens."""
        x = self._embed(self.tgt_embed, tgt, cached_length(cache) if cache else 0)
        for i, block in enumerate(self.decoder):
            x = block(x, memory=memory, memory_pad=memory_pad, cache=None if cache is None else cache[i])
        return self.head(self.decoder_ln(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (B, S); tgt_in (B, T), the target shifted right (bos first) -> logits (B, T, tgt_vocab)."""
        return self.decode(tgt_in, *self.encode(src))

    # decoding (pillars.models.decoding): the state is the memory, its padding mask and the decoder's KV cache
    def start(self, src: torch.Tensor, copies: int) -> tuple[dict, torch.Tensor]:
        """Encode once, repeat each source `copies` times (beams); an empty cache, and bos for each row."""
        memory, pad = self.encode(src)
        memory, pad = memory.repeat_interleave(copies, 0), pad.repeat_interleave(copies, 0)
        bos = torch.full((len(memory), 1), self.cfg.bos_id, dtype=torch.long, device=src.device)
        return {"memory": memory, "pad": pad, "cache": [{} for _ in self.decoder]}, bos

    def step(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        return self.decode(tokens, state["memory"], state["pad"], state["cache"])[:, -1]

    def reorder(self, state: dict, rows: torch.Tensor) -> None:
        for layer in state["cache"]:   # a source's rows share one memory: its cross-attention K/V need no move
            layer["self"]["k"], layer["self"]["v"] = layer["self"]["k"][rows], layer["self"]["v"][rows]

    def greedy(self, src: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
        return decoding.greedy(self, src, max_len)

    def beam_search(self, src: torch.Tensor, beam: int = 4, max_len: int | None = None,
                    length_penalty: float = 0.6) -> list[list[int]]:
        return decoding.beam_search(self, src, beam, max_len, length_penalty)

    @torch.no_grad()
    def cross_attention(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """The decoder's cross-attention weights (decoder layers, B, heads, T, S) while it reads tgt_in
        teacher-forced."""
        mods = [block.cross for block in self.decoder]
        for m in mods:
            m.record = True
        try:
            self(src, tgt_in)
            return torch.stack([m.weights for m in mods])
        finally:
            for m in mods:
                m.record, m.weights = False, None


# ----------------------------------------------------------------------------- encoder classifier (BERT-style)

@dataclass
class EncoderClassifierConfig:
    vocab_size: int = 100
    num_classes: int = 2
    width: int = 128
    heads: int = 4
    layers: int = 2
    max_len: int = 512        # positions, the [CLS] token's included
    dropout: float = 0.1
    fused: bool = True
    pool: str = "cls"         # what the classifier reads: the [CLS] output, or "mean": the mean of the tokens'


class Encoder(nn.Module):
    """A bidirectional encoder (Devlin et al. 2019): a learned [CLS] vector is put before the tokens and
    every position reads every other. Keys at and after `lengths` are masked, so whatever follows the real
    tokens has no effect. Positions are learned. The body `EncoderClassifier` and `MaskedLanguageModel`
    share, parameter for parameter: a pretrained one's weights load into the other (`encoder_state`)."""

    def __init__(self, cfg: EncoderClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos = nn.Embedding(cfg.max_len, cfg.width)
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout, fused=cfg.fused)
                                    for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)

    def encode(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx (B, T) with padding after the real tokens, lengths (B,) -> (B, 1 + T, width): [CLS] first."""
        B, T = idx.shape
        if T + 1 > self.cfg.max_len:
            raise ValueError(f"{T} tokens and [CLS] exceed max_len {self.cfg.max_len}")
        x = torch.cat([self.cls.expand(B, -1, -1), self.tok(idx)], dim=1)
        x = self.drop(x + self.pos(torch.arange(T + 1, device=idx.device)))
        pad = torch.arange(T + 1, device=idx.device) > lengths.unsqueeze(1)   # [CLS] shifts tokens by one
        for block in self.blocks:
            x = block(x, pad)
        return self.ln_f(x)


def real_positions(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool: the positions before each row's length (its real tokens, not the padding after them)."""
    return torch.arange(T, device=lengths.device) < lengths.unsqueeze(1)


ENCODER_PARTS = ("tok", "pos", "cls", "blocks", "ln_f")   # the attributes of `Encoder`'s parameters


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of `model` that belong to its `Encoder` body (not a classifier's or MLM's head)."""
    return {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ENCODER_PARTS}


class EncoderClassifier(Encoder):
    """An encoder whose [CLS] output is read by a linear classifier (BERT's sequence classification), or the
    mean of its token outputs (`pool="mean"`, as Sentence-BERT): a masked language model never trains [CLS]
    (BERT trained it by next-sentence prediction), while every token's output is what it learned."""

    def __init__(self, cfg: EncoderClassifierConfig):
        super().__init__(cfg)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        gpt2_init(self, cfg.layers)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx (B, T) with padding after the real tokens, lengths (B,) -> logits (B, classes)."""
        h = self.encode(idx, lengths)
        if self.cfg.pool == "mean":
            real = real_positions(lengths, idx.shape[1]).unsqueeze(-1)
            return self.head((h[:, 1:] * real).sum(1) / real.sum(1).clamp(min=1))
        return self.head(h[:, 0])


class MaskedLanguageModel(Encoder):
    """BERT's pretraining objective (Devlin et al. 2019, section 3.1): some tokens are hidden (`bert_masking`)
    and the encoder predicts each from both sides of its context. The output layer is BERT's: a dense layer
    with GELU and LayerNorm, then the token embeddings' transpose (tied weights) plus a bias."""

    def __init__(self, cfg: EncoderClassifierConfig):
        super().__init__(cfg)
        self.transform = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.LayerNorm(cfg.width))
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        gpt2_init(self, cfg.layers)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T), lengths (B,) -> token logits (B, T, vocab), or (N, vocab) at the N positions where the
        boolean (B, T) `where` is set (the masked ones: the loss reads no other)."""
        h = self.encode(idx, lengths)[:, 1:]
        if where is not None:
            h = h[where]
        return self.transform(h) @ self.tok.weight.T + self.bias


def bert_masking(idx: torch.Tensor, lengths: torch.Tensor, mask_id: int, vocab_size: int, first_word: int,
                 rate: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """BERT's corruption (Devlin et al. 2019, section 3.1 and appendix A.1): each real token is chosen with
    probability `rate` (as Hugging Face's DataCollatorForLanguageModeling; BERT's own code chooses exactly
    round(rate x length) of them); of the chosen, 80% become [MASK], 10% a random token, 10% stay as they are, and the model must
    predict all of them. Ids below `first_word` (padding, unknown, [MASK]) are never chosen or drawn.
    A `generator` must be on idx's device. Returns (corrupted idx, where (B, T) bool: the chosen positions,
    targets (N,): their original ids)."""
    B, T = idx.shape
    real = real_positions(lengths, T) & (idx >= first_word)
    where = real & (torch.rand(B, T, generator=generator, device=idx.device) < rate)
    v = torch.rand(B, T, generator=generator, device=idx.device)
    random_ids = torch.randint(first_word, vocab_size, (B, T), generator=generator, device=idx.device)
    out = idx.clone()
    out[where & (v < 0.8)] = mask_id
    swap = where & (v >= 0.8) & (v < 0.9)
    out[swap] = random_ids[swap]
    return out, where, idx[where]


# ----------------------------------------------------------------------------- ViT (Dosovitskiy et al. 2020)

@dataclass
class ViTConfig:
    image_size: int = 28
    patch: int = 7            # 28 / 7 = 4 x 4 = 16 patches, each one token
    in_channels: int = 1
    num_classes: int = 10
    width: int = 128
    heads: int = 4
    layers: int = 6
    dropout: float = 0.1
    fused: bool = True


class ViT(nn.Module):
    """An image as a sequence of patches: each patch x patch square is linearly embedded (a Conv2d with
    stride = kernel = patch is exactly that), a learned [CLS] token goes first, learned positions are
    added, and the encoder's [CLS] output is classified. With no convolutional prior it needs more data
    or augmentation than a CNN of its size."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.image_size % cfg.patch:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch {cfg.patch}")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch) ** 2
        self.patches = nn.Conv2d(cfg.in_channels, cfg.width, cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, cfg.width) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout, fused=cfg.fused)
                                    for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        gpt2_init(self, cfg.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> logits (B, classes)."""
        x = self.patches(x).flatten(2).transpose(1, 2)              # (B, patches, width)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        x = self.drop(x + self.pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, 0]))
