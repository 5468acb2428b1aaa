"""Reading the server-sent events of a streamed ``/generate`` (framing: ``signet/api/sse.py``)."""

from __future__ import annotations

from pydantic import ValidationError

from signet.api.generate.protocol import GenerateChunk
from signet.api.protocol import Problem
from signet.client.errors import SignetError


class EventReader:
    """Feed it the response's lines one at a time: it returns each chunk as its event ends,
    raises SignetError for an ``event: error``, and sets ``done`` at ``data: [DONE]``."""

    def __init__(self) -> None:
        self.done = False
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> GenerateChunk | None:
        if line.startswith("event:"):
            self._event = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif not line and self._data:
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return self._chunk(event, data)
        return None

    def _chunk(self, event: str, data: str) -> GenerateChunk | None:
        if event == "error":
            try:
                problem = Problem.model_validate_json(data)
            except ValidationError:
                raise SignetError(f"the stream failed: {data[:200]}") from None
            raise SignetError.of(problem)
        if data == "[DONE]":
            self.done = True
            return None
        return GenerateChunk.model_validate_json(data)

    def check_complete(self) -> None:
        """At the end of the response: a stream without ``[DONE]`` was cut short."""
        if not self.done:
            raise SignetError("the stream ended before [DONE]: the connection was cut")
