"""sepbn.nn.functional: eq. (6)-(7) against a naive per-sample, per-group loop; BN reduction; gradients."""

import pytest
import torch
import torch.nn.functional as F

from sepbn.nn import functional as SF


def naive_sep_batch_norm(x, mean, var, weight, bias, pi, eps):
    """Reference kept in tests: explicit loops over samples, groups and branches."""
    n, c = x.shape[:2]
    g, k = pi.shape[1:]
    m = c // g
    x_hat = (x - mean.view(1, c, 1, 1)) / torch.sqrt(var.view(1, c, 1, 1) + eps)
    y = torch.empty_like(x)
    for i in range(n):
        for j in range(g):
            ch = slice(j * m, (j + 1) * m)
            gamma = sum(pi[i, j, b] * weight[b, ch] for b in range(k))
            beta = sum(pi[i, j, b] * bias[b, ch] for b in range(k))
            y[i, ch] = gamma.view(m, 1, 1) * x_hat[i, ch] + beta.view(m, 1, 1)
    return y


def random_case(n=3, c=8, g=2, k=3, h=5, w=4, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype) * 2 + 0.5
    weight = torch.randn(k, c, generator=gen, dtype=dtype)
    bias = torch.randn(k, c, generator=gen, dtype=dtype)
    pi = torch.softmax(torch.randn(n, g, k, generator=gen, dtype=dtype), dim=-1)
    return x, weight, bias, pi


@pytest.mark.parametrize("grad", [False, True])
def test_training_matches_naive_loop(grad):
    x, weight, bias, pi = random_case()
    if grad:  # the analytic-backward path
        x.requires_grad_(True)
    var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    expected = naive_sep_batch_norm(x.detach(), mean, var, weight, bias, pi, 1e-5)
    got = SF.sep_batch_norm(x, None, None, weight, bias, pi, training=True)
    torch.testing.assert_close(got.detach(), expected)


def test_eval_uses_running_stats_and_matches_naive_loop():
    x, weight, bias, pi = random_case(g=4, k=2)
    rm, rv = torch.randn(8, dtype=torch.float64), torch.rand(8, dtype=torch.float64) + 0.5
    got = SF.sep_batch_norm(x, rm, rv, weight, bias, pi, training=False, eps=1e-3)
    torch.testing.assert_close(got, naive_sep_batch_norm(x, rm, rv, weight, bias, pi, 1e-3))


def test_running_stats_update_like_batch_norm():
    x, weight, bias, pi = random_case(dtype=torch.float32)
    rm, rv = torch.zeros(8), torch.ones(8)
    rm_bn, rv_bn = rm.clone(), rv.clone()
    SF.sep_batch_norm(x, rm, rv, weight, bias, pi, training=True, momentum=0.3)
    F.batch_norm(x, rm_bn, rv_bn, training=True, momentum=0.3)
    torch.testing.assert_close(rm, rm_bn)
    torch.testing.assert_close(rv, rv_bn)


def test_one_hot_attention_is_batch_norm_with_that_branch():
    x, weight, bias, _ = random_case(k=3)
    pi = F.one_hot(torch.tensor([[2, 2], [2, 2], [2, 2]]), 3).double()
    expected = F.batch_norm(x, None, None, weight[2], bias[2], training=True)
    torch.testing.assert_close(SF.sep_batch_norm(x, None, None, weight, bias, pi, training=True), expected)


def test_mix_affine_is_linear_in_attention():
    _, weight, bias, pi = random_case()
    g1, b1 = SF.mix_affine(pi, weight, bias)
    g2, b2 = SF.mix_affine(2 * pi, weight, bias)
    torch.testing.assert_close(g2, 2 * g1)
    torch.testing.assert_close(b2, 2 * b1)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_float64(training):
    x, weight, bias, pi = random_case(n=2, c=4, g=2, k=2, h=3, w=3)
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    inputs = [t.clone().requires_grad_(True) for t in (x, weight, bias, pi)]

    def fn(x, weight, bias, pi):
        return SF.sep_batch_norm(x, rm.clone(), rv.clone(), weight, bias, pi, training=training)

    assert torch.autograd.gradcheck(fn, inputs)


def test_analytic_backward_equals_autograd_of_plain_ops(monkeypatch):
    x, weight, bias, pi = random_case()
    grad_out = torch.randn_like(x)

    def grads():
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias, pi)]
        SF.sep_batch_norm(*leaves[:1], None, None, *leaves[1:], training=True).backward(grad_out)
        return [t.grad for t in leaves]

    fused = grads()
    monkeypatch.setattr(SF, "_use_fused", lambda *tensors: False)
    plain = grads()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b)


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match=r"3-D"):
        SF.sep_batch_norm(torch.randn(2, 4, 5), None, None, torch.ones(1, 4), torch.zeros(1, 4), torch.ones(2, 1, 1))


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_fast_batch_stats_match_var_mean(offset):
    x = torch.randn(4, 8, 16, 16) + offset + torch.linspace(-3, 3, 8).view(1, 8, 1, 1)
    mean, var = SF.fast_batch_stats(x)
    ref_var, ref_mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean.double(), ref_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(var.double(), ref_var, atol=1e-5, rtol=1e-4)
