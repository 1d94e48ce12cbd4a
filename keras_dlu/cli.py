"""The ``keras-dlu`` command.

    keras-dlu info             versions, Horovod controllers, native library, CPU GEMM features
    keras-dlu bench [--quick]  runs every benchmarks/*.py, writes reports/benchmarks.md
"""

import argparse
import sys

from keras_dlu import report


def _horovod_line():
    try:
        import horovod
        import horovod.tensorflow as hvd
    except ImportError as error:
        return f"not available ({error})"
    controllers = [name for name, built in (("gloo", hvd.gloo_built()),
                                            ("mpi", hvd.mpi_built())) if built]
    return f"{horovod.__version__} (controllers: {', '.join(controllers) or 'none'})"


def _native_line():
    from keras_dlu.ops import loader

    try:
        loader.load_library()
    except loader.NativeLibraryError as error:
        return f"NOT loaded: {error}"
    info = loader.build_info()
    return (f"loaded (built for TensorFlow {info['tensorflow']}, "
            f"CUDA kernels: {'yes' if info['cuda'] else 'no'})")


def info(_args=None):
    from keras_dlu.utils import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras

    import keras_dlu

    cuda = tf.sysconfig.get_build_info().get("cuda_version", "none")
    gpus = len(tf.config.list_physical_devices("GPU"))
    rows = [
        ("keras-dlu", keras_dlu.__version__),
        ("python", sys.version.split()[0]),
        ("tensorflow", f"{tf.__version__} (CUDA {cuda}; GPUs visible: {gpus})"),
        ("keras", keras.__version__),
        ("horovod", _horovod_line()),
        ("native ops", _native_line()),
        ("CPU integer GEMM", ", ".join(report.cpu_gemm_features()) or "none detected"),
    ]
    for name, value in rows:
        print(f"{name:<18}{value}")
    return 0


def bench(args):
    results = report.run_benchmarks(quick=args.quick, only=args.only)
    path = report.write_benchmarks_markdown(results, quick=args.quick)
    print(f"\nwrote {path}")
    return 0 if all(r.ok for r in results) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="keras-dlu", description="keras-dlu: information and benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, controllers, native library, CPU features")
    bench_parser = commands.add_parser(
        "bench", help="run every benchmark and write reports/benchmarks.md")
    bench_parser.add_argument("--quick", action="store_true",
                              help="small sizes and few repeats (minutes, not tens of minutes)")
    bench_parser.add_argument("--only", action="append", metavar="NAME",
                              help="run only benchmarks/NAME.py (repeatable)")
    args = parser.parse_args(argv)
    return {"info": info, "bench": bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
