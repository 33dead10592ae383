"""The admin token that `POST /reload` requires when the server has one (always, when it is
bound beyond loopback): `Authorization: Bearer TOKEN`, read by FastAPI's `HTTPBearer` (which
also puts the scheme in the OpenAPI document) and compared in constant time."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.serve.errors import RequestError

_bearer = HTTPBearer(auto_error=False)  # our 401 and message, not FastAPI's


def require(token: str) -> DependsParam:
    """A route dependency refusing (401) a request without `Authorization: Bearer <token>`."""

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not (credentials and secrets.compare_digest(given.encode(), token.encode())):
            raise RequestError("POST /reload needs the admin token (Authorization: Bearer)", 401)

    return Depends(check)
