"""The web terminal on the wire: GET /api/v2/workspaceagents/{id}/pty, a WebSocket (Coder's path and query).

Query: `reconnect` (the id of the shell to attach to, a UUID the browser keeps; the same id within
5 minutes finds the same shell and replays its scrollback), `width` and `height` (columns and rows),
and optionally `command` (run instead of a login shell when the id is new).

Frames, browser -> server: text frames, each one JSON object, either {"data": "<keystrokes>"} or
{"height": rows, "width": columns}, at most MAX_MESSAGE_BYTES. Server -> browser: binary frames of
terminal output (UTF-8 as the shell wrote it, split anywhere). The server closes with
1000 when the shell exits (the reason gives its status), 1008 for a message that is not one of the
two objects (the reason says what was wrong), 1009 for one over the size limit, and 1011 when the
session to the agent ends under it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from appliance.sdk.base import Body, Query

TERMINAL_PATH = "/api/v2/workspaceagents/{agent}/pty"
MAX_MESSAGE_BYTES = 64 << 10
MAX_COLUMNS = MAX_ROWS = 1000  # more than any screen; a bigger size is a client bug or an attack on memory
MAX_COMMAND = 4096

Columns = Annotated[int, Field(ge=1, le=MAX_COLUMNS)]
Rows = Annotated[int, Field(ge=1, le=MAX_ROWS)]

# WebSocket close codes (RFC 6455 section 7.4.1) the server uses.
CLOSE_EXITED = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_AGENT_GONE = 1011


class TerminalQuery(Query):
    reconnect: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")]
    width: Columns = 80
    height: Rows = 24
    command: Annotated[str, Field(max_length=MAX_COMMAND)] = ""


class TerminalInput(Body):
    """Keystrokes (what the user typed or pasted)."""

    data: str


class TerminalResize(Body):
    height: Rows
    width: Columns
