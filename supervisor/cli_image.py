"""``ibfleet image build``: the supervisor's container image, built with no container registry.

The build is the simulator image's pipeline (:mod:`ibsim.image`: a debootstrap base imported
with ``docker import`` when no public base can be pulled, a dependency-wheel cache, a fixed
context) with the supervisor's recipe: ``deploy/Dockerfile`` and a local base that also holds
Debian's iptables, which the firewall helper runs (README, "Run the supervisor image").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ibsim import image as pipeline

__all__ = [
    "DEFAULT_TAG",
    "LOCAL_BASE_TAG",
    "build_supervisor_image",
    "image_app",
    "supervisor_recipe",
]

DEFAULT_TAG = "ibfleet:latest"
# Its own local base: the simulator's stays as it is, and this one adds iptables.
LOCAL_BASE_TAG = "ibfleet-base:bookworm-py311-iptables"
# Besides the simulator base's packages (ibsim.image.DEBOOTSTRAP_PACKAGES).
EXTRA_BASE_PACKAGES = ("iptables",)

image_app = typer.Typer(help="The supervisor's container image.", no_args_is_help=True)


def dockerfile_path(project_root: Path | None = None) -> Path:
    """``deploy/Dockerfile`` of the ibfleet source tree (explicit, else above this module)."""
    from ibsim import image as pipeline

    source = pipeline.find_project_source(project_root=project_root)
    if source.root is None:
        raise pipeline.ImageBuildError(
            "the supervisor image is built from the ibfleet source tree (deploy/Dockerfile), "
            "but ibfleet was installed from a wheel; pass --project-root with a checkout"
        )
    path = source.root / "deploy" / "Dockerfile"
    if not path.is_file():
        raise pipeline.ImageBuildError(f"no Dockerfile at {path}")
    return path


def supervisor_recipe(project_root: Path | None = None) -> pipeline.ImageRecipe:
    """The supervisor image's recipe for :func:`ibsim.image.build_image`."""
    from ibsim import image as pipeline

    path = dockerfile_path(project_root)
    return pipeline.ImageRecipe(
        dockerfile=path.read_bytes,
        local_base_tag=LOCAL_BASE_TAG,
        base_packages=(*pipeline.DEBOOTSTRAP_PACKAGES, *EXTRA_BASE_PACKAGES),
    )


def build_supervisor_image(
    *, project_root: Path | None = None, tag: str = DEFAULT_TAG, **options: Any
) -> pipeline.ImageInfo:
    """Build (or refresh from the cache) the supervisor image; ``options`` as ``build_image``'s."""
    from ibsim import image as pipeline

    return pipeline.build_image(
        recipe=supervisor_recipe(project_root), project_root=project_root, tag=tag, **options
    )


@image_app.command("build")
def build_command(
    tag: Annotated[str, typer.Option("--tag", help="Tag of the image to build.")] = DEFAULT_TAG,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Base image (Python 3.11, Debian bookworm, with iptables) to build on."
        ),
    ] = None,
    rebuild_base: Annotated[
        bool,
        typer.Option("--rebuild-base", help="Rebuild the local debootstrap base even if cached."),
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option("--mirror", help="Debian mirror URL for debootstrap (default: apt's)."),
    ] = None,
    project_root: Annotated[
        Path | None,
        typer.Option("--project-root", help="The ibfleet checkout (default: this one)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the tag.")] = False,
) -> None:
    """Build the supervisor image with no container registry; print its tag and the time taken."""
    from ibsim import image as pipeline

    pipeline.run_build(
        build_supervisor_image,
        quiet=quiet,
        project_root=project_root,
        tag=tag,
        base=base,
        rebuild_base=rebuild_base,
        mirror=mirror,
    )
