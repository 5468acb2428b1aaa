"""scripts/build_images.py's pure parts: how it carries this machine's pip configuration into
a build, and how it names the stand-in base. tests/images runs the whole script."""

from __future__ import annotations

import configparser
import importlib.util
import sys

from tests.deploy.common import ROOT

_spec = importlib.util.spec_from_file_location("build_images", ROOT / "scripts" / "build_images.py")
build_images = importlib.util.module_from_spec(_spec)
sys.modules["build_images"] = build_images  # its dataclasses look their module up there
_spec.loader.exec_module(build_images)

LISTING = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/other.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple https://mirror.example/simple'
install.no-compile='true'
"""


def test_pip_variables_win_over_the_files_as_in_pip():
    settings = build_images.parse_pip_config(LISTING)
    assert settings["global.cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert settings["global.find-links"] == "/opt/wheels"
    assert settings["install.no-compile"] == "true"


def test_multi_line_values_become_one_line_and_pip_config_file_is_left_out():
    # pip prints values with repr(): a find-links of several lines reads '\\n/a\\n/b'.
    listing = "global.find-links='\\n/opt/wheels\\n/opt/more'\n:env:.config-file='/root/secret/pip.conf'\n"
    assert build_images.parse_pip_config(listing) == {"global.find-links": "/opt/wheels /opt/more"}


def test_the_merged_pip_conf_reads_back_as_pip_reads_it():
    settings = build_images.parse_pip_config(LISTING)
    parser = configparser.ConfigParser()
    parser.read_string(build_images.pip_conf_text(settings))
    assert {f"{section}.{key}": value for section in parser.sections() for key, value in parser[section].items()} == (
        settings
    )


def test_local_paths_are_the_existing_files_and_folders_pip_names(tmp_path):
    index = tmp_path / "pypi" / "simple"
    index.mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    settings = {
        "global.extra-index-url": f"file://{index} https://mirror.example/simple file:///no/such/index/simple",
        "global.find-links": str(wheels),
        "global.timeout": "60",
    }
    # A file:// index is mounted from the folder above /simple/; a web URL and a path that
    # does not exist are not mounted.
    assert build_images.local_paths(settings) == sorted([index.parent, wheels])


def test_a_local_index_serves_torch_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    settings = build_images.parse_pip_config(LISTING)
    assert build_images.torch_index(settings) == "file:///opt/pypi/simple"
    assert build_images.torch_index({"global.index-url": "https://pypi.org/simple"}) is None
    monkeypatch.setenv("TORCH_INDEX_URL", "https://mirror.example/torch")
    assert build_images.torch_index(settings) == "https://mirror.example/torch"


def test_the_stand_in_is_named_as_one_and_for_its_recipe(monkeypatch):
    tag = build_images.standin_tag("3.11.7")
    assert tag.startswith("localhost/signet-standin-python:3.11.7-bookworm-")
    assert build_images.standin_tag("3.11.8") != tag
    monkeypatch.setattr(build_images, "DEBIAN_PACKAGES", (*build_images.DEBIAN_PACKAGES, "curl"))
    assert build_images.standin_tag("3.11.7") != tag


SOURCES_LIST = """\
deb [arch=amd64] https://download.docker.com/linux/debian bookworm stable
deb http://one-line.example/debian bookworm main contrib
"""
DEBIAN_SOURCES = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://source.example/debian
Suites: bookworm
"""


def test_apt_entries_read_both_formats_and_skip_disabled_source_and_third_party_entries():
    # A third party's archive (no "main" component) is not Debian's mirror.
    assert list(build_images.apt_entries(SOURCES_LIST)) == [("http://one-line.example/debian", ["bookworm"])]
    assert list(build_images.apt_entries(DEBIAN_SOURCES)) == [
        ("http://mirror.example/debian", ["bookworm", "bookworm-updates"])
    ]
