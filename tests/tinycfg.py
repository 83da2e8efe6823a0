"""A tiny sepbn train config for end-to-end command tests (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations


def tiny_config(faces: dict, *, name: str = "tiny", norm: str | None = None, val_name: str = "val",
                epochs: int = 1, warmup_epochs: int = 0, tau_epochs: int = 1, progress: bool | None = None) -> str:
    """A sepbn train config as TOML text: the tiny 5-point faces for training and validation, batch 4."""
    model = f'norm = "{norm}"\n' if norm else ""
    train = "" if progress is None else f"progress = {str(progress).lower()}\n"
    return f"""
name = "{name}"
[model]
{model}width = 0.0625
input_size = 64
[[data.train]]
fmt = "csv"
source = "{faces['5pt']}"
protocol = "5pt"
[[data.val]]
fmt = "csv"
source = "{faces['5pt']}"
protocol = "5pt"
name = "{val_name}"
[schedule]
epochs = {epochs}
warmup_epochs = {warmup_epochs}
tau_epochs = {tau_epochs}
[train]
batch_size = 4
{train}"""

