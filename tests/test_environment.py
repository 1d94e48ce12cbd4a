"""The suite's own prerequisite checks: CI may never pass by skipping what it must run."""

import pytest

import keras_dlu.ops
from tests.support import environment


@pytest.fixture
def cpu_only_library(monkeypatch, native_ops):
    monkeypatch.setattr(keras_dlu.ops, "built_with_cuda", lambda: False)


@pytest.mark.parametrize("ci", ["true", "false"])
def test_a_cpu_only_build_on_a_gpu_machine_with_nvcc_fails_in_ci(monkeypatch, cpu_only_library,
                                                                   ci):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(environment, "gpu_available", lambda: True)
    monkeypatch.setattr(environment.shutil, "which", lambda name: f"/opt/cuda/bin/{name}")
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected, match="built without CUDA, although this machine has a GPU"):
        environment.require_cuda_library()


@pytest.mark.parametrize("gpu, nvcc", [(False, "/opt/cuda/bin/nvcc"), (True, None)])
def test_a_cpu_only_build_only_skips_where_cuda_could_not_be_built(monkeypatch,
                                                                    cpu_only_library, gpu, nvcc):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(environment, "gpu_available", lambda: gpu)
    monkeypatch.setattr(environment.shutil, "which", lambda name: nvcc)
    with pytest.raises(pytest.skip.Exception, match="built without CUDA"):
        environment.require_cuda_library()
