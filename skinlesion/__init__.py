"""Skin-lesion classifier: HAM10000 -> Keras MobileNet -> TF.js -> a static site that classifies in the browser."""

import logging

__version__ = "0.1.0"

log = logging.getLogger("skinlesion")


class SkinLesionError(Exception):
    """An error a user can fix (bad input, a wrong folder, a missing file); the CLI prints it without a traceback."""
