"""The service's one error shape: a `RequestError` (or any `MnistError`) becomes a JSON body
`{"error": "..."}` with its status, and so do FastAPI's own errors (404, 405, ...)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnist.errors import MnistError


class RequestError(MnistError):
    """A bad request: answered with `status` and a JSON error naming the problem."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def install(app: FastAPI) -> None:
    """Answer every `MnistError` and HTTP error of `app` with `{"error": ...}`."""

    @app.exception_handler(MnistError)
    async def _error(request: Request, exc: MnistError) -> JSONResponse:
        status = exc.status if isinstance(exc, RequestError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)
