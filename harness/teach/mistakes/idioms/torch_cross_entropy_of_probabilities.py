"""`nn.CrossEntropyLoss` given softmax probabilities: it takes logits, and log-softmaxes them"""
FRAMEWORK = "torch"
NETWORK = {"name": "mlp_3_4_2_softmax", "seed": 0, "input_shape": [3],
           "data": {"source": "random_classification", "classes": 2, "examples": 16},
           "layers": [{"type": "dense", "units": 4}, {"type": "sigmoid"},
                      {"type": "dense", "units": 2}],
           "loss": {"type": "softmax_cross_entropy"}}
WHY = ("nn.CrossEntropyLoss is log_softmax then the negative log-likelihood: fed "
       "probabilities it softmaxes them again, a loss whose gradient shrinks as the model "
       "grows confident and never matches the cross-entropy of the logits.")


def model(params):
    """The 3-4-2 network ending in two logits, as nn.Sequential, with the given weights."""
    import torch
    from torch import nn
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)).double()
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
    from torch import nn
    net = model(params)
    probs = torch.softmax(net(torch.from_numpy(x)), dim=1)
    nn.CrossEntropyLoss()(probs, torch.from_numpy(y)).backward()
    return gradients(net)


def right(params, x, y):
    import torch
    from torch import nn
    net = model(params)
    logits = net(torch.from_numpy(x))
    nn.CrossEntropyLoss()(logits, torch.from_numpy(y)).backward()
    return gradients(net)
