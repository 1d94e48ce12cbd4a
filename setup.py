"""Build and install keras-dlu.

The package is pure Python except for ``keras_dlu/_dlu_ops.so``, the library of custom
TensorFlow ops built from ``ops/``:

* ``ops/cc/ops/*.cc``      op registrations and shape functions,
* ``ops/cc/kernels/*.cc``  CPU kernels (and thin GPU adapters, compiled with GOOGLE_CUDA),
* ``ops/cuda/*.cu``        plain CUDA kernels (no TensorFlow headers), compiled by nvcc.

Compile and link flags come from ``tf.sysconfig`` of the TensorFlow that is installed in the
build environment, so build with ``pip install --no-build-isolation``. CUDA sources are
compiled into the same library when ``nvcc`` is on the PATH and TensorFlow was built with
CUDA; set ``KERAS_DLU_CUDA=0`` to force a CPU-only build. The TensorFlow version and the
CUDA flag of the build are recorded in ``keras_dlu/_build_info.json`` so that the loader can
say what to do when they do not match the running TensorFlow.
"""

import glob
import json
import os
import shutil
import subprocess

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = "keras_dlu._dlu_ops"


def _sources(pattern):
    return sorted(glob.glob(os.path.join("ops", pattern), recursive=True))


def _cuda_home():
    """The CUDA toolkit that holds nvcc (nvcc on the PATH may be a wrapper script)."""
    candidates = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    if shutil.which("nvcc"):
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("nvcc")))))
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


def _onednn_home():
    """oneDNN for the integer GEMM of dlu_matmul (Debian libdnnl-dev, installed by
    scripts/setup_env.sh); ``KERAS_DLU_ONEDNN=0`` or no oneDNN: a portable kernel instead."""
    if os.environ.get("KERAS_DLU_ONEDNN", "1") == "0":
        return None
    for home in filter(None, [os.environ.get("DNNL_ROOT"), "/usr", "/usr/local"]):
        if os.path.exists(os.path.join(home, "include", "dnnl.h")):
            return home
    return None


def _want_cuda(tf):
    if os.environ.get("KERAS_DLU_CUDA", "1") == "0":
        return False
    return shutil.which("nvcc") is not None and _cuda_home() and tf.test.is_built_with_cuda()


class BuildTensorFlowOps(build_ext):
    """Builds the op library with TensorFlow's flags and nvcc for the ``.cu`` files."""

    def get_ext_filename(self, ext_name):
        # TensorFlow loads it with tf.load_op_library: a plain name, not a CPython suffix.
        return os.path.join(*ext_name.split(".")) + ".so"

    def build_extensions(self):
        import tensorflow as tf  # the installed TensorFlow; hence --no-build-isolation

        compile_flags = list(tf.sysconfig.get_compile_flags())
        link_flags = list(tf.sysconfig.get_link_flags())
        use_cuda = _want_cuda(tf)
        for ext in self.extensions:
            ext.extra_compile_args = compile_flags + ["-O3", "-march=x86-64-v3", "-fopenmp"]
            ext.extra_link_args = link_flags + ["-fopenmp"]
            ext.include_dirs = [os.path.join(HERE, "ops")]
            ext.define_macros = []
            onednn = _onednn_home()
            if onednn:
                ext.define_macros.append(("KERAS_DLU_WITH_DNNL", "1"))
                if onednn != "/usr":  # never -I/usr/include: it breaks libstdc++'s include_next
                    ext.include_dirs.append(os.path.join(onednn, "include"))
                    ext.extra_link_args.append("-L" + os.path.join(onednn, "lib"))
                ext.extra_link_args.append("-ldnnl")
            if use_cuda:
                cuda_home = _cuda_home()
                ext.define_macros += [("GOOGLE_CUDA", "1"), ("KERAS_DLU_WITH_CUDA", "1")]
                ext.include_dirs.append(os.path.join(cuda_home, "include"))
                ext.extra_objects = self._compile_cuda(cuda_home)
                ext.extra_link_args += [
                    "-L" + os.path.join(cuda_home, "lib64"), "-lcudart_static", "-ldl", "-lrt"]
        super().build_extensions()
        self._build_info = {"tensorflow": tf.__version__, "cuda": bool(use_cuda),
                            "onednn": bool(_onednn_home())}
        self._write_build_info(os.path.join(self.build_lib, "keras_dlu"))

    def copy_extensions_to_source(self):
        # `build_ext --inplace` and editable installs copy the library into the source tree.
        super().copy_extensions_to_source()
        self._write_build_info(os.path.join(HERE, "keras_dlu"))

    def _compile_cuda(self, cuda_home):
        objects = []
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        for source in _sources("cuda/*.cu"):
            obj = os.path.join(out_dir, os.path.basename(source) + ".o")
            cmd = [os.path.join(cuda_home, "bin", "nvcc"), "-c", source, "-o", obj, "-O3",
                   "-std=c++17", "-Xcompiler", "-fPIC", "-I", os.path.join(HERE, "ops"),
                   "-gencode=arch=compute_80,code=sm_80",
                   "-gencode=arch=compute_90,code=[sm_90,compute_90]"]
            print(" ".join(cmd))
            subprocess.check_call(cmd)
            objects.append(obj)
        return objects

    def _write_build_info(self, package_dir):
        os.makedirs(package_dir, exist_ok=True)
        with open(os.path.join(package_dir, "_build_info.json"), "w") as f:
            json.dump(self._build_info, f)


# Name, version, dependencies and the console script are declared in pyproject.toml.
setup(
    packages=find_packages(include=["keras_dlu", "keras_dlu.*"]),
    package_data={"keras_dlu": ["_dlu_ops.so", "_build_info.json"]},
    ext_modules=[Extension(LIBRARY, sources=_sources("cc/**/*.cc"), language="c++",
                           depends=_sources("**/*.h") + _sources("cuda/*.cu"))],
    cmdclass={"build_ext": BuildTensorFlowOps},
)
