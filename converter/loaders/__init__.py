"""Loading checkpoints into live models, variable by variable, with a report.

``load_into`` handles Keras 3 and tf.keras (tf-keras) models; ``converter.tf1.restore``
(:mod:`converter.loaders.tf1`) handles TF1 graphs. TensorFlow and Keras are imported only when
a model is given.
"""

from __future__ import annotations

from .keras import load_into
from .match import Target, pair
from .report import LoadReport, Misfit, Pairing
from .source import Opened, open_source, read_source

__all__ = ["LoadReport", "Misfit", "Opened", "Pairing", "Target", "load_into", "open_source",
           "pair", "read_source"]
