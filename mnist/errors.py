"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class MnistError(Exception):
    """A problem a user can act on: the message names the file, field or count at fault."""


class DownloadError(MnistError):
    """Every mirror failed; worth retrying later, unlike a damaged local file."""
