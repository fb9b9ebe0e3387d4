"""The studio's one error type: a sentence for the page and the HTTP status it answers with."""

from __future__ import annotations

from imgrec.errors import ImgrecError


class StudioError(ImgrecError):
    """A problem the user can fix; the API answers `{"error": message}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
