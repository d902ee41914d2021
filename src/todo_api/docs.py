"""`/docs` (Swagger UI) and `/redoc`, with their scripts served by the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and are blank without internet; these
load the copies vendored in `static/` (versions and licences in `static/README.md`), and a
Content-Security-Policy keeps the browser from fetching anything from elsewhere.
"""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

ASSETS_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/docs/assets"

API_DESCRIPTION = """\
The backend of a multi-user Todo app. Every `/api/tasks` route needs
`Authorization: Bearer <JWT>`; each person sees and changes only their own tasks.

To try it here: press **Authorize** and paste a token (in development,
`todo-api token --sub demo` prints one; with built-in accounts, `POST /api/auth/login`
answers one), then open a route, **Try it out**, **Execute**.

Errors are JSON, `{"detail": "<one sentence>"}`, with `errors` per field on a 400.
Every response carries `X-Request-ID`; task responses carry an `ETag` for `If-Match`.
Every write to tasks and tags takes an `Idempotency-Key`: a retry with the same key gets
the first answer again (`Idempotent-Replayed: true`) instead of writing twice.
"""

TAGS = [
    {
        "name": "tasks",
        "description": "Your tasks: create, list, change, complete, delete. Every route here "
        "also answers under `/api/{user_id}/tasks…` (the paths many frontends of this app "
        "call): the same when `user_id` is the token's `sub`, 403 for any other `user_id`, "
        "checked before anything else.",
    },
    {
        "name": "tags",
        "description": "Your tags, with how many tasks carry each: rename, merge, delete.",
    },
    {
        "name": "sync",
        "description": "Staying in step: the change feed (`GET /api/tasks/changes`, every "
        "change after a cursor, deletes included) and live events (`GET /api/events`, "
        "Server-Sent Events carrying the same changes as they happen).",
    },
    {
        "name": "mcp",
        "description": "The tasks as tools for AI agents: `POST /mcp` speaks the Model Context "
        "Protocol (streamable HTTP, stateless) with the same bearer token; its eight tools are "
        "described by the protocol's `tools/list`, not here. The metadata below tells an MCP "
        "client where to get a token.",
    },
    {"name": "accounts", "description": "Built-in email and password accounts (when enabled)."},
    {"name": "health", "description": "Liveness and readiness probes; no token needed."},
]

# Inline: the pages' start-up script and the styles both UIs set on elements. `blob:`: the
# worker ReDoc starts for search. `data:`: Swagger UI's inline SVG icons.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "base-uri 'none'",
    ]
)

ASSETS_CACHE_CONTROL = "public, max-age=86400"


class VendoredAssets(StaticFiles):
    """The vendored files change only with a new version of the API, so browsers may keep
    them for a day, instead of the `no-store` every API answer gets (observability.py)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = ASSETS_CACHE_CONTROL
        return response


router = APIRouter(include_in_schema=False)
router.mount(ASSETS_PATH, VendoredAssets(directory=ASSETS_DIR), name="docs-assets")


def _root(request: Request) -> str:
    # Behind a proxy that mounts the API under a prefix, every URL in the page needs it too.
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: read the contract and try every route with a token ("Authorize")."""
    root = _root(request)
    return _confined(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title}: Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={
                # A pasted token survives a reload of the page (kept in localStorage).
                "persistAuthorization": True,
                "displayRequestDuration": True,
                # Never send the document to the public validator service.
                "validatorUrl": None,
            },
        )
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same contract as one readable page."""
    root = _root(request)
    return _confined(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title}: ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
    )
