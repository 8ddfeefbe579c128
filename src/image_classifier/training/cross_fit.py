"""Out-of-sample probabilities from networks that never saw the image's label: the audit's
recipe when the trained model's features learnt the given labels (train.weights: null).

A network trained from scratch learns the wrong labels along with the right ones, so its own
features and probabilities vouch for its mistakes. Cross-validated training is confident
learning's canonical recipe (Northcutt et al., 2021): the train and val images are split into
stratified, seeded folds; for each fold a network is trained as the train stage trains it,
from scratch, on the images of the other folds but one, that one validating (early stopping,
the best epoch), and predicts the held-out fold. Each image's probabilities then come from a
network that saw neither its label nor it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from image_classifier.data.store import inference_batch_size
from image_classifier.evaluation.label_issues import fold_of
from image_classifier.params import Params

if TYPE_CHECKING:
    from image_classifier.training.input_pipeline import PixelSource

log = logging.getLogger(__name__)


class Pooled:
    """Several pixel sources read as one, in order (the train split, then val)."""

    def __init__(self, sources: Sequence[PixelSource]) -> None:
        self.sources = list(sources)
        self.labels = np.concatenate([s.labels for s in self.sources])
        self.starts = np.cumsum([0, *(len(s) for s in self.sources)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        out = None
        for s in np.unique(which):
            mask = which == s
            part = self.sources[s].read(indices[mask] - self.starts[s])
            if out is None:
                out = np.empty((len(indices), *part.shape[1:]), dtype=part.dtype)
            out[mask] = part
        return out if out is not None else self.sources[0].read(indices)


class Subset:
    """The images `indices` (ascending) of a pixel source."""

    def __init__(self, source: PixelSource, indices: np.ndarray) -> None:
        self.source, self.indices = source, np.asarray(indices)
        self.labels = source.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.source.read(self.indices[np.asarray(indices)])


def out_of_sample_probs(
    params: Params, images: PixelSource, classes: Sequence[str], folds: int
) -> np.ndarray:
    """(n, classes) probabilities of `images`, each from a network trained without its fold.
    Raises label_issues.TooSmallError when a class has fewer images than cross-validation
    needs."""
    # TensorFlow only here: the audit of a frozen base on LiteRT runs none.
    from image_classifier.training.fit_loop import fit
    from image_classifier.training.input_pipeline import inference_batches

    fold = fold_of(images.labels, folds, params.train.seed)
    folds = int(fold.max()) + 1
    # From scratch, alone: a model to continue (init_from) saw every label, and the folds'
    # networks are small enough not to need several workers.
    own = dataclasses.replace(params.train, init_from=None, distribute="none")
    fold_params = dataclasses.replace(params, train=own)
    batch = inference_batch_size(params.image.size, params.image.channels)
    probs = np.zeros((len(images), len(classes)), dtype=np.float32)
    for k in range(folds):
        held, val = fold == k, fold == (k + 1) % folds
        log.info(
            "audit: network %d of %d, trained on %d images, validated on %d, predicts %d",
            k + 1,
            folds,
            int((~held & ~val).sum()),
            int(val.sum()),
            int(held.sum()),
        )
        model = fit(
            fold_params,
            Subset(images, np.flatnonzero(~held & ~val)),
            Subset(images, np.flatnonzero(val)),
            classes,
        )
        out = Subset(images, np.flatnonzero(held))
        probs[out.indices] = np.concatenate(
            [model.predict_on_batch(x) for x, _ in inference_batches(out, batch)]
        )
    return probs
