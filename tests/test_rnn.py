"""The LSTM and RNN written from the equations against the library's fused kernels, and the models on them."""
import pytest
import torch
import torch.nn as nn

from pillars.models import rnn


def _run(layer, x, state):
    out, final = layer(x, state)
    finals = final if isinstance(final, tuple) else (final,)
    loss = out.pow(2).sum() + sum(f.sum() for f in finals)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return out, finals, grads


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_equations_equal_nn_lstm(batch_first):
    torch.manual_seed(0)
    ours = rnn.LSTM(7, 16, num_layers=2, batch_first=batch_first, fused=False)
    ref = nn.LSTM(7, 16, num_layers=2, batch_first=batch_first)
    ref.load_state_dict(ours.state_dict())           # interchangeable state dicts, both ways
    ours.load_state_dict(ref.state_dict())
    shape = (3, 11, 7) if batch_first else (11, 3, 7)
    x = torch.randn(*shape, requires_grad=True)
    state = (torch.randn(2, 3, 16), torch.randn(2, 3, 16))
    a, b = _run(ours, x, state), _run(ref, x, state)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
    for fa, fb in zip(a[1], b[1]):
        torch.testing.assert_close(fa, fb, atol=1e-5, rtol=0)
    for ga, gb in zip(a[2], b[2]):
        torch.testing.assert_close(ga, gb, atol=1e-5, rtol=0)


def test_fused_flag_switches_paths_on_the_same_parameters():
    torch.manual_seed(1)
    layer = rnn.LSTM(5, 8, batch_first=True, fused=False)
    x = torch.randn(2, 20, 5)
    slow = layer(x)[0]
    layer.fused = True
    torch.testing.assert_close(layer(x)[0], slow, atol=1e-5, rtol=0)
    assert set(layer.state_dict()) == set(nn.LSTM(5, 8).state_dict())


def test_forget_gate_bias_starts_at_one():
    layer = rnn.LSTM(4, 6)
    b = layer.bias_ih_l0 + layer.bias_hh_l0
    torch.testing.assert_close(b[6:12], torch.ones(6))


def test_tanh_rnn_equations_equal_nn_rnn():
    torch.manual_seed(0)
    ours = rnn.RNN(6, 12, num_layers=2, batch_first=True, fused=False)
    ref = nn.RNN(6, 12, num_layers=2, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 9, 6, requires_grad=True)
    h0 = torch.randn(2, 4, 12)
    a, b = _run(ours, x, h0), _run(ref, x, h0)
    for ta, tb in zip([a[0], *a[1], *a[2]], [b[0], *b[1], *b[2]]):
        torch.testing.assert_close(ta, tb, atol=1e-5, rtol=0)


def test_language_model_ties_weights_and_is_causal():
    torch.manual_seed(0)
    model = rnn.LanguageModel(rnn.LanguageModelConfig(vocab_size=30, embed=16, hidden=24, layers=2, dropout=0.0))
    assert model.head.weight is model.embedding.weight
    idx = torch.randint(0, 30, (2, 12))
    logits, _ = model(idx)
    assert logits.shape == (2, 12, 30)
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 30
    torch.testing.assert_close(model(changed)[0][:, :8], logits[:, :8])   # the future does not leak
    # carrying the state over a split sequence equals reading it whole
    first, state = model(idx[:, :5])
    second, _ = model(idx[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), logits, atol=1e-5, rtol=0)
    # cells() reads the same memory as the running model
    model.rnn.fused = False
    assert model.cells(idx).shape == (2, 12, 24)


def test_generate_is_greedy_at_temperature_zero_and_respects_top_k():
    torch.manual_seed(0)
    model = rnn.LanguageModel(rnn.LanguageModelConfig(vocab_size=20, embed=8, hidden=8, layers=1)).eval()
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, 6, temperature=0)
    assert out.shape == (1, 9) and torch.equal(out[:, :3], prompt)
    assert torch.equal(out, model.generate(prompt, 6, temperature=0))
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    picks = {rnn.sample_next(logits, 1.0, 2).item() for _ in range(200)}
    assert picks <= {1, 2}


