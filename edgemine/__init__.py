"""edgemine: mine unlabeled recorded images that look like your model's failures."""

__version__ = "0.1.0"
