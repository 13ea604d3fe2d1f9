"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class MerLiveError(Exception):
    """A problem the user can fix; the message says what and how."""


class AudioError(MerLiveError):
    """A file that cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BundleError(MerLiveError):
    """A model bundle that is missing, tampered with, or inconsistent."""


def one_line(exc: BaseException) -> str:
    """An unexpected exception as one line for a row or a message: its type and its first line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
