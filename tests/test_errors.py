"""sepbn.errors: which errors are expected, and the one-line text of each."""

import errno

from sepbn.config import ConfigError
from sepbn.data.formats import FormatError
from sepbn.data.records import ImageReadError
from sepbn.errors import EXPECTED, UsageError, UserError, describe, rank_tag
from sepbn.train.nonfinite import NonFiniteLossError
from sepbn.train.preempt import Preempted


def test_expected_errors_and_their_exit_codes(tmp_path):
    for e in (ConfigError("x"), FormatError("f.csv:3", "bad"), ImageReadError("a.png: gone"), UsageError("u"),
              NonFiniteLossError("nan"), Preempted("SIGTERM", tmp_path / "last.pt", 3, 0, 1)):
        assert isinstance(e, EXPECTED), type(e)
    assert not isinstance(RuntimeError("a bug"), EXPECTED) and not isinstance(KeyError("k"), EXPECTED)
    assert ConfigError.exit_code == UsageError.exit_code == 2 and UserError.exit_code == 1
    assert Preempted("SIGTERM", tmp_path / "last.pt", 3, 0, 1).exit_code == 75


def test_describe_puts_the_file_first():
    assert describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "cfg.toml")) == \
        "cfg.toml: No such file or directory"
    assert describe(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == "a -> b: Invalid cross-device link"
    assert describe(ImageReadError("x.png: cannot decode image (3 bytes)")) == "x.png: cannot decode image (3 bytes)"
    assert describe(ValueError("  ")) == "ValueError"


def test_rank_tag(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_tag() == "" and rank_tag(1, 4) == " [rank 1/4]"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert rank_tag() == " [rank 1/2]"