def test_classifier_reads_only_real_tokens():
    torch.manual_seed(0)
    model = rnn.SequenceClassifier(rnn.SequenceClassifierConfig(vocab_size=50, dropout=0.0)).eval()
    idx = torch.randint(1, 50, (3, 10))
    lengths = torch.tensor([10, 6, 3])
    padded = idx.clone()
    for row, n in enumerate(lengths):
        padded[row, n:] = 0
    garbage = padded.clone()
    garbage[1, 6:] = 7
    torch.testing.assert_close(model(padded, lengths), model(garbage, lengths))


def test_forecaster_starts_from_persistence_and_learns_a_sine():
    torch.manual_seed(0)
    model = rnn.Forecaster(rnn.ForecasterConfig(features=1, horizon=4, hidden=16, layers=1))
    t = torch.arange(0, 400, dtype=torch.float32)
    series = torch.sin(2 * torch.pi * t / 24)
    starts = torch.arange(0, 300, 3)
    x = torch.stack([series[s:s + 48] for s in starts]).unsqueeze(-1)
    y = torch.stack([series[s + 48:s + 52] for s in starts])
    torch.testing.assert_close(model(x), x[:, -1:, 0].expand(-1, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    persistence = (x[:, -1:, 0] - y).pow(2).mean()
    for _ in range(150):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * persistence.item()


def test_the_fused_lstm_runs_under_bf16_autocast_on_any_cpu():
    """oneDNN's LSTM refuses bf16 on CPUs without AVX-512; there the kernel runs in fp32 inside a bf16 run."""
    from pillars.models.rnn import LSTM
    torch.manual_seed(0)
    lstm = LSTM(16, 32, num_layers=2, batch_first=True)
    x = torch.randn(3, 7, 16)
    exact, _ = lstm(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, (h, c) = lstm(x)
    assert h.shape == c.shape == (2, 3, 32)
    torch.testing.assert_close(fast.float(), exact, atol=3e-2, rtol=3e-2)


# ----------------------------------------------------------------------------- encoder-decoder with attention

def _seq2seq(**kw) -> rnn.Seq2SeqLSTM:
    cfg = dict(src_vocab=20, tgt_vocab=20, embed=32, hidden=32, encoder_layers=2, decoder_layers=2, dropout=0.0,
               max_len=16)
    return rnn.Seq2SeqLSTM(rnn.Seq2SeqLSTMConfig(**{**cfg, **kw}))


def test_attention_equals_an_explicit_softmax_over_its_scores_forward_and_backward():
    torch.manual_seed(0)
    B, T, S, H, E = 3, 4, 6, 5, 7
    att = rnn.Attention(H, H, E).double()
    s = torch.randn(B, T, H, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(B, S, H, dtype=torch.float64, requires_grad=True)
    lengths = [6, 4, 1]
    pad = torch.arange(S)[None] >= torch.tensor(lengths)[:, None]
    out, weights = att(s, memory, pad)

    # the scores as sums over the entries of W_a, one (t, j) at a time, and the softmax over real positions only
    W_a, W_c = att.w_a.weight, att.w_c.weight           # W_a: (query, memory), W_c: (out, memory + query)
    rows, all_weights = [], []
    for b in range(B):
        for t in range(T):
            scores = torch.stack([sum(s[b, t, k] * W_a[k, l] * memory[b, j, l] for k in range(H) for l in range(H))
                                  for j in range(lengths[b])])
            a = scores.exp() / scores.exp().sum()
            context = sum(a[j] * memory[b, j] for j in range(lengths[b]))
            rows.append(torch.tanh(W_c @ torch.cat([context, s[b, t]])))
            all_weights.append(torch.cat([a, a.new_zeros(S - lengths[b])]))
    explicit = torch.stack(rows).view(B, T, E)
    torch.testing.assert_close(weights, torch.stack(all_weights).view(B, T, S))
    torch.testing.assert_close(out, explicit)
    assert (weights[pad[:, None, :].expand(-1, T, -1)] == 0).all()

    r = torch.randn(B, T, E, dtype=torch.float64)
    params = [s, memory, W_a, W_c]
    for g, g_explicit in zip(torch.autograd.grad((out * r).sum(), params),
                             torch.autograd.grad((explicit * r).sum(), params)):
        torch.testing.assert_close(g, g_explicit)


def test_reverse_padded_reverses_each_row_within_its_length():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])[..., None]
    flipped = rnn.reverse_padded(x, torch.tensor([3, 2]))
    assert flipped[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    assert torch.equal(rnn.reverse_padded(flipped, torch.tensor([3, 2])), x)


def test_seq2seq_lstm_ignores_source_padding_and_starts_at_ln_v():
    torch.manual_seed(0)
    model = _seq2seq().eval()
    src = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])
    tgt = torch.tensor([[1, 4, 5, 6], [1, 7, 8, 9]])
    alone = model(src[:1, :4], tgt[:1])                       # the first source with no padding at all
    torch.testing.assert_close(model(src, tgt)[:1], alone, atol=1e-5, rtol=0)
    more = torch.cat([src, torch.zeros(2, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(model(more, tgt), model(src, tgt), atol=1e-5, rtol=0)
    assert model.greedy(more, 8) == model.greedy(src, 8)
    # the first loss is near ln V: every token about equally likely
    big = _seq2seq(src_vocab=8000, tgt_vocab=8000, embed=256, hidden=256, share_embeddings=True)
    loss = nn.functional.cross_entropy(big(torch.randint(3, 8000, (8, 30)), torch.randint(3, 8000, (8, 30))).flatten(0, 1),
                                       torch.randint(3, 8000, (240,)))
    assert abs(loss.item() - torch.log(torch.tensor(8000.0)).item()) < 0.1


def test_seq2seq_lstm_learns_reversal_and_beam_search_is_as_good_as_greedy():
    torch.manual_seed(0)
    model = _seq2seq(src_vocab=13, tgt_vocab=13, share_embeddings=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def pairs(n):   # sources of 3-6 tokens (ids 3..12), padded; targets: bos, the source reversed, eos
        lengths = torch.randint(3, 7, (n,), generator=g)
        src = torch.randint(3, 13, (n, 6), generator=g) * (torch.arange(6) < lengths[:, None])
        tgt = [[1, *reversed(row[:k].tolist()), 2] for row, k in zip(src, lengths)]
        return src, torch.tensor([t + [0] * (8 - len(t)) for t in tgt])

    for _ in range(300):
        src, tgt = pairs(64)
        loss = nn.functional.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src, tgt = pairs(200)
    want = [[t for t in row[1:].tolist() if t > 2] for row in tgt]
    greedy = model.greedy(src, 10)
    beam = model.beam_search(src, beam=4, max_len=10)
    assert model.beam_search(src[:20], beam=1, max_len=10) == greedy[:20]   # a beam of one is greedy
    exact = [sum(h == w for h, w in zip(out, want)) / len(want) for out in (greedy, beam)]
    assert exact[0] > 0.9 and exact[1] >= exact[0], exact


def test_the_bf16_probe_asks_onednn_even_while_decoding_has_switched_it_off():
    # greedy and beam search switch oneDNN off; the first probe of a process may come from there
    rnn.bf16_lstm_kernel_runs_here.cache_clear()
    with rnn._onednn(False):
        while_decoding = rnn.bf16_lstm_kernel_runs_here()
    rnn.bf16_lstm_kernel_runs_here.cache_clear()
    assert while_decoding == rnn.bf16_lstm_kernel_runs_here()
    model = _seq2seq().eval()
    src = torch.randint(3, 20, (3, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.beam_search(src, beam=2, max_len=5) and model(src, src).shape == (3, 6, 20)
