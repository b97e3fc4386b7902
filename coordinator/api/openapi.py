"""The OpenAPI document: what Litestar derives from the routes, completed with what it cannot see.

Added here: the Bearer scheme (a user's API key or a node's token) and the routes that need none
(signed links, health); the bodies routes stream themselves (a job's multipart submission, a
result's raw bytes); `text/event-stream` for the live feeds; and, per route, only the errors it
can answer. The docs page (`/schema/swagger`) loads Swagger UI from the coordinator itself (the
dashboard build copies it to `/api-docs/`), so it works with no outside network.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Encoding,
    OpenAPIMediaType,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

BEARER = "bearer"
ASSETS = "/api-docs"
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/blobs/{sha256}"),
    ("PUT", "/agent/results/{task_id}"),
    ("HEAD", "/agent/results/{task_id}"),
}
"""Routes that take no bearer: health, and links whose signature is the credential."""
EXTRA_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/agent/register"): (403, 429),
    ("POST", "/agent/complete_task"): (409,),
    ("POST", "/agent/fail_task"): (409,),
    ("POST", "/agent/upload_link"): (409,),
    ("PUT", "/agent/results/{task_id}"): (403, 409, 507),
    ("GET", "/blobs/{sha256}"): (403, 416),
    ("HEAD", "/agent/results/{task_id}"): (403,),
    ("POST", "/jobs"): (507,),
    ("POST", "/jobs/{job_id}/cancel"): (409,),
    ("DELETE", "/jobs/{job_id}"): (409,),
    ("GET", "/jobs/{job_id}/model"): (409,),
    ("POST", "/nodes/{node_id}/drain"): (),
    ("POST", "/admin/users/{email}/disabled"): (409,),
    ("POST", "/admin/users/{email}/role"): (409,),
    ("DELETE", "/keys/{key_id}"): (409,),
    ("POST", "/keys/{key_id}/rotate"): (409,),
}
"""What a route can answer besides what its shape implies (see `_errors`)."""
_FILE = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


def config() -> OpenAPIConfig:
    """The document's header, its Bearer scheme, and a docs page served from here."""
    return OpenAPIConfig(
        title="Grid-X coordinator",
        version="0.1.0",
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A user's API key (`gridx user create`), or a node's token "
                    "(from `POST /agent/register`) on `/agent/*`.",
                )
            }
        ),
        security=[{BEARER: []}],
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{ASSETS}/swagger-ui-bundle.js",
                css_url=f"{ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
                favicon="<link rel='icon' href='data:,'>",  # Litestar's own is on a CDN
            )
        ],
    )


def _errors(method: str, path: str, operation: Any) -> set[str]:
    """The error statuses a route can answer: 500 always; 401, 403, 429 where a bearer is needed;
    400 and 422 where anything is parsed; 413 where a body is; 404 for a named thing; and its
    own."""
    codes = {500, *EXTRA_ERRORS.get((method, path), ())}
    if (method, path) not in PUBLIC:
        # 403: a disabled user, a banned node, admins only; 429: too many failed sign-ins
        codes.update((401, 403, 429))
    if operation.parameters or method in ("POST", "PUT"):
        codes.update((400, 422))
    if method in ("POST", "PUT"):
        codes.add(413)
    if "{" in path:
        codes.add(404)
    return {str(c) for c in codes}


def _submission() -> RequestBody:
    files = ("train_py", "requirements", "data", "init_model", "evaluate_py", "test_data")
    properties: dict[str, Schema | Reference] = {name: _FILE for name in files}
    properties["config"] = Reference(ref="#/components/schemas/JobConfig")
    return RequestBody(
        required=True,
        description="train.py (required), its requirements, the data (or a `dataset` in the "
        "config), a starting model, an evaluation script with its test data, and the config.",
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT, properties=properties, required=["train_py"]
                ),
                encoding={"config": Encoding(content_type="application/json")},
            )
        },
    )


def complete(app: Litestar) -> None:
    """Finish the app's OpenAPI document (before anything reads it)."""
    openapi = app.openapi_schema
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post", "put", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            verb = method.upper()
            keep = _errors(verb, path, operation)
            operation.responses = {
                code: r
                for code, r in (operation.responses or {}).items()
                if not code.startswith(("4", "5")) or code in keep
            }
            if (verb, path) in PUBLIC:
                operation.security = [{}]  # no bearer: the signature (or nothing) is enough
            if path.endswith("/events") and "200" in operation.responses:
                operation.responses["200"].content = {
                    "text/event-stream": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
                }
    jobs = (openapi.paths or {}).get("/jobs")
    if jobs is not None and jobs.post is not None:
        jobs.post.request_body = _submission()
    results = (openapi.paths or {}).get("/agent/results/{task_id}")
    if results is not None and results.put is not None:
        results.put.request_body = RequestBody(
            required=True,
            description="The weights file (safetensors or a torch state_dict), as raw bytes.",
            content={"application/octet-stream": OpenAPIMediaType(schema=_FILE)},
        )


def document(app: Litestar) -> str:
    """The app's OpenAPI document as stable, sorted JSON (what web/openapi.json holds)."""
    doc = json.loads(msgspec.json.encode(app.openapi_schema.to_schema()))
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"
