"""`output.backward(losses)` where the scalar loss's `loss.backward()` was meant"""
FRAMEWORK = "torch"
NETWORK = "mlp_3_4_2"   # dense 4, sigmoid, dense 2, sigmoid; half squared error, batch mean
WHY = ("output.backward(v) computes v^T d(output)/d(params), a vector-Jacobian product: "
       "seeded with the per-example losses instead of dL/d(output) = (output - y) / B, it "
       "is not the gradient of any loss.")


def model(params):
    """The 3-4-2 sigmoid network, as nn.Sequential, holding the given weights."""
    import torch
    from torch import nn
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2), nn.Sigmoid()).double()
    with torch.no_grad():
        for i in (0, 2):   # nn.Linear stores W transposed: weight is (out, in)
            net[i].weight.copy_(torch.from_numpy(params[f"{i}.W"].T))
            net[i].bias.copy_(torch.from_numpy(params[f"{i}.b"]))
    return net


def gradients(net):
    """.grad of every parameter, by the spec's names, W back in its (in, out) layout."""
    return {name: None if g is None else (g.T if name.endswith("W") else g).numpy().copy()
            for i in (0, 2) for name, g in ((f"{i}.W", net[i].weight.grad),
                                            (f"{i}.b", net[i].bias.grad))}


def wrong(params, x, y):
    import torch
    net = model(params)
    out = net(torch.from_numpy(x))
    losses = 0.5 * (out - torch.from_numpy(y)) ** 2   # (B, 2): each example's and output's loss
    out.backward(losses)                              # the losses as the seed of the backward pass
    return gradients(net)


def right(params, x, y):
    import torch
    net = model(params)
    out = net(torch.from_numpy(x))
    losses = 0.5 * (out - torch.from_numpy(y)) ** 2
    losses.sum(1).mean().backward()                   # the scalar loss: seeded with dL/dL = 1
    return gradients(net)
