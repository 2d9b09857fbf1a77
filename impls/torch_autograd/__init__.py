"""PyTorch: nn.Modules built from the spec, loss.backward() for gradients, torch.optim to update."""
