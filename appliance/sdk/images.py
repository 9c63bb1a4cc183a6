"""The images in the internal registry on the wire: repositories, tags, digests, sizes, templates using them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageTag(BaseModel):
    tag: str
    reference: str = Field(description="What a template writes as its image: host:port/repository:tag.")
    digest: str = Field(description="The manifest digest (sha256:...).")
    media_type: str
    size: int = Field(description="Bytes: the manifest, its config and its layers.")
    templates: list[str] = Field(description="Names of templates whose versions name this image.")


class ImageRepository(BaseModel):
    name: str
    tags: list[ImageTag]


class ImageListResponse(BaseModel):
    registry: str = Field(description="host:port of the internal registry.")
    reachable: bool = Field(description="False when the registry did not answer; `problem` says why.")
    problem: str | None = None
    hint: str | None = None
    repositories: list[ImageRepository]
