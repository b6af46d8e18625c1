"""Attention from its equation against the fused kernel, and the four Transformer models on one block."""
import math

import pytest
import torch
import torch.nn.functional as F

from pillars.models import transformer as tf
from pillars.models.sampling import sample_next


def set_fused(model, fused: bool):
    for m in model.modules():
        if isinstance(m, tf.MultiHeadAttention):
            m.fused = fused


def _run(attn, x, **kw):
    out = attn(x, **kw)[0]
    inputs = [x] + ([kw["memory"]] if kw.get("memory") is not None else [])
    grads = torch.autograd.grad(out.pow(2).sum(), inputs + list(attn.parameters()))
    return out, grads


CASES = {
    "causal": dict(causal=True),
    "key-padding": dict(pad=True),
    "causal+padding": dict(causal=True, pad=True),
    "cross": dict(cross=True, pad=True),
}


@pytest.mark.parametrize("case", CASES)
def test_explicit_and_fused_paths_agree(case):
    opts = CASES[case]
    torch.manual_seed(0)
    attn = tf.MultiHeadAttention(32, 4, causal=opts.get("causal", False))
    x = torch.randn(3, 7, 32, requires_grad=True)
    kw = {}
    Tk = 7
    if opts.get("cross"):
        kw["memory"] = torch.randn(3, 9, 32, requires_grad=True)
        Tk = 9
    if opts.get("pad"):
        lengths = torch.tensor([Tk, Tk - 2, 3])
        kw["key_padding_mask"] = torch.arange(Tk) >= lengths.unsqueeze(1)
    attn.fused = True
    fast = _run(attn, x, **kw)
    attn.fused = False
    slow = _run(attn, x, **kw)
    torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=0)
    for a, b in zip(fast[1], slow[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_explicit_attention_equals_a_direct_computation():
    torch.manual_seed(0)
    attn = tf.MultiHeadAttention(16, 2, causal=True, fused=False)
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out, weights = attn(x, key_padding_mask=pad, need_weights=True)
    Wk, Wv = attn.kv.weight.chunk(2)
    bk, bv = attn.kv.bias.chunk(2)
    heads = []
    for h in range(2):
        s = slice(8 * h, 8 * h + 8)
        q = x @ attn.q.weight[s].T + attn.q.bias[s]
        k = x @ Wk[s].T + bk[s]
        v = x @ Wv[s].T + bv[s]
        scores = q @ k.transpose(1, 2) / math.sqrt(8)
        hidden = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1) | pad[:, None, :]
        w = torch.softmax(scores.masked_fill(hidden, float("-inf")), -1)
        torch.testing.assert_close(weights[:, h], w)
        heads.append(w @ v)
    torch.testing.assert_close(out, attn.proj(torch.cat(heads, -1)), atol=1e-6, rtol=0)
    assert weights.shape == (2, 2, 5, 5)
    assert (weights[1, :, :, 3:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    # and the same mask through F.scaled_dot_product_attention
    attn.fused = True
    assert attn(x, key_padding_mask=pad)[1] is None
    torch.testing.assert_close(attn(x, key_padding_mask=pad)[0], out, atol=1e-6, rtol=0)


def _gpt(**kw):
    cfg = dict(vocab_size=23, context=16, layers=2, heads=2, width=32, dropout=0.0)
    return tf.GPT(tf.GPTConfig(**{**cfg, **kw})).eval()


def test_gpt_is_causal_and_tied():
    torch.manual_seed(0)
    model = _gpt()
    assert model.head.weight is model.tok.weight
    idx = torch.randint(0, 23, (2, 12))
    logits = model(idx)[0]
    assert logits.shape == (2, 12, 23)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 23
    torch.testing.assert_close(model(changed)[0][:, :7], logits[:, :7])


@pytest.mark.parametrize("fused", [True, False])
def test_gpt_cache_equals_recomputing(fused):
    torch.manual_seed(0)
    model = _gpt(fused=fused)
    idx = torch.randint(0, 23, (2, 11))
    full = model(idx)[0]
    logits, cache = model(idx[:, :5])
    parts = [logits]
    for a, b in [(5, 6), (6, 8), (8, 11)]:          # one token, then chunks of new tokens
        logits, cache = model(idx[:, a:b], cache)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    assert tf.cached_length(cache) == 11
    prompt = idx[:, :4]
    assert torch.equal(model.generate(prompt, 10, temperature=0), model.generate(prompt, 10, temperature=0,
                                                                                     use_cache=False))


def test_gpt_generates_past_its_context():
    torch.manual_seed(0)
    model = _gpt(context=8)
    prompt = torch.randint(0, 23, (2, 5))
    out = model.generate(prompt, 12, temperature=0)
    assert out.shape == (2, 17) and torch.equal(out[:, :5], prompt)
    assert torch.equal(out, model.generate(prompt, 12, temperature=0, use_cache=False))
    # each token past the context is the greedy choice given the last `context` tokens
    for t in range(8, 17):
        assert torch.equal(model(out[:, t - 8:t])[0][:, -1].argmax(-1), out[:, t])
    long_prompt = torch.randint(0, 23, (1, 20))
    assert model.generate(long_prompt, 3, top_k=5, top_p=0.9).shape == (1, 23)
    with pytest.raises(ValueError):
        model(torch.randint(0, 23, (1, 9)))


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]])       # probabilities 0.70, 0.26, 0.03, 0.01
    g = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, 1.0, 0, g, top_p=0.9).item() for _ in range(300)}
    assert picks == {0, 1}
    assert {sample_next(logits, 1.0, 0, g, top_p=0.5).item() for _ in range(50)} == {0}
    # top_p = 0 is the sampler it always was: the same draws from the same generator
    wide = torch.randn(4, 50)
    a = sample_next(wide, 0.8, 10, torch.Generator().manual_seed(1))
    kth = torch.topk(wide / 0.8, 10).values[:, -1:]
    ref = torch.multinomial(F.softmax((wide / 0.8).masked_fill(wide / 0.8 < kth, float("-inf")), -1), 1,
                            generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, ref)


