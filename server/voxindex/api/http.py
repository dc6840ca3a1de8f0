"""What every HTTP route shares: ``ApiError`` and its JSON body, the authenticated caller, the
transcript index."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from voxindex.api.auth import Authenticator, AuthError, ForbiddenError, Principal
from voxindex.api.services import running
from voxindex.index.base import TranscriptIndex


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse({"error": {"code": e.code, "message": e.message}}, status_code=e.status)


def caller(request: Request, scope: str) -> Principal:
    """The caller, holding ``scope``: 401 without a valid credential, 403 without the scope."""
    auth: Authenticator = running(request.app).auth
    try:
        return auth.authenticate(request.headers.get("authorization")).require(scope)
    except AuthError as e:
        raise ApiError(401, e.code, e.message) from None
    except ForbiddenError as e:
        raise ApiError(403, e.code, e.message) from None


def index_of(request: Request) -> TranscriptIndex:
    index: TranscriptIndex | None = running(request.app).index
    if index is None:
        raise ApiError(503, "index_disabled", "this server runs without a transcript index")
    return index
