"""ImageNet weights for the torchvision backbones: offline errors are clear, local files load."""

import shutil
import urllib.error

import pytest
import torch
from torchvision.models import mobilenet_v2

from sepbn.models import PretrainedWeightsError, create_model
from sepbn.models.weights import hub_cache_path

MOBILENET_URL = "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network: any download attempt fails like it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return calls


@pytest.fixture
def mobilenet_file(tmp_path):
    torch.manual_seed(1)
    net = mobilenet_v2(weights=None)
    with torch.no_grad():  # non-trivial BN statistics and affine, so conversion must really copy them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
    path = tmp_path / "mnv2.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_default_is_no_download(offline):
    create_model("mobilenetv2", ["cofw29"], width=0.25)
    assert offline == []


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnext50"])
def test_offline_error_names_cache_path_and_url(offline, arch):
    with pytest.raises(PretrainedWeightsError) as info:
        create_model(arch, ["cofw29"], pretrained=True)
    msg = str(info.value)
    url = offline[0]
    assert str(hub_cache_path(url)) in msg and "torch_home" in msg
    assert url in msg and "pretrained=" in msg and "URLError" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained deep traceback


def test_local_file_loads(offline, mobilenet_file):
    path, ref = mobilenet_file
    net = create_model("mobilenetv2", ["cofw29"], pretrained=str(path))
    torch.testing.assert_close(net.backbone.features[0][0].weight, ref.features[0][0].weight)
    assert net.model_args["pretrained"] is False  # a checkpoint carries the weights itself
    assert offline == []


def test_hub_cache_file_is_used_without_download(offline, mobilenet_file):
    path, ref = mobilenet_file
    cached = hub_cache_path(MOBILENET_URL)
    cached.parent.mkdir(parents=True)
    shutil.copy(path, cached)
    net = create_model("mobilenetv2", ["cofw29"], pretrained=True)
    torch.testing.assert_close(net.backbone.features[3].conv[1][0].weight, ref.features[3].conv[1][0].weight)
    assert offline == []


def test_sepbn_conversion_after_loading_keeps_the_imagenet_function(offline, mobilenet_file):
    path, _ = mobilenet_file
    bn = create_model("mobilenetv2", ["cofw29"], pretrained=str(path)).eval()
    sep = create_model("mobilenetv2", ["cofw29"], norm="sepbn", placement=["bn3"], pretrained=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sep.backbone(x), bn.backbone(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad", ["missing.pth", "wrong_layout.pth"])
def test_bad_local_files(tmp_path, bad):
    path = tmp_path / bad
    if bad == "wrong_layout.pth":
        torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(PretrainedWeightsError, match=bad):
        create_model("mobilenetv2", ["cofw29"], pretrained=str(path))


def test_vanilla_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained"):
        create_model("vanilla", ["cofw29"], pretrained=True, width=1 / 64, input_size=64)
