"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class MnistError(Exception):
    """A problem a user can act on: the message names the file, field or count at fault."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow keeps it in `.message`), for errors
    that must fit on one line; its type's name when it says nothing."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DownloadError(MnistError):
    """Every mirror failed; worth retrying later, unlike a damaged local file."""
