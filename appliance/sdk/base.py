"""What every wire model shares: strict request bodies and queries, and timestamps as the API writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer


class Body(BaseModel):
    """A request body: unknown fields are refused so a typo is reported, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


# isoformat() keeps the "+00:00" offset the API has always written (pydantic alone would write "Z").
Timestamp = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json")]
