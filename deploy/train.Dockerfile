# The training pipeline (TensorFlow, DVC) for deploy/k8s/training/train-job.yaml:
#   docker build -f deploy/train.Dockerfile -t image-classifier-train .
# The repository (code, dvc.yaml, dvc.lock, params.yaml, .dvc/config) is baked in; the data
# and models come from the DVC remote at run time.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 train
WORKDIR /home/train/repo

# The pipeline lock: every package pinned with its hashes (`make lock`), setuptools included,
# so the editable install builds with the locked one rather than fetching the newest.
COPY requirements-pipeline.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements-pipeline.txt

COPY --chown=10001:10001 . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .

USER 10001
CMD ["dvc", "repro"]
