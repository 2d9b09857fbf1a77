"""The math of each layer type: the forward from the builders' shared first docstring line
(source.py), the backward written here, in the same notation.

Notation: dy = dL/dy arrives from the layer above, dx = dL/dx goes to the layer below, B
is the batch, a sum "over the batch" runs over every axis but the features' (time steps
too), ^T transposes, * multiplies elementwise. These are the formulas the NumPy column
implements by hand and the other three columns get from autodiff.
"""
from ..spec.catalog import PARSERS

BACKWARD = {
    "sigmoid": ["dx = dy * y (1 - y)     (from the output y: sigma' = sigma (1 - sigma))"],
    "tanh": ["dx = dy * (1 - y^2)              (from the output y)"],
    "relu": ["dx = dy * [x > 0]     (0 at x = 0, the subgradient every framework picks)"],
    "leaky_relu": ["dx = dy if x > 0 else alpha * dy"],
    "gelu": ["dx = dy * (Phi(x) + x phi(x)),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)"],
    "identity": ["dx = dy"],
    "dropout": ["dx = dy * mask / (1 - rate)      (the same mask and scale as the forward)"],
    "flatten": ["dx = dy reshaped back to (B, H, W, C)"],
    "dense": ["dW = x^T dy     (summed over the batch: one outer product per example)",
              "db = sum over the batch of dy",
              "dx = dy W^T"],
    "conv2d": ["dW[u, v] = sum over b, i, j of xpad[b, i*sh+u, j*sw+v]^T dy[b, i, j]",
               "db = sum over b, i, j of dy[b, i, j]",
               "dxpad[b, i*sh+u, j*sw+v] += dy[b, i, j] W[u, v]^T, then the padding cropped"],
    "maxpool2d": ["dx += dy[b, i, j] where window (i, j) has its maximum (the first of ties)",
                  "0 everywhere else; the -inf padding never receives any"],
    "avgpool2d": ["dx[b, i*sh+u, j*sw+v] += dy[b, i, j] / count[i, j]",
                  "count[i, j] = the real (unpadded) pixels under window (i, j)"],
    "batchnorm": ["xhat = (x - mean) / sqrt(var + eps),  g = dy * gamma,  N positions a channel",
                  "dgamma = sum of dy * xhat,  dbeta = sum of dy          (over the batch)",
                  "dx = 1 / (N sqrt(var + eps)) * (N g - sum g - xhat * sum(g * xhat))",
                  "     (the mean and the variance depend on every x: the last two terms)"],
    "layernorm": ["xhat = (x - mean) / sqrt(var + eps) over the D features,  g = dy * gamma",
                  "dgamma = sum of dy * xhat,  dbeta = sum of dy          (over the batch)",
                  "dx = 1 / (D sqrt(var + eps)) * (D g - sum g - xhat * sum(g * xhat)),",
                  "     sums over the features"],
    "residual": ["dx = dy + (the block's backward of dy)   (both paths, added)"],
    "sequence_mean": ["dx[:, t] = dy / T for every t"],
    "embedding": ["dE[v] = sum of dy over the positions holding token v   (a scatter-add)",
                  "no dx: token ids are integers"],
    "rnn": ["through time, last step first; dh = dy_t + dh from the step after:",
            "dz = dh * (1 - h^2)",
            "dW += x_t^T dz,  dU += h_prev^T dz,  db += sum of dz",
            "dx_t = dz W^T,  dh_prev = dz U^T"],
    "lstm": ["through time, last step first; dh = dy_t + dh from the step after, dc from it:",
             "dc = dc + dh * o * (1 - tanh(c')^2)",
             "dz = [dc * g * i(1-i),  dc * c * f(1-f),  dc * i * (1-g^2),  dh * tanh(c') * o(1-o)]",
             "     (c the previous cell state: the forget gate scales it)",
             "dW += x_t^T dz,  dU += h_prev^T dz,  db += sum of dz",
             "dx_t = dz W^T,  dh_prev = dz U^T,  dc_prev = dc * f"],
    "gru": ["through time, last step first; dh = dy_t + dh from the step after:",
            "dn = dh * (1 - z) * (1 - n^2),  dz = dh * (h_prev - n) * z(1-z)",
            "dr = dn * (h_prev U_n + b[1]_n) * r(1-r)",
            "input side [dr, dz, dn], recurrent side [dr, dz, dn * r]:",
            "dW += x_t^T (input side),  dU += h_prev^T (recurrent side),",
            "db[0], db[1] += their sums",
            "dx_t = (input side) W^T,  dh_prev = (recurrent side) U^T + dh * z"],
    "attention": ["per head, a = softmax(s), s = q k^T / sqrt(key_dim), o = a v:",
                  "do = dy Wo^T (split into heads),  dWo = o^T dy,  dbo = sum of dy",
                  "da = do v^T,  dv = a^T do",
                  "ds = a * (da - sum_k(da * a))                (the softmax's Jacobian)",
                  "dq = ds k / sqrt(key_dim),  dk = ds^T q / sqrt(key_dim)",
                  "dWq = x^T dq, dbq = sum of dq (k, v alike);  dx = dq Wq^T + dk Wk^T + dv Wv^T"],
}

LAYER_TYPES = list(PARSERS)  # the catalog's order, which is the builders' order too


def backward(layer_type):
    return BACKWARD[layer_type]
