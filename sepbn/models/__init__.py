"""sepbn.models: the paper's networks (Table I, section V-D) and the multi-branch LandmarkNet (Fig. 5).

Imports ``sepbn.nn`` for the layers and ``sepbn.protocols`` (numpy only) for the vocabulary; it never
loads ``sepbn.data`` or OpenCV.
"""

from .factory import MODELS, NORMS, create_model, resolve_protocols
from .heads import FlattenHead, PooledHead, conv_adapter
from .landmark_net import LandmarkNet
from .mobilenet import MobileNetV2Backbone
from .resnext import ResNeXt50Backbone
from .vanilla_cnn import VanillaCNN, VanillaFeatures
from .weights import PretrainedWeightsError

__all__ = [
    "MODELS", "NORMS", "create_model", "resolve_protocols", "FlattenHead", "PooledHead", "conv_adapter",
    "LandmarkNet", "MobileNetV2Backbone", "ResNeXt50Backbone", "VanillaCNN", "VanillaFeatures",
    "PretrainedWeightsError",
]
