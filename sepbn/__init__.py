"""sepbn: Separable Batch Normalization and Cross-protocol Network Training for facial landmarks.

Jin, Feng, Yang, Kittler, "Separable Batch Normalization for Robust Facial Landmark
Localization with Cross-protocol Network Training".
"""

__version__ = "0.1.0"

__all__ = ["load_pretrained"]


def load_pretrained(name: str = "300w68", **kwargs):
    """A bundled landmark model ready for photos; see :func:`sepbn.inference.pretrained.load_pretrained`."""
    from .inference.pretrained import load_pretrained as load  # torch and OpenCV only when asked for

    return load(name, **kwargs)
