"""The HTTP API (Starlette): routes, query parameters, errors as JSON, and the API key.

Every answer the API makes is JSON; every refusal is ``{"error", "hint"}``
with a 4xx status, and the server goes on. Endpoints under ``/v1/`` need the
API key when the server has one; the page, the docs and ``/healthz`` do not
(they tell nothing about the model, and probes and browsers fetch them
without one). The page at ``/`` and the files under ``/static/`` come from
the package (cnnkit/serve/static): a request names a file of that fixed
list, never a path on the server's disk.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cnnkit import __version__
from cnnkit.errors import CnnkitError, close_match_hint
from cnnkit.jsontext import dumps
from cnnkit.serve import openapi
from cnnkit.serve.batching import ModelStopped
from cnnkit.serve.bodies import RequestError, Upload, check_length, read_limited, uploads
from cnnkit.serve.service import Service
from cnnkit.training.options import MAX_TOP_K

PUBLIC = ("/", "/healthz", "/docs", "/openapi.json")
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The page and the docs: scripts, styles and requests from this server only.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
)
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def json_answer(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # cnnkit's JSON text: the bytes predict --json writes for the same record.
    return Response(
        dumps(obj), status, {**JSON_HEADERS, **(headers or {})}, media_type="application/json"
    )


def error_answer(status: int, message: str, hint: str | None = None, **headers: str) -> Response:
    body = {"error": message}
    if hint:
        body["hint"] = hint
    return json_answer(body, status, headers)


Handler = Callable[[Request], Awaitable[Response]]


def build_app(
    service: Service, *, max_body: int, timeout_s: float, api_key: str | None = None
) -> Any:
    """The ASGI application serving ``service``: bodies up to ``max_body`` bytes, answers
    within ``timeout_s`` seconds; ``api_key``: the key /v1/ needs (None: none)."""
    doc = openapi.document(__version__)
    docs_html = openapi.docs_page(doc)
    files = _package_files()

    def answered(fn: Handler) -> Handler:
        """``fn`` within the time limit, its refusals and failures as JSON, counted."""

        async def handler(request: Request) -> Response:
            try:
                async with _time_limit(timeout_s):
                    response = await fn(request)
            except TimeoutError:
                response = _timed_out(request, timeout_s)
            except CnnkitError as exc:  # a RequestError has its status; others are the input's
                status = 503 if isinstance(exc, ModelStopped) else getattr(exc, "status", 422)
                response = error_answer(status, exc.message, exc.hint)
            except ClientDisconnect:
                response = error_answer(400, "the client went away before the body was sent")
            except Exception as exc:  # noqa: BLE001 - one request fails, the server goes on
                response = _failed(request, exc)
            service.statuses[response.status_code] += 1
            return response

        return handler

    async def read_images(request: Request) -> tuple[list[Upload], bool]:
        check_length(request.headers.get("content-length"), max_body)
        body = await read_limited(request.stream(), max_body)
        request.state.body_read = True
        return uploads(request.headers.get("content-type"), body)

    async def predict(request: Request) -> Response:
        top_k = _query(request, {"top_k"}).top_k()
        images, form = await read_images(request)
        records, batch = await service.classify(images, top_k)
        answer = {"records": records} if form else records[0]
        return json_answer(answer, headers={"X-Cnnkit-Batch": str(batch)})

    async def explain(request: Request) -> Response:
        query = _query(request, {"top_k", "method", "class", "layer", "alpha", "annotate"})
        options = dict(
            top_k=query.top_k(),
            method=query.text("method", "gradcam"),
            class_=query.text("class"),
            layer=query.text("layer"),
            alpha=query.number("alpha", 0.5, 0.0, 1.0),
            annotate=query.flag("annotate", True),
        )
        images, _ = await read_images(request)
        if len(images) != 1:
            raise RequestError(
                400,
                f"explain takes one image per request, not {len(images)}",
                hint="send one file per request",
            )
        return json_answer(await service.explain(images[0], **options))

    async def model(request: Request) -> Response:
        _query(request, set())
        loop = asyncio.get_running_loop()  # builds the model's summary once: not on the loop
        return json_answer(await loop.run_in_executor(service.decoders, service.describe))

    async def stats(request: Request) -> Response:
        _query(request, set())
        return json_answer(service.stats())

    async def healthz(request: Request) -> Response:
        if service.worker.alive:
            return json_answer({"status": "ok"})
        return json_answer({"status": "stopped"}, 503)

    async def openapi_json(request: Request) -> Response:
        return json_answer(doc)

    async def docs(request: Request) -> Response:
        return _page(docs_html.encode(), MEDIA_TYPES[".html"])

    async def page(request: Request) -> Response:
        return _page(*files["index.html"])

    async def static(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            raise RequestError(404, f"no file {request.path_params['name']!r} here")
        return _page(*found)

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (no such route, a method the route does not take).
        status = getattr(exc, "status_code", 500)
        hint = "see /docs for the endpoints" if status in (404, 405) else None
        answer = error_answer(status, str(getattr(exc, "detail", exc)), hint)
        answer.headers.update(getattr(exc, "headers", None) or {})  # Allow, for a 405
        service.statuses[status] += 1
        return answer

    routes = [
        Route("/", answered(page), methods=["GET"]),
        Route("/static/{name}", answered(static), methods=["GET"]),
        Route("/docs", answered(docs), methods=["GET"]),
        Route("/openapi.json", answered(openapi_json), methods=["GET"]),
        Route("/healthz", answered(healthz), methods=["GET"]),
        Route("/v1/model", answered(model), methods=["GET"]),
        Route("/v1/stats", answered(stats), methods=["GET"]),
        Route("/v1/predict", answered(predict), methods=["POST"]),
        Route("/v1/explain", answered(explain), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return app if api_key is None else KeyCheck(app, api_key, service.statuses)


if sys.version_info >= (3, 11):
    # A timer on the event loop: anyio's cancel scope cost a sixth of the loop's time.
    _time_limit = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    @asynccontextmanager
    async def _time_limit(seconds: float) -> AsyncIterator[None]:
        import anyio

        with anyio.fail_after(seconds):
            yield


def _failed(request: Request, exc: Exception) -> Response:
    """A 500 for a failure no check foresaw: its details on the server's stderr only."""
    import os
    import traceback

    from cnnkit import console

    line = f"{request.method} {request.url.path} failed: {type(exc).__name__}: {exc}"
    if os.environ.get("CNNKIT_DEBUG"):
        line += "\n" + traceback.format_exc()
    console.warn(line)
    return error_answer(
        500,
        f"the server failed to answer ({type(exc).__name__})",
        "the server's stderr says why; report it if it repeats",
    )


