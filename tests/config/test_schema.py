"""sepbn.config.schema: the defaults are the paper's recipe (section V-A) and bad values name their key."""

import pytest

from sepbn.config import Config, ConfigError, config_from_dict


def test_defaults_are_the_paper_recipe():
    c = Config()
    assert (c.optim.name, c.optim.momentum, c.optim.weight_decay, c.train.batch_size) == ("sgd", 0.9, 5e-4, 8)
    assert (c.optim.lr, c.schedule.min_lr, c.schedule.warmup_epochs, c.schedule.epochs) == (1e-3, 5e-6, 120, 500)
    assert (c.schedule.tau_start, c.schedule.tau_end, c.schedule.tau_epochs, c.train.loss) == (30.0, 1.0, 30, "l1")


@pytest.mark.parametrize("section, key, value", [("model", "arch", "vgg"), ("optim", "lr", 0.0),
                                                  ("schedule", "warmup_epochs", 500), ("train", "loss", "l2")])
def test_a_bad_value_names_its_key(section, key, value):
    with pytest.raises(ConfigError, match=rf"invalid value for {section}.{key}: {value!r}"):
        config_from_dict({section: {key: value}})
