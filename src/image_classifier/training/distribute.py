"""train.distribute: none | mirrored | multi_worker, and which worker writes the outputs.

multi_worker is tf.distribute.MultiWorkerMirroredStrategy: every worker runs the same train
stage with its own TF_CONFIG (cluster addresses and its own index; deploy/k8s/training/train-
job.yaml builds it from a Kubernetes Indexed Job's completion index). The global batch is
train.batch_size, split across workers. Only the chief (task "chief", or worker 0 when there is
none) writes saved_models/ and reports/train/; the others write to temporary folders that are
deleted, as TensorFlow's multi-worker guide requires (every worker must take part in saving,
and no two may write the same path).

Keras 3 (up to 3.15 at least, keras-team/keras#20585) cannot fit() under this strategy out
of the box; `patch_keras_for_multi_worker` fixes the two places that fail, only when
multi_worker is asked for:
- before the first step, fit() all-reduces a whole input batch across workers just to learn
  its shapes, and the collective reduce rejects the nested batch: the local replica's batch
  has the same shapes;
- each step's metric values (scalars) are averaged with a reduction along axis 0, which a
  scalar does not have: they are averaged as scalars.
Several steps per call (steps_per_execution > 1) fail under any strategy with more than one
replica, mirrored included (an unfed placeholder in Keras' multi-step loop), so those train one
step per call.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        # Every GPU, or else every CPU device (one, unless logical CPUs were configured).
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        patch_keras_for_multi_worker()
        # Reads the cluster from TF_CONFIG, as on every multi-worker TensorFlow setup.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()  # the default: this one device


def max_steps_per_call(strategy: tf.distribute.Strategy, default: int) -> int:
    """Keras' steps_per_execution: `default`, or 1 with several replicas (see above)."""
    if strategy.num_replicas_in_sync > 1 or isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        return 1
    return default


def is_chief(tf_config: str | None = None) -> bool:
    """Whether this process writes the stage's outputs: always without TF_CONFIG."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


_PATCHED = False


def patch_keras_for_multi_worker() -> None:
    """See the module docstring. Idempotent; raises if Keras' internals moved (then check
    whether the Keras version in use still needs it)."""
    global _PATCHED
    if _PATCHED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def local_batch(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original_build(self, iterator, data_batch)
        for _, _, it in iterator:
            data_batch = next(it)
            break
        strategy = self.distribute_strategy
        local = tree.map_structure(
            lambda v: (
                strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            ),
            data_batch,
        )
        with strategy.scope():
            self._symbolic_build(data_batch=local)

    def reduce_per_replica(values, strategy, reduction):
        if not (
            tf_trainer._collective_all_reduce_multi_worker(strategy)
            and reduction in ("auto", "mean")
        ):
            return original_reduce(values, strategy, reduction)

        def mean(v):
            if not tf_trainer._is_per_replica_instance(v):
                return v
            axis = None if v.values[0].shape.rank == 0 else 0
            return strategy.reduce("MEAN", v, axis=axis)

        return tree.map_structure(mean, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = local_batch
    tf_trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True
