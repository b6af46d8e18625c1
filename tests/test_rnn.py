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
