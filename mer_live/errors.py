"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class MerLiveError(Exception):
    """A problem the user can fix; the message says what and how."""


class BundleError(MerLiveError):
    """A model bundle that is missing, tampered with, or inconsistent."""
