"""The serving pattern of the tutorials this project replaces, for bench/serve.py to compare.

    MODEL_DIR=saved_models gunicorn --workers 1 --pythonpath bench tutorial_app:app

A Flask app that loads the Keras model with TensorFlow and calls `model.predict` on each
upload, resized with Pillow, served by one synchronous gunicorn worker (the tutorials'
`web: gunicorn app:app`). It answers the same URL as our API so the same load can be sent.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import keras
import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

MODEL_DIR = Path(os.environ.get("MODEL_DIR", "saved_models"))
model = keras.models.load_model(MODEL_DIR / "model.keras")
card = json.loads((MODEL_DIR / "model.json").read_text())
SIZE = card["input"]["size"]
MODE = "L" if card["input"]["color_mode"] == "grayscale" else "RGB"

app = Flask(__name__)


@app.post("/api/v1/predict")
def predict():
    img = Image.open(io.BytesIO(request.files["image"].read())).convert(MODE).resize((SIZE, SIZE))
    x = np.asarray(img, dtype="float32").reshape(1, SIZE, SIZE, -1)
    probs = model.predict(x, verbose=0)[0]
    best = int(np.argmax(probs))
    return jsonify({"label": card["classes"][best], "confidence": float(probs[best])})


@app.get("/readyz")
def ready():
    return "ok"
