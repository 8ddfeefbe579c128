"""Image classification pipeline: split -> train -> evaluate -> export, and LiteRT inference.

Importing this package never imports TensorFlow; only the train, evaluate and export stages do.
"""

import os

# Quiets TensorFlow's C++ start-up chatter (oneDNN notes, CPU feature lists) in the stages that
# load it; it must be set before TensorFlow is first imported, hence here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
