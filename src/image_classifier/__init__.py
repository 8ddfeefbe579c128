"""Image classification: a DVC pipeline from a folder of images to a LiteRT model, and its use.

Top-level modules that end in `if __name__ == "__main__"` are commands (`python -m
image_classifier.<name>`): the DVC stages (dvc.yaml says which and in what order) and the tools
beside them. The subpackages are libraries, grouped by role:

    data/        scan a folder, split it, near-duplicates, manifests, the decoded-pixel store
    training/    Keras models, augmentation, input pipeline, the fit loop, distribution
    litert/      convert to LiteRT, quantize, run a .tflite model (Classifier)
    evaluation/  metrics, baselines, figures
    monitoring/  what the web app records (prediction counts, feedback), its database, drift
                 statistics

The rest is shared by all: config (paths), params (params.yaml, typed and checked), cli (the
stage shell), errors, atomic (atomic writes) and preprocessing (decode_pixels, the one function
training and serving both turn files into pixels with). docs/architecture.md has the map.

Importing this package, or any subpackage's __init__, imports no TensorFlow: only the modules
that train or convert a Keras model do, and serving never loads them.
"""

import os

# Quiets TensorFlow's C++ start-up chatter (oneDNN notes, CPU feature lists) in the stages that
# load it; it must be set before TensorFlow is first imported, hence here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
