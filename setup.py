"""Builds convkit's C++ (and, where possible, CUDA) extension against the installed torch.

`pip install --no-build-isolation .` compiles `convkit._C` here. A plain
`pip install .` builds in an isolated environment without torch: then the
sources are installed inside the package and compiled on first import
(convkit/_ops.py), cached per torch version and build flags.
"""
import importlib.util
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("convkit_build", os.path.join(ROOT, "convkit", "_build.py"))
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


class BuildPyWithSources(build_py):
    """Ships csrc/ and cuda/ inside the package so an install without a
    compiled library can build it on first import."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "convkit", "_src")
        for folder in ("csrc", "cuda"):
            if not os.path.isdir(os.path.join(ROOT, folder)):
                continue
            dest = os.path.join(target, folder)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(os.path.join(ROOT, folder), dest,
                            ignore=shutil.ignore_patterns("*.o", "*.so", "__pycache__"))


def extension_modules():
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("convkit: torch is not importable in this build environment; installing the sources, "
              "which compile on first import (use `pip install --no-build-isolation .` to build now)")
        return [], {}

    with_cuda, reason = build.want_cuda(torch.version.cuda is not None)
    print(f"convkit: building the C++ extension for torch {torch.__version__}; "
          f"CUDA kernels {'included' if with_cuda else 'skipped'} ({reason})")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", build.DEFAULT_CUDA_ARCHS)
    sources = build.cpu_sources(ROOT) + (build.cuda_sources(ROOT) if with_cuda else [])
    sources = [os.path.relpath(s, ROOT) for s in sources]
    extension = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    compile_args = {"cxx": build.cxx_flags(torch.__version__)}
    if with_cuda:
        compile_args["nvcc"] = build.nvcc_flags(torch.__version__)
    module = extension(
        "convkit._C",
        sources,
        include_dirs=build.include_dirs(ROOT),
        extra_compile_args=compile_args,
        extra_link_args=build.link_flags(),
        define_macros=[("CONVKIT_WITH_CUDA", "1")] if with_cuda else [],
    )
    return [module], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
cmdclass["build_py"] = BuildPyWithSources
setup(ext_modules=ext_modules, cmdclass=cmdclass)
