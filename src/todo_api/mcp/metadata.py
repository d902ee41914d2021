"""The protected-resource metadata of `/mcp` (RFC 9728), which MCP clients read to learn how
to get a token for it: the resource's URL and, when Better Auth is configured, its origin as
the authorization server."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from todo_api.openapi import documented_response
from todo_api.runtime import runtime_of

# RFC 9728 §3.1: the well-known prefix, then the resource's path.
METADATA_PATH = "/.well-known/oauth-protected-resource"
RESOURCE_PATH = "/mcp"

router = APIRouter(tags=["mcp"])


class ResourceMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "resource": "https://api.example.com/mcp",
                    "authorization_servers": ["https://app.example.com"],
                    "bearer_methods_supported": ["header"],
                    "resource_name": "Todo API",
                    "resource_documentation": "https://api.example.com/docs",
                }
            ]
        }
    )

    resource: str = Field(description="The MCP endpoint these tokens are for.")
    authorization_servers: list[str] | None = Field(
        None, description="Better Auth's origin, where users sign in; absent without it."
    )
    bearer_methods_supported: list[str] = ["header"]
    resource_name: str = "Todo API"
    resource_documentation: str


def base_url(request: Request) -> str:
    """`PUBLIC_BASE_URL`, else the URL this request reached us at."""
    return runtime_of(request).public_base_url or str(request.base_url).rstrip("/")


def resource_metadata_url(request: Request) -> str:
    return base_url(request) + METADATA_PATH + RESOURCE_PATH


async def resource_metadata(request: Request) -> ResourceMetadata:
    base = base_url(request)
    issuer = runtime_of(request).settings.better_auth_origin
    return ResourceMetadata(
        resource=base + RESOURCE_PATH,
        authorization_servers=[issuer] if issuer else None,
        resource_documentation=base + "/docs",
    )


for path in (METADATA_PATH + RESOURCE_PATH, METADATA_PATH):
    router.add_api_route(
        path,
        resource_metadata,
        methods=["GET"],
        response_model=ResourceMetadata,
        response_model_exclude_none=True,
        summary="How to get a token for `/mcp` (RFC 9728 protected-resource metadata)",
        responses={200: documented_response("The metadata of the `/mcp` resource")},
        name="resource_metadata" if path == METADATA_PATH else "mcp_resource_metadata",
    )
