"""Config validation: typos fail, every error names its field, shipped YAML files are valid."""

from pathlib import Path

import pytest
import yaml

from pvad.cli import main
from pvad.config import DemoConfig, load_config
from pvad.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    load_config(path)


def test_demo_yaml_writes_out_the_built_in_defaults():
    written = load_config(CONFIGS / "demo.yaml")
    # a YAML names checkpoints relative to the repository root, the defaults absolutely
    clf = written.analysis.classifier
    root = CONFIGS.parent
    if clf.checkpoint is not None:
        clf = clf.model_copy(update={"checkpoint": (root / clf.checkpoint).resolve()})
    analysis = written.analysis.model_copy(update={"classifier": clf})
    assert written.model_copy(update={"analysis": analysis}) == DemoConfig()


def _write(tmp_path, data) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_every_error_is_reported_with_its_field_path(tmp_path):
    data = yaml.safe_load((CONFIGS / "server.yaml").read_text())
    data["analysis"]["detector"] = {"backend": "yolo9000"}
    data["analysis"]["classifier"]["streams"] = 3
    data["scoring"]["tau"] = 1.5
    data["limits"]["max_image_widht"] = 10  # typo
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    msg = str(err.value)
    for path in ("analysis.detector", "analysis.classifier.streams", "scoring.tau", "limits.max_image_widht"):
        assert path in msg, msg
    assert "4 error(s)" in msg


def test_bag_without_detector_is_an_error(tmp_path):
    data = yaml.safe_load((CONFIGS / "server.yaml").read_text())
    data["analysis"]["detector"] = {"backend": "none"}
    with pytest.raises(ConfigError, match="detector.backend is 'none'"):
        load_config(_write(tmp_path, data))


def test_unknown_kind_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        load_config(_write(tmp_path, {"kind": "toaster"}))
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_config_check_command(tmp_path, capsys):
    assert main(["config", "check", str(CONFIGS / "camera.yaml")]) == 0
    bad = _write(tmp_path, {"kind": "camera", "camera_id": "cam 1", "server": "x:1"})
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "camera_id" in err and "tls" in err and "capture" in err
