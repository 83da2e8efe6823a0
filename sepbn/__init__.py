"""sepbn: Separable Batch Normalization and Cross-protocol Network Training for facial landmarks.

Jin, Feng, Yang, Kittler, "Separable Batch Normalization for Robust Facial Landmark
Localization with Cross-protocol Network Training".
"""

__version__ = "0.1.0"
