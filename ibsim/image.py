"""Build ibfleet's container images with no container registry (`ibfleet sim image`).

One pipeline for every image ibfleet builds: the simulator's (:data:`SIM_RECIPE`, the default
everywhere here) and the supervisor's (``supervisor.cli_image``, which passes its own
:class:`ImageRecipe`: Dockerfile, local base tag and the Debian packages of that base).

The public Python base image is tried first; when it cannot be pulled (no registry), a minimal
Debian bookworm base is made once with debootstrap from the host's own apt mirror and imported
with `docker import`, then reused from the engine's image store. Wheels are built on the host
with its own pip configuration and installed offline in the image, dependencies in a layer
before the ibfleet wheel, so a rebuild after a code change is seconds.

Over 600 lines because it is one pipeline (source, wheels, base, context, build) whose steps
share the cache and lock conventions; the next split would be the debootstrap base image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import importlib.metadata
import importlib.resources
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Annotated, Any

import docker
import docker.errors
import typer

DEFAULT_TAG = "ibfleet-sim:latest"
DEFAULT_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE_TAG = "ibfleet-base:bookworm-py311"
DEBIAN_SUITE = "bookworm"
DEBOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_PULL_TIMEOUT_S = 20.0
# A fixed timestamp makes the ibfleet wheel byte-identical for identical code, so an unchanged
# tree reuses even the last layer.
_SOURCE_DATE_EPOCH = "315532800"
# Paths never copied from the repository when building the ibfleet wheel.
_SOURCE_IGNORE = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    "build",
    "dist",
    "*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".import_linter_cache",
    "node_modules",
    "*.sqlite*",
)

Progress = Callable[[str], None]


class ImageBuildError(Exception):
    """A build failed for a reason the user can act on; the message says what and where."""


class BaseSource(enum.Enum):
    """Where the image's base came from, so callers can tell a cold build from a warm one."""

    GIVEN = "given"  # --base named an image that was present or pullable
    PULLED = "pulled"  # the default public base was pulled or already present
    LOCAL_CACHED = "local-cached"  # the debootstrap base already existed and was reused
    LOCAL_BUILT = "local-built"  # the debootstrap base was made by this build


@dataclasses.dataclass(frozen=True, slots=True)
class ImageInfo:
    """The result of one build: what was made, from what, and how much came from the cache."""

    tag: str
    image_id: str
    version: str
    base: str
    base_id: str
    base_source: BaseSource
    deps_wheels_cached: bool
    steps_total: int
    steps_cached: int
    duration_s: float
    build_log: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ImageRecipe:
    """What differs between ibfleet's images: the Dockerfile and the local debootstrap base."""

    dockerfile: Callable[[], bytes]
    local_base_tag: str = LOCAL_BASE_TAG
    base_packages: tuple[str, ...] = DEBOOTSTRAP_PACKAGES


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectSource:
    """What the ibfleet wheel is built from: a source tree, or a released version by name."""

    requirement: str  # a directory path or "ibfleet==X.Y.Z"
    version: str
    fingerprint: bytes  # what the dependency-wheel cache key hashes (pyproject or version)
    root: Path | None


# ---------------------------------------------------------------------------------------------
# Pure helpers


def parse_apt_mirrors(*, files: Mapping[str, str], suite: str = DEBIAN_SUITE) -> list[str]:
    """Return the host's apt URIs that serve `suite`, in file order, from deb822 and one-line files.

    The host's apt configuration is the only place that knows which Debian mirror this machine
    can reach, so the mirror is read from it instead of being written into the project.
    """
    found: list[str] = []
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = _deb822_fields(stanza)
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "deb").split():
                    continue
                if suite not in fields.get("suites", "").split():
                    continue
                found.extend(uri for uri in fields.get("uris", "").split() if uri)
        else:
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                parts = _one_line_parts(line)
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                    found.append(parts[1])
    unique: list[str] = []
    for uri in found:
        if uri not in unique:
            unique.append(uri)
    return unique


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key: str | None = None
    for raw in stanza.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t" and key is not None:  # a continuation line
            fields[key] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields[key] = value.strip()
    return fields


