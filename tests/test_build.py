"""The library loader: a missing or mismatched build fails with an ImportError that says how to rebuild."""
import os
import subprocess
import sys

import pytest
import torch

import convkit
from convkit import _build, _ops


def test_mismatched_torch_version(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    with pytest.raises(ImportError, match="built against torch .* but torch 0.0.1 is installed; rebuild"):
        _ops.load()


def test_missing_library_and_sources(monkeypatch):
    monkeypatch.setattr(_ops, "_compiled_library", lambda: None)
    monkeypatch.setattr(_ops, "_source_root", lambda: None)
    with pytest.raises(ImportError, match="pip install --no-build-isolation"):
        _ops.load()


def test_unloadable_library(monkeypatch, tmp_path):
    broken = tmp_path / "_C.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(_ops, "_compiled_library", lambda: str(broken))
    with pytest.raises(ImportError, match="rebuild it against the installed torch"):
        _ops.load()


def test_build_flags():
    flags = _build.cxx_flags("2.13.0")
    assert "-O3" in flags and "-fopenmp" in flags and '-DCONVKIT_TORCH_VERSION="2.13.0"' in flags
    assert _build.build_tag("2.13.0+cpu", False) == "torch2.13.0_cpu-cpu"


def test_cuda_selection(monkeypatch):
    monkeypatch.setenv("CONVKIT_CPU_ONLY", "1")
    monkeypatch.setenv("CONVKIT_FORCE_CUDA", "1")
    assert _build.want_cuda(True)[0] is False
    monkeypatch.delenv("CONVKIT_CPU_ONLY")
    assert _build.want_cuda(False) == (True, "CONVKIT_FORCE_CUDA=1")
    monkeypatch.delenv("CONVKIT_FORCE_CUDA")
    assert _build.want_cuda(False) == (False, "this torch has no CUDA")


def test_check_command():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(convkit.__file__)))
    result = subprocess.run([sys.executable, "-m", "convkit", "check"], capture_output=True, text=True, timeout=600,
                            cwd="/", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all good" in result.stdout and "ratio" in result.stdout
