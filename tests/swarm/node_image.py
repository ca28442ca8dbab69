"""The Swarm lab's node image: Debian's Docker engine on ibfleet's local Debian base, no registry.

The recipe is ``tests/swarm/node/`` (a Dockerfile and the node's entrypoint). The image is
built FROM the base ibfleet's own images use (:func:`ibsim.image.resolve_base`: the public
Python base when present, else the debootstrap one, made once) and installs Debian's Docker
engine package with apt from the mirror the base's own sources name. It is tagged by a hash of
the recipe and the base's id, so an unchanged recipe is never rebuilt, and a file lock keeps
two test processes from building it at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tarfile
from pathlib import Path

import docker
import docker.errors

from ibsim import image as sim_image

log = logging.getLogger("tests.swarm")

RECIPE_DIR = Path(__file__).resolve().parent / "node"
REPOSITORY = "ibfleet-swarm-node"
_RECIPE_FILES = ("Dockerfile", "entrypoint.sh")


def recipe_hash(base_id: str) -> str:
    """A short hash of the recipe's files and the base image they build on."""
    digest = hashlib.sha256()
    for name in (*_RECIPE_FILES, base_id):
        data = (RECIPE_DIR / name).read_bytes() if name in _RECIPE_FILES else name.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


def _context() -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in _RECIPE_FILES:
            data = (RECIPE_DIR / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def _present(client: docker.DockerClient, tag: str) -> bool:
    return sim_image._image_id(client, tag) is not None


def ensure_node_image(client: docker.DockerClient, *, cache_dir: Path | None = None) -> str:
    """Return the node image's tag, building it first unless this recipe's image exists."""
    cache = (cache_dir or sim_image.default_cache_dir()).resolve()
    base, base_id, _ = sim_image.resolve_base(
        docker_client=client,
        base=None,
        rebuild_base=False,
        mirror=None,
        cache_dir=cache,
        pull_timeout_s=sim_image.DEFAULT_PULL_TIMEOUT_S,
        progress=lambda line: log.debug("node_base line=%s", line),
    )
    tag = f"{REPOSITORY}:{recipe_hash(base_id)}"
    if _present(client, tag):
        return tag
    # The simulator image's lock and classic-builder run: the same conventions, one copy.
    with sim_image._file_lock(cache / "swarm-node.lock"):
        if _present(client, tag):
            return tag
        log.info("node_image_build tag=%s base=%s", tag, base)
        sim_image._docker_build(
            client,
            context=_context(),
            tag=tag,
            buildargs={"BASE": base},
            progress=lambda line: log.debug("node_image line=%s", line),
        )
        if not _present(client, tag):
            raise sim_image.ImageBuildError(
                f"the build of {tag} finished but the engine does not hold it"
            )
        _drop_superseded(client, keep=tag)
    return tag


def _drop_superseded(client: docker.DockerClient, *, keep: str) -> None:
    # Each recipe change makes a new tag; the older ones are dead weight (one in use stays).
    for image in client.images.list(name=REPOSITORY):
        for old in image.tags:
            if old != keep:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(old)
