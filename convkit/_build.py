"""Build configuration shared by setup.py and the on-import compiler (no torch import here).

One place says which sources make up the extension and which flags compile
them, so `pip install --no-build-isolation .` and the first-import build of a
plain `pip install .` produce the same library.
"""
import glob
import os
import shutil

DEFAULT_CUDA_ARCHS = "8.0;9.0"


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cpu_sources(root):
    return sorted(glob.glob(os.path.join(root, "csrc", "*.cpp")) + glob.glob(os.path.join(root, "csrc", "cpu", "*.cpp")))


def cuda_sources(root):
    return sorted(glob.glob(os.path.join(root, "csrc", "cuda", "*.cpp")) + glob.glob(os.path.join(root, "cuda", "*.cu")))


def include_dirs(root):
    return [os.path.join(root, "csrc"), os.path.join(root, "cuda")]


def cxx_flags(torch_version):
    flags = ["-O3", "-fopenmp", "-fvisibility=hidden", f'-DCONVKIT_TORCH_VERSION="{torch_version}"']
    if env_flag("CONVKIT_SANITIZE"):
        # -fno-wrapv undoes the -fwrapv that Python's compile flags add, so
        # UBSan reports signed overflow instead of letting it wrap silently.
        flags = [f for f in flags if f != "-O3"] + ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv",
                                                   "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    return flags


def link_flags():
    flags = ["-fopenmp"]
    if env_flag("CONVKIT_SANITIZE"):
        flags += ["-fsanitize=address,undefined"]
    return flags


def nvcc_flags(torch_version):
    flags = ["-O3", "--use_fast_math", "-std=c++17", "--expt-relaxed-constexpr", f'-DCONVKIT_TORCH_VERSION="{torch_version}"']
    return flags


def want_cuda(torch_has_cuda):
    """Returns (build_cuda, reason)."""
    if env_flag("CONVKIT_CPU_ONLY"):
        return False, "CONVKIT_CPU_ONLY=1"
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    if env_flag("CONVKIT_FORCE_CUDA"):
        return True, "CONVKIT_FORCE_CUDA=1"
    if not torch_has_cuda:
        return False, "this torch has no CUDA"
    if not nvcc:
        return False, "nvcc not found"
    return True, f"torch has CUDA and nvcc is at {nvcc}"


def build_tag(torch_version, with_cuda):
    """Names a build: the torch it was made for and the flags that shaped it."""
    parts = ["torch" + torch_version.replace("+", "_"), "cuda" if with_cuda else "cpu"]
    if env_flag("CONVKIT_SANITIZE"):
        parts.append("asan")
    return "-".join(parts)
