"""Thread pinning, determinism, matmul precision and versions for PyTorch."""
import torch

__all__ = ["configure", "versions", "precision"]

# PyTorch's own defaults, as found at import, before anything is set
DEFAULTS = {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def configure(threads):
    """Intra-op threads, inter-op threads (settable once per process) and deterministic kernels."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has already started in this process
        pass
    # use_deterministic_algorithms(True) sets the same switch, and also imports
    # torch._inductor (torch.compile's, 2 s of imports, sympy among them) to set its flag;
    # nothing here compiles
    torch.set_deterministic_debug_mode("error")
    precision(pinned=True)
    return {"torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def versions():
    return {"torch": torch.__version__}


def precision(pinned=True):
    """Full float32 matmuls and convolutions (pinned), or PyTorch's defaults; -> what is in
    effect. On CPU the float32 switches change nothing (TF32 is a GPU format); float16 and
    bfloat16 matmuls go to oneDNN (mkldnn) where the CPU has it, accumulating in float32,
    and the cuBLAS reduced-precision-reduction flags concern GPUs only."""
    torch.set_float32_matmul_precision("highest" if pinned else DEFAULTS["float32_matmul_precision"])
    torch.backends.cudnn.allow_tf32 = False if pinned else DEFAULTS["cudnn_allow_tf32"]
    cuda = torch.backends.cuda.matmul
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": cuda.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda_allow_fp16_reduced_precision_reduction":
                cuda.allow_fp16_reduced_precision_reduction,
            "cuda_allow_bf16_reduced_precision_reduction":
                cuda.allow_bf16_reduced_precision_reduction,
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
