"""The study file: a base config, variants (``--set`` overrides or CNT stage recipes), seeds, evaluation.

::

    name = "c1_real300w_vanilla"
    base = "../real/300w_vanilla.toml"     # relative to the study file
    seeds = [0, 1, 2]
    baseline = "bn"
    set = ["schedule.epochs=30"]           # every run of every variant (optional)

    [eval]                                 # optional, every key too
    normalizer = "inter-ocular"            # default: the protocol's
    fr_thresholds = [0.08, 0.10]           # FR at each; AUC at each (the table shows the last)
    checkpoint = "final"                   # "final" | "best"
    domains = true                         # per-sub-domain rows when the data has labels
    sets = [{fmt = "csv", source = "val.csv", protocol = "300w68"}]   # default: data.val
    flip = false                           # also score every set with flip averaging ("<set>+flip")
    effect = 0.001                         # NME difference the power column is for (fixed in advance)

    [[variant]]
    name = "bn"
    set = ["model.norm=bn"]

    [[variant]]
    name = "cnt_sepbn"
    stages = [{config = "../real/cnt_stage1.toml", set = ["model.norm=sepbn"]},
              {set = ["optim.backbone_lr=1e-7"]}]

A variant may also name its own ``config`` (default: ``base``). A run's overrides are, in order:
``train.progress=false``, the study's ``set``, the command line's ``--set``, the variant's
``set``, the stage's ``set``, ``train.seed=<seed>`` and, for stage k > 1,
``train.init_from=<stage k-1>/last.pt`` (the last checkpoint holds the final weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..assembly import load_run_config
from ..config import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["StudyError", "Stage", "Variant", "EvalSpec", "Study", "Job", "load_study", "study_jobs",
           "check_study", "study_to_dict"]

CHECKPOINTS = ("final", "best")
DEFAULT_EFFECT = 0.001  # 0.1 NME points: the difference the table's power column is computed for


class StudyError(ValueError):
    """A study file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Stage:
    config: Path  # absolute
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    name: str
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class EvalSpec:
    normalizer: str | None = None
    fr_thresholds: tuple[float, ...] = (0.08, 0.10)
    checkpoint: str = "final"
    domains: bool = True
    sets: tuple[dict, ...] = ()  # DatasetConfig tables; () = the last stage's data.val
    flip: bool = False  # also score each set with test-time flip averaging, as "<set>+flip"
    effect: float = DEFAULT_EFFECT  # NME difference (fraction) the table's "seeds for 80 % power" is computed for


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    seeds: tuple[int, ...]
    baseline: str
    variants: tuple[Variant, ...]
    eval: EvalSpec = field(default_factory=EvalSpec)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


@dataclass(frozen=True)
class Job:
    """One (variant, seed): its folder, the train commands' arguments per stage, the evaluation."""

    variant: str
    seed: int
    folder: Path
    stages: tuple[dict, ...]  # {"config": str, "overrides": [...], "out": str}
    eval: dict
    cwd: str  # relative data roots in configs resolve against it, as for `sepbn train`

    @property
    def id(self) -> str:
        return f"{self.variant}/seed{self.seed}"

    def to_dict(self) -> dict:
        return {"variant": self.variant, "seed": self.seed, "folder": str(self.folder),
                "stages": list(self.stages), "eval": self.eval, "cwd": self.cwd}


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise StudyError(f"study file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path}: {e}") from None


def _check_keys(where: str, d: Mapping, known: Sequence[str]) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; known keys: {list(known)}")


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise StudyError(f"{where}: expected a list of \"key=value\" strings, got {value!r}")
    bad = [s for s in value if "=" not in s]
    if bad:
        raise StudyError(f"{where}: overrides are \"key=value\", got {bad}")
    return tuple(value)


def _config_path(path: Path, where: str, value: Any) -> Path:
    if not isinstance(value, str):
        raise StudyError(f"{where}: expected a config path, got {value!r}")
    p = (path.parent / value).resolve()
    if not p.is_file():
        raise StudyError(f"{where}: config file not found: {p}")
    return p


