"""The five built-in protocols (WFLW 98, 300-W 68, COFW 29, AFLW 19, 5 points) and ``PROTOCOLS``.

Sources: HRNet-Facial-Landmark-Detection ``lib/utils/transforms.py`` and mmpose's dataset
configs agree on every flip permutation below; normalisers follow the paper (inter-ocular
for WFLW and COFW, face box for AFLW) and LAB/HRNet for the exact indices.
"""

from __future__ import annotations

from .protocol import WFLW_ATTRIBUTES, Normalizer, Protocol, _box_normalizers, _names_from_groups

__all__ = ["WFLW98", "W300_68", "COFW29", "AFLW19", "FIVE_POINT", "PROTOCOLS"]


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b))


# --- WFLW, 98 points -------------------------------------------------------------------
_WFLW_GROUPS = {
    "contour": _r(0, 33),
    "left_brow": _r(33, 42),
    "right_brow": _r(42, 51),
    "nose_bridge": _r(51, 55),
    "nose_bottom": _r(55, 60),
    "left_eye": _r(60, 68),
    "right_eye": _r(68, 76),
    "outer_lip": _r(76, 88),
    "inner_lip": _r(88, 96),
    "left_pupil": (96,),
    "right_pupil": (97,),
}
WFLW98 = Protocol(
    name="wflw98",
    num_points=98,
    flip_perm=(
        32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
        9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38,
        51, 52, 53, 54, 59, 58, 57, 56, 55,
        72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65,
        82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93, 97, 96,
    ),
    point_names=_names_from_groups(98, _WFLW_GROUPS),
    groups=_WFLW_GROUPS,
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (60, 72)", "points", (60,), (72,)),
        "inter-pupil": Normalizer("inter-pupil (96, 97)", "points", (96,), (97,)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=((96,), (97,), (54,), (76,), (82,)),
    attributes=WFLW_ATTRIBUTES,
    description="WFLW, 98 points (Wu et al., CVPR 2018)",
)

# --- 300-W, 68 points (Multi-PIE markup) ----------------------------------------------------
_300W_GROUPS = {
    "jaw": _r(0, 17),
    "left_brow": _r(17, 22),
    "right_brow": _r(22, 27),
    "nose_bridge": _r(27, 31),
    "nose_bottom": _r(31, 36),
    "left_eye": _r(36, 42),
    "right_eye": _r(42, 48),
    "outer_lip": _r(48, 60),
    "inner_lip": _r(60, 68),
}
W300_68 = Protocol(
    name="300w68",
    num_points=68,
    flip_perm=(
        16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
        27, 28, 29, 30, 35, 34, 33, 32, 31,
        45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
        54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
    ),
    point_names=_names_from_groups(68, _300W_GROUPS),
    groups=_300W_GROUPS,
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (36, 45)", "points", (36,), (45,)),
        "inter-pupil": Normalizer("inter-pupil (mean 36-41, mean 42-47)", "points", _r(36, 42), _r(42, 48)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=(_r(36, 42), _r(42, 48), (30,), (48,), (54,)),
    description="300-W, 68 points (Sagonas et al., 2013)",
)

# --- COFW, 29 points (RCPR markup) --------------------------------------------------------
# Point semantics follow the flip pairs: brows 0-7, eye corners 8-11, eyelids 12-15,
# pupils 16-17, nose 18-21, mouth 22-27, chin 28.
_COFW_NAMES = (
    "left_brow_outer", "right_brow_outer", "left_brow_inner", "right_brow_inner",
    "left_brow_top", "left_brow_bottom", "right_brow_top", "right_brow_bottom",
    "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
    "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
    "left_pupil", "right_pupil", "left_nostril", "right_nostril", "nose_tip",
    "nose_bottom", "mouth_left", "mouth_right", "upper_lip_top", "upper_lip_bottom",
    "lower_lip_top", "lower_lip_bottom", "chin",
)
COFW29 = Protocol(
    name="cofw29",
    num_points=29,
    flip_perm=(1, 0, 3, 2, 6, 7, 4, 5, 9, 8, 11, 10, 14, 15, 12, 13, 17, 16, 19, 18, 20, 21, 23, 22,
               24, 25, 26, 27, 28),
    point_names=_COFW_NAMES,
    groups={
        "brows": _r(0, 8),
        "eyes": _r(8, 16),
        "pupils": (16, 17),
        "nose": _r(18, 22),
        "mouth": _r(22, 28),
        "chin": (28,),
    },
    normalizers={
        "inter-ocular": Normalizer("inter-ocular (8, 9)", "points", (8,), (9,)),
        "inter-pupil": Normalizer("inter-pupil (16, 17)", "points", (16,), (17,)),
        **_box_normalizers(),
    },
    default_normalizer="inter-ocular",
    five_point=((16,), (17,), (20,), (22,), (23,)),
    description="COFW, 29 points (Burgos-Artizzu et al., ICCV 2013)",
)

# --- AFLW, 19 points ------------------------------------------------------------------------
_AFLW_NAMES = (
    "left_brow_outer", "left_brow_centre", "left_brow_inner",
    "right_brow_inner", "right_brow_centre", "right_brow_outer",
    "left_eye_outer", "left_eye_centre", "left_eye_inner",
    "right_eye_inner", "right_eye_centre", "right_eye_outer",
    "nose_left", "nose_tip", "nose_right",
    "mouth_left", "mouth_centre", "mouth_right", "chin",
)
AFLW19 = Protocol(
    name="aflw19",
    num_points=19,
    flip_perm=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 14, 13, 12, 17, 16, 15, 18),
    point_names=_AFLW_NAMES,
    groups={"brows": _r(0, 6), "eyes": _r(6, 12), "nose": _r(12, 15), "mouth": _r(15, 18), "chin": (18,)},
    normalizers={
        **_box_normalizers(),
        "inter-ocular": Normalizer("inter-ocular (6, 11)", "points", (6,), (11,)),
    },
    default_normalizer="box",
    five_point=((7,), (10,), (13,), (15,), (17,)),
    description="AFLW, 19 points (Koestinger et al., 2011; 19-point markup of Zhu et al., CVPR 2016)",
)

# --- 5 points (WIDER FACE / RetinaFace, MTFL) ----------------------------------------------
FIVE_POINT = Protocol(
    name="5pt",
    num_points=5,
    flip_perm=(1, 0, 2, 4, 3),
    point_names=("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"),
    groups={"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)},
    normalizers={
        "eye-centres": Normalizer("eye centres (0, 1)", "points", (0,), (1,)),
        **_box_normalizers(),
    },
    default_normalizer="eye-centres",
    five_point=((0,), (1,), (2,), (3,), (4,)),
    description="5 points: eye centres, nose tip, mouth corners (MTFL, RetinaFace)",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (WFLW98, W300_68, COFW29, AFLW19, FIVE_POINT)}
