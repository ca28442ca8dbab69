"""The image builder's pure parts and its clear errors; no Docker engine needed."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from ibsim import image as sim_image_mod

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_is_read_from_deb822_sources() -> None:
    mirrors = sim_image_mod.parse_apt_mirrors(files={"/etc/apt/sources.list.d/d.sources": DEB822})
    assert mirrors == ["http://mirror.example/debian"]


def test_mirror_is_read_from_one_line_sources_with_options() -> None:
    text = (
        "# a comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        "deb http://one.example/debian-security bookworm-security main\n"
    )
    mirrors = sim_image_mod.parse_apt_mirrors(files={"/etc/apt/sources.list": text})
    assert mirrors == ["http://one.example/debian"]


def test_disabled_stanza_and_other_suites_give_no_mirror() -> None:
    text = "Types: deb\nURIs: http://x.example/debian\nSuites: bookworm\nEnabled: no\n"
    files = {"a.sources": text, "b.list": "deb http://y.example/debian trixie main\n"}
    assert sim_image_mod.parse_apt_mirrors(files=files) == []


def test_wheel_cache_key_changes_with_each_input() -> None:
    base = {"fingerprint": b"[project]", "constraints": "a==1\n", "python_tag": "cp311-x86_64"}
    key = sim_image_mod.wheel_cache_key(**base)
    assert key == sim_image_mod.wheel_cache_key(**base)
    for field, value in (
        ("fingerprint", b"[x]"),
        ("constraints", "a==2\n"),
        ("python_tag", "cp312"),
    ):
        assert sim_image_mod.wheel_cache_key(**{**base, field: value}) != key


def test_cached_steps_are_counted_from_the_classic_builder_log() -> None:
    log = [
        "Step 1/3 : FROM base",
        " ---> abc",
        "Step 2/3 : COPY deps/ /wheels/deps/",
        " ---> Using cache",
        "Step 3/3 : RUN true",
        " ---> Running in 123",
    ]
    assert sim_image_mod.count_cached_steps(log) == (3, 1)


def test_project_root_without_pyproject_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(sim_image_mod.ImageBuildError, match=r"no pyproject\.toml in project root"):
        sim_image_mod.find_project_source(project_root=tmp_path)


def test_project_root_of_another_project_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "1"\n')
    with pytest.raises(sim_image_mod.ImageBuildError, match="is not the ibfleet project"):
        sim_image_mod.find_project_source(project_root=tmp_path)


def test_installed_package_finds_its_source_tree() -> None:
    source = sim_image_mod.find_project_source()
    assert source.root is not None
    assert (source.root / "pyproject.toml").is_file()
    assert source.requirement == str(source.root)


def test_no_engine_is_a_clear_error(tmp_path: Path) -> None:
    client = docker.DockerClient(
        base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41", timeout=2
    )
    with pytest.raises(sim_image_mod.ImageBuildError, match="no Docker engine answers"):
        sim_image_mod.build_sim_image(docker_client=client, cache_dir=tmp_path / "cache")


def test_last_image_of_a_step_is_read_from_the_build_log() -> None:
    log = [
        "Step 7/9 : COPY app/ /wheels/app/",
        " ---> 18ed01348f0a",
        "Step 8/9 : RUN pip install --prefix /opt/ibfleet-app x.whl",
        " ---> Running in 11704012d5f6",
        "Processing x.whl",
        "Removing intermediate container 11704012d5f6",
        " ---> 2a43c81e1aad",
        "Step 9/9 : FROM base",
        " ---> b6ad31bd7a8a",
    ]
    assert sim_image_mod.last_image_of_step(log, "--prefix /opt/ibfleet-app") == "2a43c81e1aad"
    assert sim_image_mod.last_image_of_step(log, "no such step") is None
