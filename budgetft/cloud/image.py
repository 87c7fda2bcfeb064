"""The VM's boot image: a Deep Learning VM image with CUDA, PyTorch and the NVIDIA driver baked
in, so the VM does not spend paid minutes installing them.

An image family is a moving name: Google publishes new images into it and deprecates the family
when its framework or OS leaves support (Deep Learning VM's framework support policy; Ubuntu
22.04's standard support ends in 2027, which is why the defaults are 24.04 families). So a
launch never trusts the name: it resolves the family with images.getFromFamily, refuses an image
that is OBSOLETE or DELETED (and says so for one that is DEPRECATED), boots the exact image it
checked (its selfLink, not the family), and gives the boot disk at least the image's own size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from budgetft.cloud.errors import ImageUnusable
from budgetft.cloud.provider import ImageInfo, Provider

IMAGE_ENV = "BUDGETFT_GCP_IMAGE"
DLVM_PROJECT = "projects/deeplearning-platform-release/global/images/family/"
# Newest first; the first that resolves to a usable image wins. Override with BUDGETFT_GCP_IMAGE
# (any image or family reference).
DEFAULT_FAMILIES = tuple(
    DLVM_PROJECT + family
    for family in (
        "pytorch-2-9-cu129-ubuntu-2404-nvidia-580",
        "pytorch-2-7-cu128-ubuntu-2404-nvidia-570",
        "pytorch-2-9-cu129-ubuntu-2204-nvidia-580",
    )
)
DEFAULT_IMAGE = DEFAULT_FAMILIES[0]
LIST_COMMAND = (
    "gcloud compute images list --project deeplearning-platform-release --no-standard-images "
    "--filter=\"family~pytorch AND family~ubuntu-2404\" --format=\"value(family)\" | sort -u"
)


@dataclass(frozen=True)
class Resolved:
    ref: str  # what was asked for (a family or an image)
    image: ImageInfo
    warning: str = ""  # e.g. the family is DEPRECATED: it works today, not for long

    @property
    def source(self) -> str:
        """What the request boots: the exact image that was checked."""
        link = self.image.self_link
        return link.split("/compute/v1/", 1)[1] if "/compute/v1/" in link else (link or self.ref)


def candidates() -> tuple[str, ...]:
    chosen = os.environ.get(IMAGE_ENV)
    return (chosen,) if chosen else DEFAULT_FAMILIES


def planned() -> str:
    """The image a dry run shows (no network: the family, unresolved)."""
    return candidates()[0]


def resolve(provider: Provider) -> Resolved:
    """The first candidate that resolves to a READY image not past its deprecation; raises
    ImageUnusable with what was tried and how to find a current family."""
    tried = []
    fallback: Resolved | None = None
    for ref in candidates():
        image = provider.image(ref)
        if image is None:
            tried.append(f"{ref.rsplit('/', 1)[-1]}: not found")
            continue
        if image.status and image.status != "READY":
            tried.append(f"{image.name}: {image.status}")
            continue
        if image.deprecation in ("OBSOLETE", "DELETED"):
            tried.append(f"{image.name}: {image.deprecation}" + (f" (replaced by {image.replacement.rsplit('/', 1)[-1]})" if image.replacement else ""))
            continue
        if image.deprecation == "DEPRECATED":
            when = f" and becomes obsolete on {image.obsolete_after[:10]}" if image.obsolete_after else ""
            fallback = fallback or Resolved(ref, image, f"{image.name} is DEPRECATED{when}; set {IMAGE_ENV} to a current family ({LIST_COMMAND})")
            tried.append(f"{image.name}: DEPRECATED")
            continue
        return Resolved(ref, image)
    if fallback is not None:
        return fallback
    raise ImageUnusable(
        f"no usable boot image ({'; '.join(tried)}). Fix: set {IMAGE_ENV} to a current Deep Learning VM family, "
        f"e.g. projects/deeplearning-platform-release/global/images/family/FAMILY, picking FAMILY from `{LIST_COMMAND}`"
    )


def disk_gb(planned_gb: int, image: ImageInfo) -> int:
    """The boot disk: what the job needs, never smaller than the image (Compute Engine refuses a
    disk smaller than its source image)."""
    return max(planned_gb, image.disk_size_gb or 0)
