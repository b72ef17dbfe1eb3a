"""Loads the compiled operator library, building it on first import when needed."""
import glob
import importlib.util
import os
import sys

import torch

from . import _build

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REBUILD_HINT = ("rebuild it against the installed torch with `pip install --no-build-isolation --force-reinstall "
                 "--no-deps .` from the convkit source tree")


def _compiled_library():
    spec = importlib.util.find_spec("convkit._C")
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".so") else None


def _source_root():
    """Where the C++/CUDA sources are: inside the installed package, or the source tree."""
    for root in (os.path.join(_PACKAGE_DIR, "_src"), os.path.dirname(_PACKAGE_DIR)):
        if glob.glob(os.path.join(root, "csrc", "*.cpp")):
            return root
    return None


def _cache_dir(tag):
    base = os.environ.get("CONVKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "convkit")
    path = os.path.join(base, tag)
    os.makedirs(path, exist_ok=True)
    return path


def _build_on_import(root):
    from torch.utils import cpp_extension

    with_cuda, reason = _build.want_cuda(torch.version.cuda is not None and torch.cuda.is_available())
    tag = _build.build_tag(torch.__version__, with_cuda)
    directory = _cache_dir(tag)
    library = os.path.join(directory, "convkit_jit.so")
    if not os.path.exists(library):
        print(f"convkit: compiling the C++{'/CUDA' if with_cuda else ''} kernels for torch {torch.__version__} "
              f"into {directory} (once; later imports load the cache)", file=sys.stderr)
    sources = _build.cpu_sources(root) + (_build.cuda_sources(root) if with_cuda else [])

    def shell_quoted(flags):  # load() writes flags into a ninja file unquoted
        return [flag.replace('"', '\\"') for flag in flags]

    return cpp_extension.load(
        name="convkit_jit",
        sources=sources,
        extra_include_paths=_build.include_dirs(root),
        extra_cflags=shell_quoted(_build.cxx_flags(torch.__version__) + (["-DCONVKIT_WITH_CUDA=1"] if with_cuda else [])),
        extra_cuda_cflags=shell_quoted(_build.nvcc_flags(torch.__version__)) if with_cuda else None,
        extra_ldflags=_build.link_flags(),
        build_directory=directory,
        is_python_module=True,
        verbose=False,
    )


def _import_extension(path):
    """The compiled module at `path`; importing it registers the ops."""
    spec = importlib.util.spec_from_file_location("convkit._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load():
    """Loads the operator library; returns its Python module."""
    library = _compiled_library()
    root = _source_root() if library is None else None
    if library is None and root is None:
        raise ImportError("convkit: the compiled library convkit._C is missing and no sources were found to "
                          "build it; reinstall convkit with `pip install --no-build-isolation .`")
    try:
        module = _import_extension(library) if library is not None else _build_on_import(root)
    except (OSError, ImportError) as error:
        raise ImportError(f"convkit: could not load the compiled library {library} ({error}); it was probably "
                          f"built against another torch; {_REBUILD_HINT}") from error
    built_for = torch.ops.convkit._build_torch_version()
    if built_for != torch.__version__:
        raise ImportError(f"convkit: the compiled library was built against torch {built_for}, but torch "
                          f"{torch.__version__} is installed; {_REBUILD_HINT}")
    return module


extension = load()
ops = torch.ops.convkit
