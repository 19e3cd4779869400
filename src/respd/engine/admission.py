"""A run's place at a backend with limited room (a local model's queue), from its checks until it ends.

A backend that declares ``abilities.admission`` is asked for a place before any event of the response exists,
so that a full queue is a 429 and a request its model cannot read a 400 (see
:class:`respd.backends.base.Abilities`). What the backend prepared while admitting (a local model's grammar)
serves the turn it was admitted with; later turns (other tools, another context) are prepared afresh, while
the run keeps its place.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from respd.backends.base import Admission, Backend, Delta, ModelRequest


class Place:
    """The admission a run holds, and the model request it was admitted with."""

    __slots__ = ("_admission", "_request")

    def __init__(self, admission: Admission | None, request: ModelRequest) -> None:
        self._admission = admission
        self._request: ModelRequest | None = request

    @classmethod
    def take(cls, backend: Backend, request: ModelRequest) -> Place | None:
        """A place for ``request`` at ``backend`` if it has limited room (None if not); raises its 4xx."""
        if not backend.abilities.admission:
            return None
        return cls(backend.admit(request), request)

    def generate(self, backend: Backend, request: ModelRequest) -> AsyncGenerator[Delta | list[Delta], None]:
        """Run ``request`` on ``backend``; the first turn, as admitted, uses what admitting prepared."""
        admitted, self._request = self._request, None
        if admitted is not None and request is admitted:
            return backend.generate(request, self._admission)
        return backend.generate(request)

    @property
    def request(self) -> ModelRequest | None:
        """The request admitted, until its turn runs."""
        return self._request

    def release(self) -> None:
        """Give the place back. Idempotent."""
        self._request = None
        if self._admission is not None:
            self._admission.release()
            self._admission = None
