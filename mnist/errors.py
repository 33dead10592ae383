"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterator


class MnistError(Exception):
    """A problem a user can act on: the message names the file, field or count at fault."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow keeps it in `.message`), for errors
    that must fit on one line; its type's name when it says nothing."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it, each once: causes, contexts, and what requests and
    urllib3 carry as arguments (`ConnectionError(MaxRetryError(reason=NewConnectionError()))`)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]


class DownloadError(MnistError):
    """Every mirror failed; worth retrying later, unlike a damaged local file."""
