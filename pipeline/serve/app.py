"""The HTTP surface of `folio serve` (FastAPI): OpenAI's `POST /v1/completions` (streamed as
server-sent events or not) and `GET /v1/models`, `GET /health`, and the playground at `/`.

Every failure is an OpenAI-style body, `{"error": {"message", "type", "param", "code"}}`, with its
status: 400 for a request folio cannot run (malformed JSON, an unknown field or value, a prompt
longer than the model's window or with characters its tokenizer lacks), 401 for a missing or
wrong API key, 404 for a model the server does not hold, 429 with Retry-After when the queue is
full, 503 when the registry does not answer for a second model. A stream that fails midway sends
that body as an event, then `data: [DONE]`. A client that goes away cancels its generation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from folio.batching import Job, QueueFull
from pipeline.serve import schemas
from pipeline.serve.follower import Models
from pipeline.serve.schemas import CompletionRequest, error_body

STATIC = Path(__file__).with_name("static")
RETRY_AFTER_SECONDS = 1
DISCONNECT_CHECK_SECONDS = 0.5
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Refused(Exception):
    """A request answered with an error body: status, message, type, param, code."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.body, self.headers = status, error_body(message, type_, param, code), headers


def _refusal_response(refused: Refused) -> JSONResponse:
    return JSONResponse(refused.body, status_code=refused.status, headers=refused.headers)


def _validation_message(err: RequestValidationError) -> Refused:
    first = err.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(p for p in loc if not p.isdigit() and p not in ("str", "list[str]")) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return Refused(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'malformed')}); "
                            "send a JSON object")
    if kind == "extra_forbidden":
        return Refused(400, f"unknown parameter {param!r}: folio serve does not take it", param=param)
    if kind == "missing":
        return Refused(400, f"{param} is required", param=param)
    if kind == "model_attributes_type":
        return Refused(400, "the request body must be a JSON object", param=None)
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    value = json.dumps(first.get("input"), default=str)[:80]
    return Refused(400, f"{param or 'request'}: {message} (got {value})" if param else message, param=param)


def _stream_cancelling(events, jobs: list[Job]) -> StreamingResponse:
    """An SSE response whose jobs are cancelled however it ends (finished, or the client gone)."""

    class Cancelling(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                for job in jobs:
                    job.cancel()

    return Cancelling(events, media_type="text/event-stream", headers=SSE_HEADERS)


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(models: Models, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="folio serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, err: RequestValidationError):
        return _refusal_response(_validation_message(err))

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):
        code = "not_found" if err.status_code == 404 else None
        return JSONResponse(error_body(str(err.detail), "invalid_request_error", None, code), status_code=err.status_code)

    @app.exception_handler(Refused)
    async def refused(_request, err: Refused):
        return _refusal_response(err)

    @app.middleware("http")
    async def authorize(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return _refusal_response(Refused(
                    401, "missing or wrong API key: send the server's key as `Authorization: Bearer <key>`",
                    code="invalid_api_key"))
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": models.primary.id, "auth": bool(api_key), **models.load()}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": await run_in_threadpool(models.describe)}

    @app.get("/")
    async def playground():
        return FileResponse(STATIC / "playground.html", media_type="text/html")

    @app.get("/playground.js")
    async def playground_script():
        return FileResponse(STATIC / "playground.js", media_type="text/javascript")

    @app.get("/v1/playground/versions")
    async def versions():
        """The versions a playground column can pick, newest first, each with its aliases."""
        return {"served": models.primary.id, "follows": models.alias,
                "choices": await run_in_threadpool(models.choices)}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        prompts, n = body.prompts(), body.n
        jobs: list[Job] = []
        prompt_tokens = 0

        def job_for(offset: int, prompt: str):
            def make(served):
                nonlocal prompt_tokens
                try:
                    ids = served.tokenizer.encode(prompt)
                except ValueError as err:
                    raise Refused(400, f"prompt: {err}", param="prompt", code="unencodable_prompt") from None
                if len(ids) > served.block_size:
                    raise Refused(400, f"prompt: {len(ids)} tokens, longer than the model's window of "
                                       f"{served.block_size} tokens; shorten it", param="prompt",
                                  code="context_length_exceeded")
                prompt_tokens += len(ids)

                def emit(index, piece, finish):
                    loop.call_soon_threadsafe(events.put_nowait, (offset + index, piece, finish))

                return Job(ids, body.max_tokens or schemas.DEFAULT_MAX_TOKENS, emit, body.temperature,
                           body.top_k, body.top_p if body.top_p < 1 else None, body.stops(), body.seed, n)
            return make

        served = None
        try:
            for p, prompt in enumerate(prompts):
                served, job = await run_in_threadpool(models.submit, body.model, job_for(p * n, prompt))
                jobs.append(job)
        except LookupError as err:
            raise Refused(404, f"model {body.model!r}: {err}", param="model", code="model_not_found") from None
        except QueueFull:
            raise Refused(429, "the server is busy: its queue is full; retry after a second",
                          "rate_limit_error", None, "rate_limit_exceeded",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except (Refused, ValueError) as err:
            raise err if isinstance(err, Refused) else Refused(400, str(err), param="n") from None
        except Exception as err:  # the registry did not answer for a second model
            raise Refused(503, f"cannot load model {body.model!r}: {str(err).splitlines()[0] if str(err) else err!r}",
                          "server_error", "model", "model_unavailable") from None
        finally:
            if len(jobs) < len(prompts):
                for job in jobs:
                    job.cancel()
        total, id_, model_id = len(prompts) * n, schemas.new_id(), served.id

        def usage():
            return schemas.usage(prompt_tokens, sum(job.generated for job in jobs))

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            async def stream():
                finished = 0
                while finished < total:
                    index, piece, finish = await events.get()
                    if finish and finish.startswith("error"):
                        yield _sse(error_body(f"generation failed ({finish}); retry", "server_error"))
                        break
                    yield _sse(schemas.completion(id_, model_id, [schemas.choice(index, piece, finish)], None))
                    finished += finish is not None
                else:
                    if include_usage:
                        yield _sse(schemas.completion(id_, model_id, [], usage()))
                yield "data: [DONE]\n\n"

            return _stream_cancelling(stream(), jobs)

        texts, reasons = [""] * total, [None] * total
        try:
            while sum(r is not None for r in reasons) < total:
                try:
                    index, piece, finish = await asyncio.wait_for(events.get(), DISCONNECT_CHECK_SECONDS)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return JSONResponse(error_body("the client went away", "invalid_request_error"), 499)
                    continue
                if finish and finish.startswith("error"):
                    raise Refused(500, f"generation failed ({finish}); retry", "server_error")
                texts[index] += piece
                reasons[index] = finish
        finally:
            for job in jobs:
                job.cancel()
        choices = [schemas.choice(i, texts[i], reasons[i]) for i in range(total)]
        return schemas.completion(id_, model_id, choices, usage())

    return app
