"""LUR's second-order gradient must equal a finite-difference derivative of its objective.

J(theta) = w_r L_r(theta) + w_u L_u(theta - alpha grad L_r(theta)); we compare autograd's
dJ/dtheta (through create_graph) with central differences in float64.
"""

import torch
import torch.nn.functional as F

from pipeline.methods import build_method


def tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    xf, yf = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 3, (5,))
    xr, yr = torch.randn(7, 3, dtype=torch.float64), torch.randint(0, 3, (7,))
    return model, (xf, yf), (xr, yr)


def objective_by_hand(model, params, forget, retain, alpha, w_r, w_u):
    """J written out independently of the method, from a flat parameter vector."""
    shapes = [p.shape for p in model.parameters()]
    def unflat(v):
        out, i = [], 0
        for s in shapes:
            n = s.numel()
            out.append(v[i : i + n].view(s))
            i += n
        return out
    def forward(ps, x):
        w1, b1, w2, b2 = ps
        return torch.tanh(x @ w1.T + b1) @ w2.T + b2
    ps = unflat(params)
    lr = F.cross_entropy(forward(ps, retain[0]), retain[1])
    g = torch.autograd.grad(lr, ps, create_graph=True)
    fast = [p - alpha * gi for p, gi in zip(ps, g)]
    lu = -F.cross_entropy(forward(fast, forget[0]), forget[1])
    return w_r * lr + w_u * lu


def test_second_order_gradient_matches_finite_differences():
    model, forget, retain = tiny()
    alpha, w_r, w_u = 0.3, 1.0, 0.7
    method = build_method("lur", alpha=alpha, w_r=w_r, w_u=w_u, order="second")
    loss, _ = method.loss(model, forget, retain, 0.0)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    analytic = torch.cat([g.flatten() for g in grads])

    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    eps = 1e-6
    numeric = torch.zeros_like(theta)
    for i in range(len(theta)):
        e = torch.zeros_like(theta)
        e[i] = eps
        plus = objective_by_hand(model, (theta + e).requires_grad_(), forget, retain, alpha, w_r, w_u)
        minus = objective_by_hand(model, (theta - e).requires_grad_(), forget, retain, alpha, w_r, w_u)
        numeric[i] = (plus - minus).item() / (2 * eps)
    # The method's loss value is the same objective.
    assert abs(loss.item() - objective_by_hand(model, theta.clone().requires_grad_(), forget, retain, alpha, w_r, w_u).item()) < 1e-10
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_first_order_drops_exactly_the_hessian_term():
    model, forget, retain = tiny()
    params = list(model.parameters())
    first = build_method("lur", alpha=0.3, w_u=0.7, order="first")
    second = build_method("lur", alpha=0.3, w_u=0.7, order="second")
    g1 = torch.cat([g.flatten() for g in torch.autograd.grad(first.loss(model, forget, retain, 0.0)[0], params)])
    g2 = torch.cat([g.flatten() for g in torch.autograd.grad(second.loss(model, forget, retain, 0.0)[0], params)])
    # First order = w_r grad L_r(theta) + w_u grad L_u(theta'), theta' with a constant step.
    lr = F.cross_entropy(model(retain[0]), retain[1])
    g_r = torch.autograd.grad(lr, params)
    fast = {n: p.detach() - 0.3 * g for (n, p), g in zip(model.named_parameters(), g_r)}
    fast = {n: t.requires_grad_() for n, t in fast.items()}
    lu = -F.cross_entropy(torch.func.functional_call(model, fast, (forget[0],)), forget[1])
    g_u = torch.autograd.grad(lu, list(fast.values()))
    expected = torch.cat([(a + 0.7 * b).flatten() for a, b in zip(g_r, g_u)])
    torch.testing.assert_close(g1, expected)
    assert not torch.allclose(g1, g2)  # the second-order term is really there
