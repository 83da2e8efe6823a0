"""Landmark protocols: the single source of every landmark fact in sepbn.

A :class:`Protocol` holds a point count, point names and semantic groups, a 0-based
horizontal-flip permutation, the NME normalisers (paper section V-A) and the map of its
points onto the shared 5 points (eye centres, nose tip, mouth corners). Nothing in sepbn
infers a protocol from a point count.

One resolution, at the edge: a protocol name, a ``.json`` / ``.toml`` file or a stored definition
becomes a :class:`Protocol` once, in :func:`get_protocol` (called by the config loader and the
commands); datasets, models, metrics, evaluation and checkpoints then carry the object, and
checkpoints store its full definition (:meth:`Protocol.to_dict`), so a model trained on a user's
protocol keeps working after the file is gone. The package imports numpy only:
:mod:`.protocol` (the type), :mod:`.builtin` (the five) and :mod:`.resolve` (names, files, definitions).

Conventions, stated once for the whole package
----------------------------------------------
* Coordinates are float, 0-based pixels; pixel ``(i, j)`` has its centre at ``x = j, y = i``.
  A mirror of an image of width ``W`` maps ``x -> W - 1 - x``.
* Flip permutation: after mirroring x, ``flipped[i] = original[flip_perm[i]]``.
* "Left"/"right" in point names mean *image* left/right (as in MTFL and 300-W files).

Sources: HRNet-Facial-Landmark-Detection ``lib/utils/transforms.py`` and mmpose's dataset
configs agree on every flip permutation below; normalisers follow the paper (inter-ocular
for WFLW and COFW, face box for AFLW) and LAB/HRNet for the exact indices.
"""

from .builtin import AFLW19, COFW29, FIVE_POINT, PROTOCOLS, W300_68, WFLW98
from .protocol import WFLW_ATTRIBUTES, Normalizer, Protocol, protocol_from_dict
from .resolve import get_protocol, load_protocol, protocol_spec, require_protocol, spec_name

__all__ = [
    "Normalizer",
    "Protocol",
    "WFLW98",
    "W300_68",
    "COFW29",
    "AFLW19",
    "FIVE_POINT",
    "PROTOCOLS",
    "get_protocol",
    "load_protocol",
    "protocol_from_dict",
    "protocol_spec",
    "require_protocol",
    "spec_name",
    "WFLW_ATTRIBUTES",
]
