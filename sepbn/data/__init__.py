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
