"""Thread pinning, determinism and versions for PyTorch."""
import torch

__all__ = ["configure", "versions"]


def configure(threads):
    """Intra-op threads, inter-op threads (settable once per process) and deterministic kernels."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has already started in this process
        pass
    torch.use_deterministic_algorithms(True)
    return {"torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def versions():
    return {"torch": torch.__version__}