def _seq2seq(**kw):
    cfg = dict(src_vocab=20, tgt_vocab=20, width=32, heads=2, encoder_layers=2, decoder_layers=2, dropout=0.0,
               max_len=24, pad_id=0, bos_id=1, eos_id=2)
    return tf.Seq2SeqTransformer(tf.Seq2SeqConfig(**{**cfg, **kw})).eval()


def test_seq2seq_source_padding_changes_nothing():
    torch.manual_seed(0)
    model = _seq2seq()
    src = torch.randint(3, 20, (3, 6))
    src[1, 4:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(3, 20, (3, 5))
    tgt[:, 0] = 1
    more = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(more, tgt), model(src, tgt), atol=1e-5, rtol=0)
    assert model.greedy(more, 8) == model.greedy(src, 8)


def test_seq2seq_decoder_is_causal_and_greedy_uses_the_cache_right():
    torch.manual_seed(0)
    model = _seq2seq()
    src = torch.randint(3, 20, (2, 7))
    tgt = torch.randint(3, 20, (2, 9))
    tgt[:, 0] = 1
    logits = model(src, tgt)
    changed = tgt.clone()
    changed[:, 5:] = 0                                   # e.g. padding after the real target
    torch.testing.assert_close(model(src, changed)[:, :5], logits[:, :5])
    # greedy with the KV cache picks the argmax of a teacher-forced pass over its own output
    out = model.greedy(src, 10)
    for s, toks in zip(src, out):
        steps = model(s[None], torch.tensor([[1] + toks]))[0].argmax(-1).tolist()
        assert steps[:len(toks)] == toks


def test_beam_of_one_is_greedy():
    torch.manual_seed(1)
    model = _seq2seq()
    src = torch.randint(3, 20, (4, 6))
    src[3, 3:] = 0
    for max_len in (5, 12):
        assert model.beam_search(src, beam=1, max_len=max_len) == model.greedy(src, max_len)
    wide = model.beam_search(src, beam=4, max_len=12)
    assert len(wide) == 4 and all(len(t) <= 12 and 2 not in t for t in wide)


def _overfit(model, loss_fn, steps=40, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    first = loss_fn().item()
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_gpt_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = _gpt()
    idx = torch.randint(0, 23, (4, 16))
    first, last = _overfit(model, lambda: F.cross_entropy(model(idx[:, :-1])[0].flatten(0, 1), idx[:, 1:].flatten()))
    assert last < 0.3 * first


def test_seq2seq_overfits_reversal_and_decodes_it():
    torch.manual_seed(0)
    model = _seq2seq()
    src = torch.randint(3, 20, (8, 6))
    tgt = torch.cat([torch.ones(8, 1, dtype=torch.long), src.flip(1), torch.full((8, 1), 2)], 1)
    first, last = _overfit(model, lambda: F.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten()),
                           steps=100)
    assert last < 0.1 * first
    model.eval()
    want = src.flip(1).tolist()
    assert model.greedy(src, 10) == want
    assert model.beam_search(src, beam=3, max_len=10) == want
    assert model.beam_search(src, beam=1, max_len=10) == want


