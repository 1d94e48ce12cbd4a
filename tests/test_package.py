"""Package-wide consistency: every public Keras object is registered and configurable."""

import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
import zipfile

import keras
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import keras_dlu

SUBPACKAGES = ["callbacks", "distributed", "layers", "memory", "ops", "optimizers",
               "quantization"]
KERAS_BASES = (keras.layers.Layer, keras.optimizers.Optimizer, keras.callbacks.Callback,
               keras.constraints.Constraint)


def public_keras_classes():
    for package in SUBPACKAGES:
        module = getattr(keras_dlu, package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, KERAS_BASES):
                yield f"{package}.{name}", obj


def test_every_subpackage_exports_what_it_lists():
    for package in SUBPACKAGES:
        module = getattr(keras_dlu, package)
        assert module.__all__, package
        for name in module.__all__:
            assert hasattr(module, name), f"keras_dlu.{package}.{name}"


@pytest.mark.parametrize("name,cls", list(public_keras_classes()))
def test_public_keras_classes_are_registered_and_configurable(name, cls):
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"keras_dlu>{cls.__name__}", name
    assert keras.saving.get_registered_object(registered) is cls
    assert "get_config" in vars(cls) or any(
        "get_config" in vars(base) for base in cls.__mro__[1:] if base.__module__.startswith(
            "keras_dlu")), f"{name} must define get_config"
    assert cls.__doc__ and len(cls.__doc__.strip()) > 40, f"{name} needs a docstring"


# --- packaging: declared dependencies, the wheel, lazy imports ------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _pins():
    pins = {}
    with open(os.path.join(REPO, "requirements.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range():
    """requirements.txt (what `make setup` installs) must satisfy pyproject's ranges."""
    project, pins = _pyproject(), _pins()
    declared = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    assert {"tensorflow", "keras", "numpy"} <= {Requirement(r).name for r in project["dependencies"]}
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned"
        assert requirement.specifier.contains(pins[name]), (line, pins[name])
    assert "horovod" in pins and not any("horovod" in r for r in declared)  # built by script


def _copy_of_the_sources(destination):
    """The checkout's tracked and untracked-but-not-ignored files, nothing built."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if os.path.isfile(os.path.join(REPO, name)):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), destination / name)


def _build_wheel(tmp_path, library, env):
    """`pip wheel` of a source copy, with the already-built native library up to date."""
    source = tmp_path / "src"
    _copy_of_the_sources(source)
    build_lib = source / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    (build_lib / "keras_dlu").mkdir(parents=True)
    shutil.copy2(library, build_lib / "keras_dlu" / "_dlu_ops.so")
    os.utime(build_lib / "keras_dlu" / "_dlu_ops.so")  # newer than every source
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                    "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("keras_dlu-*.whl")
    return wheel


def _venv_with_wheel(venv_dir, wheel, env):
    """A fresh venv that sees .venv's packages through a .pth file, with the wheel in it."""
    venv.EnvBuilder(with_pip=False).create(venv_dir)
    python = str(venv_dir / "bin" / "python")
    site_dir = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site_dir, "dot_venv_packages.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: no editable finder
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
                    str(wheel)], check=True, env=env, cwd=venv_dir.parent, timeout=300)
    return python, site_dir


# run inside the installed wheel's venv: imports it and multiplies exactly with the native op
WHEEL_CHECK = textwrap.dedent("""
    import os, sys
    import keras_dlu
    assert "tensorflow" not in sys.modules
    from keras_dlu.ops import dlu_matmul, load_library
    load_library()
    import numpy as np
    a = np.arange(12, dtype="float32").reshape(3, 4) / 8
    print(keras_dlu.__file__)
    # multiples of 2**-3 below 2: exact in 8-bit fixed point with exponent -3
    product, _ = dlu_matmul(a, a.T, -3, -3, bits=8)
    print(float(np.abs(np.asarray(product) - a @ a.T).max()))
""")


def test_wheel_installs_and_imports_outside_the_checkout(tmp_path, native_ops):
    """`pip wheel .` of a copy of the source files, installed into a fresh venv elsewhere.

    The native library compiled by `make setup` is put where setuptools' build_ext finds it
    up to date (so the test does not spend minutes recompiling it); everything else is the
    ordinary `pip wheel` path. The venv sees .venv's packages through a .pth file (no
    downloads) but not the checkout or the editable install.
    """
    library = os.path.join(REPO, "keras_dlu", "_dlu_ops.so")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(KERAS_DLU_CUDA="0", TF_CPP_MIN_LOG_LEVEL="2", PIP_NO_INDEX="1")
    wheel = _build_wheel(tmp_path, library, env)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert archive.read("keras_dlu/_dlu_ops.so") == open(library, "rb").read()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert "keras_dlu/_build_info.json" in names and not any(n.startswith("tests/") for n in names)
    assert b"Requires-Dist: tensorflow" in metadata and b"Requires-Dist: keras" in metadata

    python, site_dir = _venv_with_wheel(tmp_path / "venv", wheel, env)
    done = subprocess.run([python, "-c", WHEEL_CHECK], env=env, cwd=tmp_path, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    location, error = done.stdout.split()
    assert location.startswith(site_dir) and not location.startswith(REPO)
    assert float(error) == 0.0
    info = subprocess.run([str(tmp_path / "venv" / "bin" / "keras-dlu"), "info"], env=env,
                          cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert info.returncode == 0 and "native ops        loaded" in info.stdout, info.stdout
