"""MATLAB ``.mat`` files, v5 (scipy.io) and v7.3 (HDF5 via h5py), read into one form.

h5py and scipy.io are imported inside the functions that use them: most formats never read a
``.mat`` file, and importing the readers must not load either (a test pins this).

COFW and AFLW-19 are distributed as ``.mat`` files; COFW colour as v7.3, the older grey
COFW and ``AFLWinfo_release.mat`` as v5. Both load to the shapes MATLAB shows:

* numeric arrays: ndarray in MATLAB's (row, column, ...) order. A v7.3 file stores every
  array transposed (HDF5 is row-major, MATLAB column-major), so it is transposed back;
  an (H, W, 3) image is stored as (3, W, H).
* cell arrays: object ndarray of the cell's MATLAB shape whose elements are converted
  the same way; a v7.3 file stores them as HDF5 object references into ``#refs#``.
* char arrays: ``str`` (v7.3 stores them as uint16 code units).

:func:`save_mat` writes either version with the same layout (v7.3 with MATLAB's 512-byte
header in the HDF5 user block), so tests and SynthFaces create files the readers accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...io import atomic_path
from .errors import FormatError

__all__ = ["load_mat", "save_mat", "is_v73", "as_rows"]

_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: sepbn. HDF5 schema 1.00 ."
_CLASSES = {
    np.dtype(np.float64): "double", np.dtype(np.float32): "single", np.dtype(np.uint8): "uint8",
    np.dtype(np.int8): "int8", np.dtype(np.uint16): "uint16", np.dtype(np.int16): "int16",
    np.dtype(np.uint32): "uint32", np.dtype(np.int32): "int32", np.dtype(np.uint64): "uint64",
    np.dtype(np.int64): "int64", np.dtype(np.bool_): "logical",
}


def is_v73(path: Path) -> bool:
    """True for a v7.3 (HDF5) file."""
    import h5py

    return h5py.is_hdf5(str(path))


def as_rows(path: Path, name: str, value, columns: int) -> np.ndarray:
    """A MATLAB N x columns numeric array as float64, or a FormatError naming the variable."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != columns or arr.dtype == object:
        raise FormatError(str(path), f"has shape {arr.shape}, expected (N, {columns})", name)
    return arr.astype(np.float64)


def load_mat(path: Path, names: Sequence[str]) -> dict[str, Any]:
    """Load the variables ``names`` that the file holds (absent ones are left out)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(str(path), "MATLAB file not found")
    if is_v73(path):
        return _load_v73(path, names)
    import scipy.io

    try:
        raw = scipy.io.loadmat(str(path), variable_names=list(names))
    except Exception as e:  # scipy raises several types for a damaged/alien file
        raise FormatError(str(path), f"cannot read as a MATLAB v5 or v7.3 file ({e})") from None
    return {k: _from_v5(v) for k, v in raw.items() if not k.startswith("__")}


def _from_v5(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.dtype.kind == "U":
        return "".join(v.ravel().tolist())
    if isinstance(v, np.ndarray) and v.dtype == object:
        out = np.empty(v.shape, dtype=object)
        for idx, e in np.ndenumerate(v):
            out[idx] = _from_v5(e)
        return out
    return v


def _load_v73(path: Path, names: Sequence[str]) -> dict[str, Any]:
    import h5py

    try:
        f = h5py.File(str(path), "r")
    except OSError as e:
        raise FormatError(str(path), f"cannot open HDF5 (MATLAB v7.3) file ({e})") from None
    with f:
        return {n: _from_h5(f, f[n]) for n in names if n in f}


def _from_h5(f, d) -> Any:
    import h5py

    cls = d.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if int(np.asarray(d.attrs.get("MATLAB_empty", 0))):
        return np.zeros((0, 0))
    data = d[()]
    if h5py.check_dtype(ref=d.dtype) is not None:
        refs = np.asarray(data).T
        out = np.empty(refs.shape, dtype=object)
        for idx, r in np.ndenumerate(refs):
            out[idx] = _from_h5(f, f[r])
        return out
    arr = np.asarray(data).T
    if cls == "char":
        return "".join(chr(c) for c in arr.ravel(order="F"))
    if cls == "logical":
        return arr.astype(bool)
    return arr


def save_mat(path: Path, variables: Mapping[str, Any], version: str = "5") -> None:
    """Write ``variables`` (ndarrays in MATLAB order, object ndarrays for cells, str for
    char) as a v5 (``version="5"``) or v7.3 (``version="7.3"``) MAT-file."""
    path = Path(path)
    if version == "5":
        import scipy.io

        with atomic_path(path) as tmp:
            scipy.io.savemat(str(tmp), dict(variables), do_compression=True)
    elif version == "7.3":
        with atomic_path(path) as tmp:
            _save_v73(tmp, variables)
    else:
        raise ValueError(f"MAT-file version must be '5' or '7.3', got {version!r}")


def _save_v73(path: Path, variables: Mapping[str, Any]) -> None:
    import h5py

    with h5py.File(str(path), "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        counter = iter(range(1 << 30))
        for name, value in variables.items():
            _write_h5(f, refs, counter, name, value)
    header = _HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


def _write_h5(f, refs, counter, name: str, value: Any, group=None):
    import h5py

    group = f if group is None else group
    if isinstance(value, str):
        codes = np.array([[ord(c) for c in value]], dtype=np.uint16)  # MATLAB 1 x n char
        d = group.create_dataset(name, data=codes.T)
        d.attrs["MATLAB_class"] = np.bytes_("char")
        d.attrs["MATLAB_int_decode"] = np.int32(2)
        return d
    arr = np.asarray(value)
    if arr.dtype == object:
        cell = np.empty(arr.shape, dtype=h5py.ref_dtype)
        for idx, e in np.ndenumerate(arr):
            cell[idx] = _write_h5(f, refs, counter, f"e{next(counter)}", e, refs).ref
        d = group.create_dataset(name, data=cell.T)
        d.attrs["MATLAB_class"] = np.bytes_("cell")
        return d
    if arr.ndim < 2:
        arr = arr.reshape(1, -1)
    cls = _CLASSES.get(arr.dtype)
    if cls is None:
        raise ValueError(f"{name}: cannot store dtype {arr.dtype} in a MAT-file")
    d = group.create_dataset(name, data=(arr.astype(np.uint8) if cls == "logical" else arr).T)
    d.attrs["MATLAB_class"] = np.bytes_(cls)
    return d
