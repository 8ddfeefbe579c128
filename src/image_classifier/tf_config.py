"""Print this pod's TF_CONFIG for a multi-worker training Job.

    python -m image_classifier.tf_config

deploy/k8s/training/train-job.yaml runs it in each pod of a Kubernetes Indexed Job before the
train stage; training/distribute.py is what train.distribute does with that TF_CONFIG. Imports
no TensorFlow, so a pod prints it at once.
"""

from __future__ import annotations

import json
import os


def indexed_job_tf_config(index: int, workers: int, job: str, service: str, port: int) -> str:
    """TF_CONFIG for pod `index` of a Kubernetes Indexed Job of `workers` pods whose headless
    Service `service` gives each pod the DNS name <job>-<index>.<service>."""
    if not 0 <= index < workers:
        raise ValueError(f"worker index {index} is not in 0..{workers - 1}")
    hosts = [f"{job}-{i}.{service}:{port}" for i in range(workers)]
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def main() -> None:
    """`python -m image_classifier.tf_config`: print this pod's TF_CONFIG, from the Indexed
    Job's JOB_COMPLETION_INDEX and TRAIN_WORKERS, TRAIN_JOB, TRAIN_SERVICE, TRAIN_PORT."""
    env = os.environ
    print(
        indexed_job_tf_config(
            int(env["JOB_COMPLETION_INDEX"]),
            int(env["TRAIN_WORKERS"]),
            env["TRAIN_JOB"],
            env["TRAIN_SERVICE"],
            int(env.get("TRAIN_PORT", "2222")),
        )
    )


if __name__ == "__main__":
    main()
