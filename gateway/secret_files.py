"""Secret files on their way into a container, and the key that keeps them out of the spec hash.

The spec's secret files are copied with ``put_archive`` into the created-but-not-started
container, owned by the image's user with mode 0400 (:func:`secrets_tar`, :func:`secret_owner`).
The fingerprint key (:func:`load_or_create_fingerprint_key`) keys the secrets' fingerprints in
the ``io.ibfleet.spec-hash`` label (:mod:`gateway.spec_render`).
"""

from __future__ import annotations

import io
import os
import secrets as secrets_mod
import tarfile
import time
from pathlib import Path, PurePosixPath

from gateway.runtime import RuntimeFailure
from gateway.spec import ContainerSpec

__all__ = ["load_or_create_fingerprint_key", "secret_owner", "secrets_tar"]


def load_or_create_fingerprint_key(path: Path) -> bytes:
    """The supervisor's spec-hash key: 32 random bytes in a 0600 file, made once and kept.

    It must survive supervisor restarts; a new key would make every gateway look drifted.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets_mod.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key
    if len(data) < 16:
        raise ValueError(f"fingerprint key file {path} holds {len(data)} bytes; expected 32")
    return data


def secret_owner(user: str) -> tuple[int, int, int]:
    """(uid, gid, file mode) for the image's ``User``; a named user cannot be resolved here."""
    uid_text, _, gid_text = user.partition(":")
    if not uid_text:
        return 0, 0, 0o400
    if uid_text.isdigit() and (not gid_text or gid_text.isdigit()):
        uid = int(uid_text)
        return uid, int(gid_text) if gid_text else uid, 0o400
    # A user given by name: readable inside the container, which holds nothing else.
    return 0, 0, 0o444


def secrets_tar(spec: ContainerSpec, *, uid: int, gid: int, mode: int, base: str = "/") -> bytes:
    """The spec's files as a tar to extract at ``base`` (every file must lie under it)."""
    buffer = io.BytesIO()
    now = int(time.time())
    root = PurePosixPath(base)
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dirs: set[PurePosixPath] = set()
        for item in spec.files:
            if root not in PurePosixPath(item.path).parents:
                raise RuntimeFailure(
                    f"create {spec.name}: secret file {item.path} is outside {base}",
                    operation="create",
                    container=spec.name,
                )
            parent = PurePosixPath(item.path).parent
            while parent != root and str(parent) not in ("/", "."):
                dirs.add(parent)
                parent = parent.parent
        for directory in sorted(dirs, key=lambda p: len(p.parts)):
            info = tarfile.TarInfo(str(directory.relative_to(root)))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = now
            tar.addfile(info)
        for item in spec.files:
            data = item.content.get_secret_value().encode()
            info = tarfile.TarInfo(str(PurePosixPath(item.path).relative_to(root)))
            info.size = len(data)
            info.mode = item.mode if mode == 0o400 else mode
            info.uid, info.gid = uid, gid
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
