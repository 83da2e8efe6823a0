"""sepbn.data: protocols, annotation readers/writers, augmentation and datasets (numpy/cv2, no torch.nn)."""

from .protocols import (
    AFLW19,
    COFW29,
    FIVE_POINT,
    PROTOCOLS,
    W300_68,
    WFLW98,
    Normalizer,
    Protocol,
    get_protocol,
    load_protocol,
)
from .records import FaceRecord, ImageReadError, read_image

__all__ = [
    "AFLW19", "COFW29", "FIVE_POINT", "PROTOCOLS", "W300_68", "WFLW98", "Normalizer", "Protocol",
    "get_protocol", "load_protocol", "FaceRecord", "ImageReadError", "read_image",
]

from .formats import FormatError, RecordList, read_records, write_records  # noqa: E402

__all__ += ["FormatError", "RecordList", "read_records", "write_records"]

# Crop, augmentation, dataset and cache (numpy/cv2 only; sepbn.data.multi imports torch, so it is not re-exported).
from .cache import FaceCache, build_cache, ensure_cache  # noqa: E402
from .dataset import LandmarkDataset  # noqa: E402
from .transforms import AugmentConfig, crop_matrix, decode_points, encode_points  # noqa: E402

__all__ += ["FaceCache", "build_cache", "ensure_cache", "LandmarkDataset", "AugmentConfig", "crop_matrix",
            "decode_points", "encode_points"]
