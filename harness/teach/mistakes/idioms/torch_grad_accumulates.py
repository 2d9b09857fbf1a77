"""Gradients never zeroed between steps: `.grad` accumulates, step 2 applies g1 + g2"""
FRAMEWORK = "torch"
NETWORK = "mlp_3_4_2"
STEPS = 2        # measured: the gradient the optimizer applies at the last step
LR = 0.5         # mlp_3_4_2's learning rate (plain SGD)
WHY = ("loss.backward() adds into each parameter's .grad; without optimizer.zero_grad() "
       "every step applies the sum of all the gradients so far.")


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


def half_squared_error(out, y):
    return (0.5 * (out - y) ** 2).sum(1).mean()


def wrong(params, x, y):
    import torch
    net = model(params)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(STEPS):
        half_squared_error(net(x), y).backward()    # adds this step's gradient to .grad
        optimizer.step()
    return gradients(net)                           # what the last step applied


def right(params, x, y):
    import torch
    net = model(params)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(STEPS):
        optimizer.zero_grad()
        half_squared_error(net(x), y).backward()
        optimizer.step()
    return gradients(net)
