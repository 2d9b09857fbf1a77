"""Plain PyTorch loops of the zoo's networks: what a PyTorch user writes first.

An nn.Module, torch.optim, `loss.backward()`, and a loop that keeps every recorded number
(the loss, the global gradient norm, one norm per layer) as a tensor and reads them once at
the end. The same math as the spec (softmax cross-entropy on class ids, mean; L1/L2 on the
weight matrices when the spec asks; clipping by the global norm; the spec's optimizer) with
torch's own initial weights and layouts (NCHW images, two LSTM biases): this is the
baseline `crossgrad bench --step-time` times each implementation against, not a reference
for its numbers.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn


def mlp(*sizes):
    """dense-tanh-...-dense: the LeCun MLPs."""
    layers = [nn.Linear(sizes[0], sizes[1])]
    for n_in, n_out in zip(sizes[1:], sizes[2:]):
        layers += [nn.Tanh(), nn.Linear(n_in, n_out)]
    return nn.Sequential(*layers)


def digits_cnn():
    """(conv 3x3 same, ReLU, 2x2 max-pool) twice, then dense: 8x8x1 images, NCHW."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


class LastState(nn.Module):
    """An LSTM over (B, T, F), then a dense layer on its last hidden state."""

    def __init__(self, features=4, units=16, classes=3):
        super().__init__()
        self.lstm, self.head = nn.LSTM(features, units, batch_first=True), nn.Linear(units, classes)

    def forward(self, x):
        _, (h, _) = self.lstm(x)           # h (1, B, H)
        return self.head(h[0])

    def groups(self):
        return [self.lstm, self.head]


class TinyTransformer(nn.Module):
    """Embedding, x + attention(LN(x)) (causal, 2 heads of 8), x + MLP(LN(x)) (GELU), LN,
    mean over time, dense: the zoo's tiny_transformer."""

    def __init__(self, vocab=16, dim=16, heads=2, hidden=32, classes=3, time=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm3, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        self.register_buffer("future", torch.ones(time, time, dtype=torch.bool).triu(1))

    def forward(self, tokens):
        h = self.embed(tokens)             # (B, T, D)
        a = self.norm1(h)
        h = h + self.attn(a, a, a, attn_mask=self.future, need_weights=False)[0]
        h = h + self.mlp(self.norm2(h))
        return self.head(self.norm3(h).mean(1))

    def groups(self):  # the canonical layers: embedding, two residual blocks, LN, dense
        return [self.embed, nn.ModuleList([self.norm1, self.attn]),
                nn.ModuleList([self.norm2, self.mlp]), self.norm3, self.head]


NETWORKS = {"mnist_mlp": lambda: mlp(784, 300, 100, 10),
            "digits_mlp": lambda: mlp(64, 300, 100, 10),
            "digits_cnn": digits_cnn, "seq_lstm": LastState, "tiny_transformer": TinyTransformer}


def optimizer_for(spec, parameters):
    o = spec["optimizer"]
    if o["type"] == "sgd":
        return torch.optim.SGD(parameters, lr=o["lr"])
    if o["type"] in ("adam", "adamw"):
        kind = torch.optim.Adam if o["type"] == "adam" else torch.optim.AdamW
        return kind(parameters, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                    weight_decay=o["weight_decay"])
    raise NotImplementedError(f"no plain loop for optimizer {o['type']}")


def build(name, spec):
    """The network of zoo model `name` in the spec's dtype, its optimizer and its layer groups."""
    net = NETWORKS[name]().to(getattr(torch, spec["dtype"]))
    groups = net.groups() if hasattr(net, "groups") else [m for m in net if list(m.parameters())]
    optimizer = optimizer_for(spec, list(net.parameters()))
    return {"net": net, "optimizer": optimizer,
            "groups": [list(g.parameters()) for g in groups], "cfg": spec["train"],
            "weights": [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))],
            "images": len(spec["input_shape"]) == 3,
            "initial": copy.deepcopy((net.state_dict(), optimizer.state_dict()))}


def reset(plain):
    """Back to the initial weights and a fresh optimizer state, as every timed call of the
    implementation starts from the spec's."""
    net_state, optimizer_state = plain["initial"]
    plain["net"].load_state_dict(net_state)
    plain["optimizer"].load_state_dict(optimizer_state)


def train(plain, x, y, batches):
    """len(batches) steps; -> the curves, read from the device once."""
    net, optimizer, cfg = plain["net"], plain["optimizer"], plain["cfg"]
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if plain["images"]:
        x = x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once
    losses, squares = [], []
    for idx in batches:
        idx = torch.as_tensor(idx)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x[idx]), y[idx])
        if cfg["l1"] or cfg["l2"]:
            loss = loss + sum(cfg["l1"] * w.abs().sum() + cfg["l2"] * (w * w).sum()
                              for w in plain["weights"])
        loss.backward()
        per_layer = torch.stack([sum((p.grad * p.grad).sum() for p in g) for g in plain["groups"]])
        if cfg["clip_norm"] is not None:
            scale = (cfg["clip_norm"] / per_layer.sum().sqrt()).clamp(max=1.0)
            for p in net.parameters():
                p.grad.mul_(scale)
        optimizer.step()
        losses.append(loss.detach())
        squares.append(per_layer)
    squares = torch.stack(squares)
    return {"loss": torch.stack(losses).tolist(), "grad_norm": squares.sum(1).sqrt().tolist(),
            "layer_norms": squares.sqrt().T.tolist()}


def matmul(n, dtype):
    """One synchronised (n, n) @ (n, n) matmul: the GEMM probe of the machine's peak."""
    a, b = torch.randn(2, n, n, dtype=getattr(torch, dtype))
    out = torch.empty(n, n, dtype=a.dtype)
    return lambda: torch.mm(a, b, out=out)  # CPU: returns when done
