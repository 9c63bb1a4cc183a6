"""Nested blocks the tf framework lacks: a list of blocks (kept in order) and a single optional block.

Both hold only primitive attributes, so their values pass through unchanged between terraform's
wire form and Python: a list of dicts, and a dict or None.
"""

from __future__ import annotations

from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.schema import Block, NestedBlock, NestMode


class _FlatBlock(NestedBlock):  # type: ignore[misc]  # tf ships no type hints
    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        return bool(a_decoded == b_decoded)


class ListBlock(_FlatBlock):
    """`name { ... }` repeated, in the order written (tf's NestMode has Set and Single only)."""

    def __init__(self, type_name: str, block: Block) -> None:
        super().__init__(type_name, NestMode.Set, block)

    def to_pb(self) -> Any:
        message = super().to_pb()
        message.nesting = pb.Schema.NestedBlock.NestingMode.LIST
        return message


class SingleBlock(_FlatBlock):
    """`name { ... }` at most once; absent is null."""

    def __init__(self, type_name: str, block: Block) -> None:
        super().__init__(type_name, NestMode.Single, block)
