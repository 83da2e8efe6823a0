"""SynthFaces: the embedded synthetic landmark dataset (docs/synth.md).

``generate(out_dir, protocols, num, seed=..., domains=...)`` renders faces and writes them in
the official annotation formats; ``load_synth(out_dir, protocol, split)`` reads a split back as
FaceRecords carrying ``attributes["domain"]`` / ``["domain_id"]``. ``synthesize(index, ...)``
makes one face in memory; ``contact_sheet(...)`` a preview grid.
"""

from .curves import PROTOCOL_POINTS
from .face import face_points
from .head import Expression, Pose, Shape, mirror_pose
from .generate import FORMATS, generate, load_synth
from .preview import contact_sheet
from .draw import Look
from .effects import OCCLUDERS
from .render import render
from .sample import DEFAULT_DOMAINS, Domain, SynthFace, parse_domains, sample_face, synthesize

__all__ = [
    "DEFAULT_DOMAINS", "FORMATS", "Domain", "SynthFace", "generate", "load_synth", "parse_domains", "sample_face",
    "synthesize", "PROTOCOL_POINTS", "Expression", "Pose", "Shape", "face_points", "mirror_pose", "contact_sheet",
    "OCCLUDERS", "Look", "render",
]
