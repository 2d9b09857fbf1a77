"""The dense layer of the 3-4-2 sigmoid network, and three wrong ways to write its backward.

y = x W + b: x (B, in), W (in, out), b (out,). The right backward, from dL/dy = dy:
dW = x^T dy (a sum over the batch of outer products x_b dy_b), db = sum over the batch of
dy, dx = dy W^T. The loss already averages over the batch, so dy carries its 1/B.
"""
import numpy as np

import crossgrad

NETWORK = "mlp_3_4_2"   # the zoo's 3-4-2 sigmoid network: dense 4, sigmoid, dense 2, sigmoid


@crossgrad.layer("dense_right")
class Dense:
    """y = x W + b"""
    keys = {"units": int}

    def params(self, in_shape):
        return {"W": ((in_shape[-1], self.units), "glorot_uniform"), "b": ((self.units,), "zeros")}

    def out_shape(self, in_shape):
        return (self.units,)

    def numpy_forward(self, p, x):
        return x @ p["W"] + p["b"], x

    def numpy_backward(self, p, x, dy):
        dW = x.T @ dy                    # (in, B) @ (B, out): every example's outer product
        db = dy.sum(0)
        return dy @ p["W"].T, {"W": dW, "b": db}

    def torch(self, p, x):
        return x @ p["W"] + p["b"]

    def tensorflow(self, p, x):
        return x @ p["W"] + p["b"]

    def jax(self, p, x):
        return x @ p["W"] + p["b"]


@crossgrad.layer("dense_without_outer_product")
class DenseWithoutOuterProduct(Dense):
    """dW = sum_b dy, the same in every row: the outer product with the input x is missing"""
    at = 2   # the output layer: the tutorial's dL/dW2
    why = ("W[i, j] carries input i to output j, so its gradient is x_i times dy_j summed "
           "over the batch; without x every row of dW is the same number.")

    def numpy_backward(self, p, x, dy):
        dW = np.tile(dy.sum(0), (len(p["W"]), 1))   # the "delta" alone, copied into each row
        db = dy.sum(0)
        return dy @ p["W"].T, {"W": dW, "b": db}


@crossgrad.layer("dense_transposed")
class DenseTransposed(Dense):
    """dW = dy^T x, reshaped to W's shape: the transpose forgotten, the shape error silenced"""
    at = 0   # the hidden layer: W (3, 4)
    why = ("dy^T x is (out, in), the transpose of dW; reshaping it to (in, out) makes the "
           "shapes fit and moves every entry to the wrong place.")

    def numpy_backward(self, p, x, dy):
        dW = (dy.T @ x).reshape(p["W"].shape)
        db = dy.sum(0)
        return dy @ p["W"].T, {"W": dW, "b": db}


@crossgrad.layer("dense_bias_averaged")
class DenseBiasAveraged(Dense):
    """db = mean over the batch of dy: the loss's 1/B applied a second time"""
    at = 2
    why = ("The mean-reduced loss already put 1/B into dy; averaging again divides the "
           "bias gradient by the batch size once more (here 16).")

    def numpy_backward(self, p, x, dy):
        dW = x.T @ dy
        db = dy.mean(0)
        return dy @ p["W"].T, {"W": dW, "b": db}

