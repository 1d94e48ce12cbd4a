"""horovodrun worker: every rank contributes its rank; all must receive the mean."""

from keras_dlu.utils import quiet_tensorflow

tf = quiet_tensorflow()
import horovod.tensorflow as hvd  # noqa: E402

from tests.support.horovod import write_result  # noqa: E402

hvd.init()
value = tf.fill([3], float(hvd.rank() + 1))
mean = hvd.allreduce(value, op=hvd.Average, name="launcher_check")
write_result(hvd.rank(), {"size": hvd.size(), "mean": mean.numpy().tolist()})