def test_encoder_classifier_ignores_what_follows_lengths_and_learns():
    torch.manual_seed(0)
    model = tf.EncoderClassifier(tf.EncoderClassifierConfig(vocab_size=30, num_classes=3, width=32, heads=2,
                                                            layers=2, max_len=16, dropout=0.0)).eval()
    idx = torch.randint(1, 30, (3, 10))
    lengths = torch.tensor([10, 6, 3])
    for row, n in enumerate(lengths):
        idx[row, n:] = 0
    garbage = idx.clone()
    garbage[1, 6:] = 7
    garbage[2, 3:] = 11
    torch.testing.assert_close(model(garbage, lengths), model(idx, lengths), atol=1e-5, rtol=0)
    assert model(idx, lengths).shape == (3, 3)
    y = torch.tensor([0, 1, 2])
    first, last = _overfit(model, lambda: F.cross_entropy(model(idx, lengths), y), steps=30)
    assert last < 0.1 * first


def test_vit_shapes_gradients_and_learning():
    torch.manual_seed(0)
    model = tf.ViT(tf.ViTConfig(image_size=28, patch=7, width=32, heads=2, layers=2, dropout=0.0))
    x = torch.randn(6, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (6, 10)
    logits.sum().backward()
    assert model.patches.weight.grad.abs().sum() > 0 and model.pos.grad.abs().sum() > 0
    y = torch.arange(6)
    first, last = _overfit(model, lambda: F.cross_entropy(model(x), y), steps=30, lr=1e-2)
    assert last < 0.1 * first


def test_attention_distance_of_uniform_attention_is_a_quarter_of_the_context():
    """With W^Q = 0 every score is 0, so each query attends uniformly over itself and the past: query i's
    mean distance is i / 2, and the mean over i = 0..T-1 is (T - 1) / 4, for every layer and head."""
    from pillars.explain import attention_distance
    torch.manual_seed(0)
    model = tf.GPT(tf.GPTConfig(vocab_size=20, context=32, layers=2, heads=2, width=16, dropout=0.0)).eval()
    for block in model.blocks:
        torch.nn.init.zeros_(block.attn.q.weight)
        torch.nn.init.zeros_(block.attn.q.bias)
    dist = attention_distance(model, torch.randint(0, 20, (500,)), windows=3)
    assert dist.shape == (2, 2) and abs(dist - 31 / 4).max() < 1e-4
    assert all(not b.attn.record and b.attn.weights is None for b in model.blocks)   # switched back off


def test_one_query_with_a_cache_needs_no_mask():
    attn = tf.MultiHeadAttention(16, 2, causal=True)
    q, k = torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 5, 8)
    assert attn._allowed(q, k, None) is None
    assert attn._allowed(torch.zeros(1, 2, 2, 8), k, None).tolist() == [[True] * 4 + [False], [True] * 5]


def test_vit_cls_attention_maps_are_written(tmp_path):
    from PIL import Image
    from pillars.explain import attention_modules, plot_cls_attention, recorded
    torch.manual_seed(0)
    model = tf.ViT(tf.ViTConfig(width=16, heads=2, layers=2)).eval()
    x = torch.randn(3, 1, 28, 28)
    with recorded(attention_modules(model)) as mods:
        model(x)
        w = mods[0].weights
        assert w.shape == (3, 2, 17, 17) and torch.allclose(w.sum(-1), torch.ones(3, 2, 17))
    plot_cls_attention(model, x, tmp_path / "maps.png")
    with Image.open(tmp_path / "maps.png") as im:
        im.verify()


def test_seq2seq_first_loss_is_within_a_nat_of_ln_v():
    # the head is the embedding: unscaled, each position predicted its own input token and started near 13.9
    torch.manual_seed(0)
    V = 8000
    model = _seq2seq(src_vocab=V, tgt_vocab=V, width=256, heads=4, encoder_layers=3, decoder_layers=3, max_len=98,
                     share_embeddings=True)
    src, tgt = torch.randint(3, V, (8, 30)), torch.randint(3, V, (8, 31))
    logits = model(src, tgt[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten()).item()
    assert abs(loss - math.log(V)) < 1.0, loss
    # the input token is no strong favourite: its logit stands about 2.5 above the others (13 before)
    copies = F.cross_entropy(logits.flatten(0, 1), tgt[:, :-1].flatten()).item()
    assert copies > math.log(V) - 3, copies