def _eval_spec(path: Path, d: Any) -> EvalSpec:
    if not isinstance(d, Mapping):
        raise StudyError(f"{path}: [eval] must be a table")
    _check_keys(f"{path}: [eval]", d, ["normalizer", "fr_thresholds", "checkpoint", "domains", "sets", "flip",
                                               "effect"])
    thresholds = d.get("fr_thresholds", [0.08, 0.10])
    if (not isinstance(thresholds, list) or not thresholds
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in thresholds)):
        raise StudyError(f"{path}: eval.fr_thresholds must be a list of positive numbers, got {thresholds!r}")
    checkpoint = d.get("checkpoint", "final")
    if checkpoint not in CHECKPOINTS:
        raise StudyError(f"{path}: eval.checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}")
    sets = d.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, Mapping) for s in sets):
        raise StudyError(f"{path}: eval.sets must be a list of dataset tables, got {sets!r}")
    normalizer = d.get("normalizer")
    if normalizer is not None and not isinstance(normalizer, str):
        raise StudyError(f"{path}: eval.normalizer must be a string, got {normalizer!r}")
    domains = d.get("domains", True)
    if not isinstance(domains, bool):
        raise StudyError(f"{path}: eval.domains must be true or false, got {domains!r}")
    flip = d.get("flip", False)
    if not isinstance(flip, bool):
        raise StudyError(f"{path}: eval.flip must be true or false, got {flip!r}")
    effect = d.get("effect", DEFAULT_EFFECT)
    if isinstance(effect, bool) or not isinstance(effect, (int, float)) or not effect > 0:
        raise StudyError(f"{path}: eval.effect must be a positive NME difference (a fraction), got {effect!r}")
    return EvalSpec(normalizer, tuple(float(t) for t in thresholds), checkpoint, domains,
                    tuple(dict(s) for s in sets), flip, float(effect))


