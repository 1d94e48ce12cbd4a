"""The ``keras-dlu`` command: ``keras-dlu info`` prints the versions and native-library state."""

import argparse
import sys


def _info(_args):
    from keras_dlu.utils import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras

    import keras_dlu
    from keras_dlu.ops import loader

    print(f"keras-dlu    {keras_dlu.__version__}")
    print(f"tensorflow   {tf.__version__} (built with CUDA: {tf.test.is_built_with_cuda()})")
    print(f"keras        {keras.__version__}")
    try:
        import horovod.tensorflow as hvd

        controllers = [name for name, built in
                       (("gloo", hvd.gloo_built()), ("mpi", hvd.mpi_built())) if built]
        import horovod
        print(f"horovod      {horovod.__version__} (controllers: {', '.join(controllers)})")
    except ImportError as error:
        print(f"horovod      not available ({error})")
    try:
        loader.load_library()
        info = loader.build_info()
        print(f"native ops   loaded (built for TensorFlow {info['tensorflow']}, "
              f"CUDA kernels: {info['cuda']})")
    except loader.NativeLibraryError as error:
        print(f"native ops   NOT loaded: {error}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-dlu", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, controllers and native-library state")
    args = parser.parse_args(argv)
    return {"info": _info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
