"""The node's configuration: embedded defaults, validation errors that name the key, and a
docs check that every key of the schema is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry_node.node.config import SCHEMA_KEYS, ConfigError, config_from_mapping, load_config
from tests.conftest import REPO

# where the node's configuration keys must be documented (README.md once docs are folded in)
DOCS = REPO / "README.md"


def test_no_config_gives_the_embedded_defaults():
    config = load_config(None)
    assert (config.node.ae_title, config.node.bind, config.node.port) == ("GANTRY", "0.0.0.0", 11112)
    assert config.data_dir == Path("gantry-data")
    assert config.secret_path == Path("gantry-data") / "secret" and config.secret_is_default
    [export] = config.effective_destinations()
    assert export.type == "folder" and export.path == Path("gantry-data") / "export"
    assert config.retention.raw == "immediately"


@pytest.mark.parametrize("doc, key", [
    ({"node": {"port": 70000}}, "node.port: expected an integer 1-65535"),
    ({"node": {"port": "11112"}}, "node.port: expected an integer 1-65535"),
    ({"node": {"ae_title": "A" * 17}}, "node.ae_title:"),
    ({"node": {"bind": "localhost:1"}}, "node.bind:"),
    ({"node": {"allowed_addresses": ["10.0.0.0/33"]}}, "node.allowed_addresses:"),
    ({"node": {"colour": "red"}}, "node.colour: unknown key"),
    ({"destinations": [{"type": "dicom", "host": "h", "port": 1}]}, "destinations[0].ae_title:"),
    ({"destinations": [{"type": "folder"}]}, "destinations[0].path:"),
    ({"destinations": [{"type": "ftp"}]}, "destinations[0].type:"),
    ({"destinations": [{"type": "folder", "path": "x", "decompress": "lossy"}]},
     "destinations[0].decompress: expected one of never, lossless, always"),
    ({"destinations": [{"name": "a", "path": "x", "type": "folder"}, {"name": "a", "path": "y", "type": "folder"}]},
     "destinations[1].name:"),
    ({"destinations": [{"type": "folder", "path": "x", "policy": {"options": {"nope": True}}}]},
     "destinations[0].policy.options.nope"),
    ({"policy": {"options": {"retain_uids": "yes"}}}, "policy.options.retain_uids"),
    ({"workers": {"processes": 0}}, "workers.processes:"),
    ({"retention": {"raw": "sometimes"}}, "retention.raw:"),
    ({"logging": {"stdout": "no"}}, "logging.stdout:"),
    ({"certificates": "cert.pem"}, "certificates:"),
    ({"pixels": ["x"]}, "pixels:"),
    ({"spare": 1}, "spare: unknown key"),
    ({"node": {"max_instance_size": 1000}}, "node.max_instance_size:"),
    ({"node": {"max_instance_size": "4 GB please"}}, "node.max_instance_size:"),
    ({"node": {"max_instance_size": True}}, "node.max_instance_size:"),
])
def test_errors_name_the_key(doc, key):
    with pytest.raises(ConfigError) as err:
        config_from_mapping(doc)
    assert key in str(err.value)


def test_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("node:\n  port: 0\n")
    with pytest.raises(ConfigError, match=r"node.yaml: node.port: expected an integer 1-65535, got 0"):
        load_config(path)
    path.write_text("node: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("data_dir: state\ndestinations:\n  - {name: out, type: folder, path: export}\n")
    config = load_config(path)
    assert config.data_dir == tmp_path / "state"
    assert config.destinations[0].path == tmp_path / "export"


def test_every_config_key_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    missing = [key for key in SCHEMA_KEYS if f"`{key}`" not in text]
    assert not missing, f"config keys not documented in {DOCS.name}: {missing}"


def test_serve_refuses_a_bad_config_naming_the_key(tmp_path, run_cli):
    path = tmp_path / "node.yaml"
    path.write_text("node:\n  port: 70000\n")
    result = run_cli("serve", "--config", path)
    assert result.returncode == 2
    assert "node.port: expected an integer 1-65535, got 70000" in result.stderr


def test_serve_refuses_a_configured_secret_that_does_not_exist(tmp_path, run_cli):
    path = tmp_path / "node.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nsecret_file: {tmp_path / 'missing'}\n")
    result = run_cli("serve", "--config", path)
    assert result.returncode == 2 and "secret_file:" in result.stderr and "does not exist" in result.stderr


def test_sealing_and_pixel_sections_are_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match=r"certificates\[0\]"):
        config_from_mapping({"certificates": [str(tmp_path / "missing.pem")]})
    with pytest.raises(ConfigError, match=r"reversible"):
        config_from_mapping({"reversible": {"algorithm": "des"}})
    with pytest.raises(ConfigError, match=r"pixels.unknown_device"):
        config_from_mapping({"pixels": {"unknown_device": "pass"}})
    with pytest.raises(ConfigError, match=r"pixels"):
        config_from_mapping({"pixels": {"colour": 1}})


def test_max_instance_size_in_bytes_or_with_a_unit():
    assert config_from_mapping({}).node.max_instance_size == 4 * 1024**3
    assert config_from_mapping({"node": {"max_instance_size": "512 MiB"}}).node.max_instance_size == 512 * 1024**2
    assert config_from_mapping({"node": {"max_instance_size": "2GiB"}}).node.max_instance_size == 2 * 1024**3
    assert config_from_mapping({"node": {"max_instance_size": 5_000_000}}).node.max_instance_size == 5_000_000
