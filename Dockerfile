# The web app for targets other than Heroku. Serving dependencies only (no TensorFlow).
# Build after `dvc pull` (or `dvc repro`) so that saved_models/ holds the exported model:
#   docker build -t image-classifier . && docker run -p 8000:8000 image-classifier
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    WEB_CONCURRENCY=2 \
    MALLOC_ARENA_MAX=2 \
    DRIFT_DB=/var/lib/image-classifier/app.sqlite

# /app stays root-owned (read-only to the app). Drift counts and feedback go to PostgreSQL when
# DATABASE_URL is given at run time (docker run -e DATABASE_URL, or a Kubernetes Secret), else
# to the SQLite file DRIFT_DB on its own writable volume.
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/image-classifier \
    && chown 10001:10001 /var/lib/image-classifier
VOLUME ["/var/lib/image-classifier"]
WORKDIR /app

# The serving lock: every package pinned with its hashes (`make lock`), as Heroku installs it.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

COPY Procfile params.yaml ./
COPY src/image_classifier ./src/image_classifier
COPY webapp ./webapp
# The model, its detector's statistics, and the example images (deploy/bundle.py MODEL)
COPY saved_models/model.tflite saved_models/model.json saved_models/ood.npz \
     saved_models/example.png ./saved_models/
COPY saved_models/examples ./saved_models/examples/
# The model page's evaluation and model card (webapp/model_report.py FILES)
COPY reports/metrics.json reports/export.json reports/model_card.md ./reports/
COPY reports/eval/class_report.csv reports/eval/confusion.png reports/eval/misclassified.png \
     reports/eval/evaluated_model.json ./reports/eval/
COPY reports/audit/summary.json ./reports/audit/

USER 10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]

CMD ["gunicorn", "--config", "webapp/gunicorn.conf.py", "--pythonpath", "src", "webapp:create_app()"]