def _one_line_parts(line: str) -> list[str]:
    # "deb [arch=amd64 signed-by=...] URI suite comp..." : drop the bracketed options.
    line = re.sub(r"\[[^\]]*\]", " ", line)
    return line.split()


def wheel_cache_key(*, fingerprint: bytes, constraints: str, python_tag: str) -> str:
    """A short hash naming the dependency-wheel cache for this project and interpreter."""
    digest = hashlib.sha256()
    for part in (fingerprint, constraints.encode(), python_tag.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def count_cached_steps(log: list[str]) -> tuple[int, int]:
    """Count (steps, steps served from cache) in a classic-builder log."""
    steps = sum(1 for line in log if re.match(r"^Step \d+/\d+ :", line))
    cached = sum(1 for line in log if "Using cache" in line)
    return steps, cached


# ---------------------------------------------------------------------------------------------
# Adapters


def default_cache_dir() -> Path:
    """The per-user cache, honouring XDG_CACHE_HOME as every XDG tool does."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ibfleet"


def read_apt_sources(*, apt_dir: Path = Path("/etc/apt")) -> dict[str, str]:
    """Read sources.list and sources.list.d/*.list|*.sources; missing files are skipped."""
    files: dict[str, str] = {}
    candidates = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        candidates += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in candidates:
        with contextlib.suppress(OSError):
            files[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return files


def find_project_source(*, project_root: Path | None = None) -> ProjectSource:
    """Locate the ibfleet source tree (explicit, else next to the installed package).

    Falls back to the installed distribution's version (`ibfleet==X`) when ibfleet was installed
    from a wheel: pip must then find that release on the host's configured index.
    """
    if project_root is not None:
        root = project_root.resolve()
        if not (root / "pyproject.toml").is_file():
            raise ImageBuildError(f"no pyproject.toml in project root {root}")
        return _source_from_tree(root)
    here = Path(__file__).resolve()
    for parent in here.parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file() and _project_name(pyproject) == "ibfleet":
            return _source_from_tree(parent)
    try:
        version = importlib.metadata.version("ibfleet")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImageBuildError(
            f"cannot find the ibfleet source tree above {here} nor an installed ibfleet "
            "distribution; pass project_root (the directory holding pyproject.toml)"
        ) from exc
    return ProjectSource(
        requirement=f"ibfleet=={version}",
        version=version,
        fingerprint=f"ibfleet=={version}".encode(),
        root=None,
    )


def _project_name(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name")
    return name if isinstance(name, str) else None


def _source_from_tree(root: Path) -> ProjectSource:
    pyproject = root / "pyproject.toml"
    raw = pyproject.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImageBuildError(f"cannot parse {pyproject}: {exc}") from exc
    project = data.get("project", {})
    if project.get("name") != "ibfleet":
        raise ImageBuildError(
            f"{pyproject} is not the ibfleet project (name={project.get('name')!r})"
        )
    version = str(project.get("version", "0"))
    return ProjectSource(requirement=str(root), version=version, fingerprint=raw, root=root)


def installed_constraints() -> str:
    """Pin the image to the exact dependency versions of the running environment.

    The image then runs what the host's tests ran, not whatever the index offers today.
    """
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not isinstance(name, str) or not name or name.lower() == "ibfleet":
            continue
        if _is_editable(dist):
            continue
        pins[name.lower()] = dist.version
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _is_editable(dist: importlib.metadata.Distribution) -> bool:
    raw = dist.read_text("direct_url.json")
    if not raw:
        return False
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        return False
    return bool(isinstance(info, dict) and info.get("dir_info", {}).get("editable"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise builds across processes (parallel test sessions share one cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_logged(
    cmd: list[str], *, progress: Progress, env: Mapping[str, str] | None = None
) -> None:
    """Run a command, forwarding its output lines to progress; raise with the tail on failure."""
    tail: list[str] = []
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env) if env is not None else None,
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line or "is ignored: it is neither a file nor a directory" in line:
            continue
        tail = [*tail[-19:], line]
        progress(line)
    code = proc.wait()
    if code != 0:
        shown = "\n  ".join(tail)
        raise ImageBuildError(
            f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited {code}:\n  {shown}"
        )


def _copy_source(root: Path, dest: Path) -> Path:
    # Building in a copy keeps build/ and *.egg-info out of the shared working tree.
    target = dest / "src"
    shutil.copytree(root, target, ignore=shutil.ignore_patterns(*_SOURCE_IGNORE), symlinks=True)
    return target


def build_wheels(
    *,
    source: ProjectSource,
    cache_dir: Path,
    work_dir: Path,
    progress: Progress,
    python: str = sys.executable,
) -> tuple[Path, Path, bool]:
    """Return (dependency wheel dir, ibfleet wheel path, deps came from cache).

    Dependency wheels are cached by project metadata, pins and interpreter; the ibfleet wheel is
    rebuilt every time because it carries the code.
    """
    constraints = installed_constraints()
    python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    key = wheel_cache_key(
        fingerprint=source.fingerprint, constraints=constraints, python_tag=python_tag
    )
    wheels_root = cache_dir / "wheels"
    deps_dir = wheels_root / key
    marker = deps_dir / ".complete"
    requirement = source.requirement
    if source.root is not None:
        requirement = str(_copy_source(source.root, work_dir))
    constraints_file = work_dir / "constraints.txt"
    constraints_file.write_text(constraints, encoding="utf-8")
    env = {**os.environ, "SOURCE_DATE_EPOCH": _SOURCE_DATE_EPOCH}
    pip = [python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]

    deps_cached = marker.is_file()
    if not deps_cached:
        with _file_lock(wheels_root / ".lock"):
            deps_cached = marker.is_file()
            if not deps_cached:
                progress(f"building dependency wheels into {deps_dir}")
                staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=wheels_root))
                try:
                    _run_logged(
                        [*pip, "-c", str(constraints_file), "-w", str(staging), requirement],
                        progress=progress,
                        env=env,
                    )
                    for own in staging.glob("ibfleet-*.whl"):
                        own.unlink()
                    (staging / ".complete").write_text(python_tag, encoding="utf-8")
                    if deps_dir.exists():
                        shutil.rmtree(deps_dir)
                    staging.rename(deps_dir)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)

    app_dir = work_dir / "app"
    progress("building the ibfleet wheel")
    _run_logged([*pip, "--no-deps", "-w", str(app_dir), requirement], progress=progress, env=env)
    built = sorted(app_dir.glob("ibfleet-*.whl"))
    if len(built) != 1:
        raise ImageBuildError(f"expected one ibfleet wheel in {app_dir}, found {len(built)}")
    return deps_dir, built[0], deps_cached


def _dockerfile_text() -> bytes:
    resource = importlib.resources.files("ibsim").joinpath("docker", "Dockerfile")
    return resource.read_bytes()


SIM_RECIPE = ImageRecipe(dockerfile=_dockerfile_text)


def write_build_context(
    *, out: IO[bytes], deps_dir: Path, app_wheel: Path, dockerfile: bytes | None = None
) -> None:
    """Write the build context tar with fixed metadata so identical inputs hash identically.

    ``dockerfile`` defaults to the simulator's.
    """

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(_SOURCE_DATE_EPOCH)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=out, mode="w") as tar:
        add(tar, "Dockerfile", _dockerfile_text() if dockerfile is None else dockerfile)
        for wheel in sorted(deps_dir.glob("*.whl")):
            add(tar, f"deps/{wheel.name}", wheel.read_bytes())
        add(tar, f"app/{app_wheel.name}", app_wheel.read_bytes())


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    return str(image.id)


def _remove_superseded(client: docker.DockerClient, image_id: str) -> None:
    # The old image of this tag is dead weight; one still used by a container stays.
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(image_id, noprune=False)


def last_image_of_step(log: list[str], step_fragment: str) -> str | None:
    """The image id a classic-builder step produced (its ` ---> <id>` line), if logged."""
    inside = False
    found: str | None = None
    for line in log:
        if re.match(r"^Step \d+/\d+ :", line):
            inside = step_fragment in line
            continue
        match = re.match(r"^ ---> ([0-9a-f]{12,64})$", line.rstrip())
        if inside and match:
            found = match.group(1)
    return found


def _forget_old_app_stage(client: docker.DockerClient, *, log: list[str], record: Path) -> None:
    # Each code change leaves the previous build's untagged app stage behind; drop the one
    # this tag made last time (its parents are shared with the new build and stay).
    current = last_image_of_step(log, "--prefix /opt/ibfleet-app")
    if current is None:
        return
    with contextlib.suppress(OSError):
        previous = record.read_text(encoding="utf-8").strip()
        if previous and previous != current:
            _remove_superseded(client, previous)
    with contextlib.suppress(OSError):
        record.write_text(current, encoding="utf-8")


def _pull_with_deadline(
    client: docker.DockerClient, name: str, *, timeout_s: float
) -> tuple[bool, str]:
    """Try to pull `name`; give up after timeout_s (a registry may hang instead of failing)."""
    result: dict[str, Any] = {}
    repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")

    def pull() -> None:
        try:
            client.images.pull(repo, tag=tag or "latest")
            result["ok"] = True
        except Exception as exc:  # every failure means "not pullable"; the reason is reported
            result["error"] = f"{type(exc).__name__}: {exc}"

    # A daemon thread: if the engine never answers, the build goes on and the thread dies
    # with the process.
    worker = threading.Thread(target=pull, name=f"pull-{name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False, f"no answer within {timeout_s:g} s"
    if result.get("ok"):
        return True, ""
    return False, str(result.get("error", "unknown error"))


def _umount_under(root: Path) -> None:
    # debootstrap mounts /proc and /sys in the target; never delete a tree with live mounts.
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    prefix = str(root.resolve())
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def build_local_base(
    *,
    docker_client: docker.DockerClient,
    tag: str = LOCAL_BASE_TAG,
    mirror: str | None = None,
    work_root: Path | None = None,
    progress: Progress,
    packages: tuple[str, ...] = DEBOOTSTRAP_PACKAGES,
) -> str:
    """Make a minimal Debian bookworm + Python 3.11 image with debootstrap; return its id.

    ``packages`` are what the base holds besides minbase (Python, its venv, CA certificates).
    """
    debootstrap = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if Path(p).is_file()), None
    )
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap is not installed; install Debian's debootstrap package "
            "(apt-get install debootstrap) or pass --base with a local Python 3.11 image"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the local base with debootstrap needs root; run `ibfleet sim image` once "
            "as root, or pass --base with a local Python 3.11 image"
        )
    if mirror is None:
        mirrors = parse_apt_mirrors(files=read_apt_sources())
        if not mirrors:
            raise ImageBuildError(
                f"cannot find a Debian mirror for {DEBIAN_SUITE} in /etc/apt/sources.list or "
                "/etc/apt/sources.list.d/*.sources; pass --mirror URL"
            )
        mirror = mirrors[0]
    progress(f"building base {tag} with debootstrap ({DEBIAN_SUITE}, minbase)")
    with tempfile.TemporaryDirectory(prefix="ibfleet-base-", dir=work_root) as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            _run_logged(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(packages)}",
                    DEBIAN_SUITE,
                    str(rootfs),
                    mirror,
                ],
                progress=progress,
            )
            _slim_rootfs(rootfs)
            progress(f"importing {rootfs} as {tag}")
            image_id = _import_rootfs(docker_client, rootfs=rootfs, tag=tag)
        finally:
            _umount_under(rootfs)
    return image_id


def _slim_rootfs(rootfs: Path) -> None:
    # Package caches, indexes and docs are dead weight in a runtime image.
    for rel in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/log",
    ):
        target = rootfs / rel
        if not target.is_dir():
            continue
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                if child.name != "partial":
                    shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    for pkgcache in (rootfs / "var/cache/apt").glob("*.bin"):
        pkgcache.unlink(missing_ok=True)


def _import_rootfs(client: docker.DockerClient, *, rootfs: Path, tag: str) -> str:
    repository, _, version = tag.rpartition(":")
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        "LABEL io.ibfleet.component=base",
    ]
    try:
        reply = client.api.import_image(
            src=tar.stdout, repository=repository, tag=version, changes=changes, stream_src=True
        )
    finally:
        tar.stdout.close()
        _, err = tar.communicate()
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of {rootfs} failed: {err.decode(errors='replace').strip()}")
    image_id = _image_id(client, tag)
    if image_id is None:
        raise ImageBuildError(f"docker import did not produce {tag}: {str(reply)[-300:]}")
    return image_id


def resolve_base(
    *,
    docker_client: docker.DockerClient,
    base: str | None,
    rebuild_base: bool,
    mirror: str | None,
    cache_dir: Path,
    pull_timeout_s: float,
    progress: Progress,
    recipe: ImageRecipe = SIM_RECIPE,
) -> tuple[str, str, BaseSource]:
    """Choose the base image: given, else the public one, else the local debootstrap one."""
    local_tag = recipe.local_base_tag
    if base is not None:
        found = _image_id(docker_client, base)
        if found is None:
            ok, why = _pull_with_deadline(docker_client, base, timeout_s=pull_timeout_s)
            found = _image_id(docker_client, base) if ok else None
            if found is None:
                raise ImageBuildError(
                    f"base image {base!r} is not present and cannot be pulled ({why})"
                )
        return base, found, BaseSource.GIVEN
    if not rebuild_base:
        public = _image_id(docker_client, DEFAULT_BASE)
        if public is not None:
            return DEFAULT_BASE, public, BaseSource.PULLED
        local = _image_id(docker_client, local_tag)
        if local is not None:
            progress(f"reusing local base {local_tag}")
            return local_tag, local, BaseSource.LOCAL_CACHED
        progress(f"trying to pull {DEFAULT_BASE}")
        ok, why = _pull_with_deadline(docker_client, DEFAULT_BASE, timeout_s=pull_timeout_s)
        public = _image_id(docker_client, DEFAULT_BASE) if ok else None
        if public is not None:
            return DEFAULT_BASE, public, BaseSource.PULLED
        progress(f"cannot pull {DEFAULT_BASE} ({why}); using a local debootstrap base")
    with _file_lock(cache_dir / "base.lock"):
        # Another process may have built it while this one waited for the lock.
        local = None if rebuild_base else _image_id(docker_client, local_tag)
        if local is not None:
            return local_tag, local, BaseSource.LOCAL_CACHED
        previous = _image_id(docker_client, local_tag)
        built = build_local_base(
            docker_client=docker_client,
            tag=local_tag,
            mirror=mirror,
            work_root=cache_dir,
            progress=progress,
            packages=recipe.base_packages,
        )
        if previous is not None and previous != built:
            _remove_superseded(docker_client, previous)
    return local_tag, built, BaseSource.LOCAL_BUILT


def build_sim_image(
    *,
    docker_client: docker.DockerClient,
    project_root: Path | None = None,
    tag: str = DEFAULT_TAG,
    base: str | None = None,
    rebuild_base: bool = False,
    mirror: str | None = None,
    cache_dir: Path | None = None,
    pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build (or refresh) the simulator image and return what was built. Blocking."""
    return build_image(
        recipe=SIM_RECIPE,
        docker_client=docker_client,
        project_root=project_root,
        tag=tag,
        base=base,
        rebuild_base=rebuild_base,
        mirror=mirror,
        cache_dir=cache_dir,
        pull_timeout_s=pull_timeout_s,
        progress=progress,
    )


def build_image(
    *,
    recipe: ImageRecipe,
    docker_client: docker.DockerClient,
    project_root: Path | None = None,
    tag: str,
    base: str | None = None,
    rebuild_base: bool = False,
    mirror: str | None = None,
    cache_dir: Path | None = None,
    pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build (or refresh) the image ``recipe`` describes and return what was built. Blocking."""
    started = time.monotonic()
    say: Progress = progress or (lambda _line: None)
    cache = (cache_dir or default_cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        docker_client.ping()
    except Exception as exc:  # any failure to reach the engine is the same user problem
        raise ImageBuildError(f"no Docker engine answers ({type(exc).__name__}: {exc})") from exc

    source = find_project_source(project_root=project_root)
    base_name, base_id, base_source = resolve_base(
        docker_client=docker_client,
        base=base,
        rebuild_base=rebuild_base,
        mirror=mirror,
        cache_dir=cache,
        pull_timeout_s=pull_timeout_s,
        progress=say,
        recipe=recipe,
    )
    with tempfile.TemporaryDirectory(prefix="ibfleet-image-") as tmp:
        work = Path(tmp)
        deps_dir, app_wheel, deps_cached = build_wheels(
            source=source, cache_dir=cache, work_dir=work, progress=say
        )
        context = work / "context.tar"
        lock_name = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
        with context.open("w+b") as out, _file_lock(cache / f"build-{lock_name}.lock"):
            write_build_context(
                out=out, deps_dir=deps_dir, app_wheel=app_wheel, dockerfile=recipe.dockerfile()
            )
            out.seek(0)
            previous = _image_id(docker_client, tag)
            log = _docker_build(
                docker_client,
                context=out,
                tag=tag,
                buildargs={"BASE": base_name, "VERSION": source.version},
                progress=say,
            )
            image_id = _image_id(docker_client, tag)
            if image_id is None:
                raise ImageBuildError(f"the build finished but {tag} is not in the engine")
            if previous is not None and previous != image_id:
                _remove_superseded(docker_client, previous)
            _forget_old_app_stage(docker_client, log=log, record=cache / f"stage-{lock_name}.id")
    steps, cached = count_cached_steps(log)
    return ImageInfo(
        tag=tag,
        image_id=image_id,
        version=source.version,
        base=base_name,
        base_id=base_id,
        base_source=base_source,
        deps_wheels_cached=deps_cached,
        steps_total=steps,
        steps_cached=cached,
        duration_s=time.monotonic() - started,
        build_log=tuple(log),
    )


async def build_sim_image_async(**kwargs: Any) -> ImageInfo:
    """The same build, off the event loop: every step blocks on subprocesses or the engine."""
    import asyncio

    return await asyncio.to_thread(lambda: build_sim_image(**kwargs))


def _docker_build(
    client: docker.DockerClient,
    *,
    context: IO[bytes],
    tag: str,
    buildargs: dict[str, str],
    progress: Progress,
) -> list[str]:
    """Run a classic-builder build, streaming its log; raise with the failing step's output."""
    log: list[str] = []
    stream = client.api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        buildargs=buildargs,
        rm=True,
        forcerm=True,
        decode=True,
        pull=False,
    )
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            tail = "\n  ".join(log[-15:])
            raise ImageBuildError(f"docker build of {tag} failed: {detail}\n  {tail}")
        text = chunk.get("stream")
        if not isinstance(text, str):
            continue
        for line in text.splitlines():
            if line.strip():
                log.append(line.rstrip())
                progress(line.rstrip())
    return log


# ---------------------------------------------------------------------------------------------
# CLI


def image_command(
    tag: Annotated[str, typer.Option("--tag", help="Tag of the image to build.")] = DEFAULT_TAG,
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base image (Python 3.11, Debian bookworm) to build on."),
    ] = None,
    rebuild_base: Annotated[
        bool,
        typer.Option("--rebuild-base", help="Rebuild the local debootstrap base even if cached."),
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option("--mirror", help="Debian mirror URL for debootstrap (default: apt's)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
) -> None:
    """Build the simulator image with no container registry; print its tag and the time taken."""
    run_build(
        build_sim_image, quiet=quiet, tag=tag, base=base, rebuild_base=rebuild_base, mirror=mirror
    )


def run_build(build: Callable[..., ImageInfo], *, quiet: bool, **options: Any) -> None:
    """A build command's body: the engine, progress on stderr, the result or the error, exit 1."""
    progress: Progress = (
        (lambda _line: None) if quiet else (lambda line: typer.echo(line, err=True))
    )
    try:
        client = docker.from_env(timeout=300)
    except docker.errors.DockerException as exc:
        typer.echo(f"error: no Docker engine answers ({exc})", err=True)
        raise typer.Exit(code=1) from None
    try:
        info = build(docker_client=client, progress=progress, **options)
    except ImageBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        client.close()
    typer.echo(info.tag if quiet else summary(info))


def summary(info: ImageInfo) -> str:
    """One line saying what a build made and how much of it came from the cache."""
    return (
        f"built {info.tag} ({info.image_id[7:19]}) in {info.duration_s:.1f} s; "
        f"base {info.base} ({info.base_source.value}); "
        f"dependency wheels {'cached' if info.deps_wheels_cached else 'built'}; "
        f"{info.steps_cached}/{info.steps_total} build steps from cache"
    )