def _variant(path: Path, i: int, d: Any, base: Path, common: tuple[str, ...]) -> Variant:
    where = f"{path}: variant {i + 1}"
    if not isinstance(d, Mapping):
        raise StudyError(f"{where}: [[variant]] entries must be tables")
    _check_keys(where, d, ["name", "set", "config", "stages"])
    name = d.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise StudyError(f"{where}: 'name' must be a folder name, got {name!r}")
    where = f"{path}: variant {name!r}"
    config = _config_path(path, f"{where} config", d["config"]) if "config" in d else base
    own = common + _strings(f"{where} set", d.get("set", []))
    raw = d.get("stages")
    if raw is None:
        return Variant(name, (Stage(config, own),))
    if not isinstance(raw, list) or not raw or not all(isinstance(s, Mapping) for s in raw):
        raise StudyError(f"{where}: 'stages' must be a non-empty list of tables")
    stages = []
    for k, s in enumerate(raw):
        _check_keys(f"{where} stage {k + 1}", s, ["config", "set"])
        cfg = _config_path(path, f"{where} stage {k + 1} config", s["config"]) if "config" in s else config
        stages.append(Stage(cfg, own + _strings(f"{where} stage {k + 1} set", s.get("set", []))))
    return Variant(name, tuple(stages))


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read and check a study file; ``overrides`` (the command line's ``--set``) apply to every run."""
    path = Path(path).resolve()
    d = _read_toml(path)
    _check_keys(str(path), d, ["name", "base", "seeds", "baseline", "set", "eval", "variant"])
    if "base" not in d:
        raise StudyError(f"{path}: 'base' (the train config the variants modify) is required")
    base = _config_path(path, "base", d["base"])
    seeds = d.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in seeds) or len(set(seeds)) != len(seeds)):
        raise StudyError(f"{path}: 'seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    common = ("train.progress=false",) + _strings(f"{path}: set", d.get("set", [])) + tuple(overrides)
    raw = d.get("variant", [])
    if not isinstance(raw, list) or not raw:
        raise StudyError(f"{path}: the study lists no [[variant]]")
    variants = tuple(_variant(path, i, v, base, common) for i, v in enumerate(raw))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise StudyError(f"{path}: variant names repeat: {names}")
    baseline = d.get("baseline", names[0])
    if baseline not in names:
        raise StudyError(f"{path}: baseline {baseline!r} is not a variant; variants: {names}")
    name = d.get("name", path.stem)
    if not isinstance(name, str):
        raise StudyError(f"{path}: 'name' must be a string, got {name!r}")
    return Study(name, path, tuple(seeds), baseline, variants, _eval_spec(path, d.get("eval", {})))


def _stage_overrides(stage: Stage, seed: int, previous: Path | None) -> list[str]:
    out = list(stage.overrides) + [f"train.seed={seed}"]
    if previous is not None:
        out.append(f"train.init_from={previous / 'last.pt'}")
    return out


def study_jobs(study: Study, out: str | Path, only: Sequence[str] = (), cwd: str | Path = ".",
               seeds: Sequence[int] = ()) -> list[Job]:
    """Every (variant, seed) of the study as a job under ``out`` (``only``: these variants; ``seeds``: these
    of the study's seeds, so that a long study can be run a few seeds at a time)."""
    names = [v.name for v in study.variants]
    unknown = [o for o in only if o not in names]
    if unknown:
        raise StudyError(f"--only {unknown}: not variants of {study.path}; variants: {names}")
    foreign = [s for s in seeds if s not in study.seeds]
    if foreign:
        raise StudyError(f"--seeds {foreign}: not seeds of {study.path}; seeds: {list(study.seeds)}")
    out = Path(out).resolve()
    ev = {"normalizer": study.eval.normalizer, "fr_thresholds": list(study.eval.fr_thresholds),
          "checkpoint": study.eval.checkpoint, "domains": study.eval.domains, "sets": list(study.eval.sets),
          "flip": study.eval.flip}
    jobs = []
    for v in study.variants:
        if only and v.name not in only:
            continue
        for seed in study.seeds:
            if seeds and seed not in seeds:
                continue
            folder = out / v.name / f"seed{seed}"
            stages, previous = [], None
            for k, st in enumerate(v.stages):
                stage_out = folder if len(v.stages) == 1 else folder / f"stage{k + 1}"
                stages.append({"config": str(st.config), "overrides": _stage_overrides(st, seed, previous),
                               "out": str(stage_out)})
                previous = stage_out
            jobs.append(Job(v.name, seed, folder, tuple(stages), ev, str(Path(cwd).resolve())))
    return jobs


def check_study(study: Study) -> dict[str, str]:
    """Resolve every variant's stage configs (no training): ``{variant: error}`` for those that fail."""
    errors = {}
    for v in study.variants:
        previous = None
        for k, st in enumerate(v.stages):
            try:
                load_run_config(st.config, _stage_overrides(st, study.seeds[0], previous))
                if study.eval.sets:
                    load_run_config(st.config, [*st.overrides, f"data.val={json.dumps(list(study.eval.sets))}"])
            except ConfigError as e:
                errors[v.name] = f"stage {k + 1}: {e}" if len(v.stages) > 1 else str(e)
                break
            previous = Path("previous-stage")
    return errors


def study_to_dict(study: Study) -> dict:
    """The resolved study (absolute config paths, every override in order), saved as DIR/study.json."""
    return {
        "name": study.name, "path": str(study.path), "seeds": list(study.seeds), "baseline": study.baseline,
        "eval": {"normalizer": study.eval.normalizer, "fr_thresholds": list(study.eval.fr_thresholds),
                 "checkpoint": study.eval.checkpoint, "domains": study.eval.domains,
                 "sets": list(study.eval.sets), "flip": study.eval.flip, "effect": study.eval.effect},
        "variants": [{"name": v.name, "stages": [{"config": str(s.config), "set": list(s.overrides)}
                                                 for s in v.stages]} for v in study.variants],
    }