def _timed_out(request: Request, timeout_s: float) -> Response:
    if not getattr(request.state, "body_read", False):
        return error_answer(
            408,
            f"the request body did not arrive within {timeout_s:g} s",
            "send it faster, or ask for a longer --timeout",
        )
    return error_answer(
        504,
        f"the answer took longer than {timeout_s:g} s",
        "the server is busy; try again, or ask for a longer --timeout",
    )


def _page(data: bytes, media_type: str) -> Response:
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": PAGE_POLICY}
    return Response(data, 200, headers, media_type=media_type)


def _package_files() -> dict[str, tuple[bytes, str]]:
    """The page's files shipped in the package, by name: the only files the server sends."""
    folder = importlib.resources.files("cnnkit.serve") / "static"
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in MEDIA_TYPES:
            found[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return found


class _query:  # noqa: N801 - read like a function: _query(request, allowed).top_k()
    """A request's query parameters, checked: only ``allowed`` names, each once."""

    def __init__(self, request: Request, allowed: set[str]) -> None:
        params = request.query_params
        for name in params:
            if name not in allowed:
                hint = close_match_hint(name, allowed, "parameter") if allowed else (
                    "this endpoint takes no query parameters")  # fmt: skip
                raise RequestError(400, f"unknown query parameter {name!r}", hint)
            if len(params.getlist(name)) > 1:
                raise RequestError(400, f"query parameter {name!r} is given more than once")
        self.params = params

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def top_k(self) -> int:
        raw = self.params.get("top_k")
        if raw is None:
            return 5
        # ASCII digits only, and few of them: str.isdigit() takes '²', which int()
        # refuses, and int() refuses more than 4,300 digits.
        digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_TOP_K))
        if not digits or not 1 <= int(raw) <= MAX_TOP_K:
            raise RequestError(400, f"top_k={raw!r} is not a whole number from 1 to {MAX_TOP_K}")
        return int(raw)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise RequestError(400, f"{name}={raw!r} is not a number from {low:g} to {high:g}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.params.get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise RequestError(400, f"{name}={raw!r} is not true or false")


class KeyCheck:
    """ASGI middleware: paths other than the public ones need the API key, else 401.

    The key is taken from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``
    and compared in constant time (hmac.compare_digest), both headers always,
    so that the time of an answer says nothing about how much of a key was right.
    """

    def __init__(self, app: Any, key: str, statuses: Counter[int]) -> None:
        self.app = app
        self.key = key.encode("utf-8")
        self.statuses = statuses

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        guarded = scope["type"] == "http" and not self._public(scope["path"])
        if guarded and not self._has_key(scope):
            self.statuses[401] += 1
            answer = error_answer(
                401,
                "this server needs an API key",
                "send Authorization: Bearer KEY (or X-API-Key: KEY)",
                **{"WWW-Authenticate": "Bearer"},
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC or path.startswith("/static/")

    def _has_key(self, scope: dict[str, Any]) -> bool:
        bearer = given = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                bearer = value[7:].strip()
            elif name == b"x-api-key":
                given = value.strip()
        by_bearer = hmac.compare_digest(bearer, self.key)
        by_header = hmac.compare_digest(given, self.key)
        return by_bearer or by_header
