"""`/api/tags`: the caller's tags, with how many of their tasks carry each."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict

from todo_api.auth.dependencies import CurrentUser
from todo_api.errors import TagNotFound, error_body, error_response, error_responses
from todo_api.openapi import documented_response
from todo_api.runtime import DatabaseDep
from todo_api.sync.announce import AnnounceChange
from todo_api.tasks import tags
from todo_api.tasks.schemas import TagName
from todo_api.text import InputModel

router = APIRouter(prefix="/api/tags", tags=["tags"], responses=error_responses(401, 503))
NO_SUCH_TAG: dict[int | str, dict[str, Any]] = {
    404: error_response("No task of yours carries this tag", error_body(TagNotFound.detail))
}
TAG_PATH = "/{name}"


class TagRead(BaseModel):
    """A tag as its user spells it, and how many of their tasks carry it."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [{"name": "work", "count": 3}]}
    )

    name: str
    count: int


class TagRename(InputModel):
    """The tag's new name; an existing tag of that name (in any case) absorbs it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Work"}]})

    name: TagName


# The same rules as a tag in a body: an invalid one is a 400 naming `name`.
TagInPath = Annotated[TagName, Path(description="The tag, in any case.")]


@router.get(
    "",
    response_model=list[TagRead],
    summary="List your tags",
    responses={200: documented_response("Your tags that some task carries, by name")},
)
async def list_tags(user: CurrentUser, db: DatabaseDep) -> list[tags.TagCount]:
    return await tags.list_tags(db, user.id)


@router.patch(
    TAG_PATH,
    response_model=TagRead,
    summary="Rename a tag on all your tasks (or merge it into another)",
    responses={
        200: documented_response("The tag under its new name"),
        **NO_SUCH_TAG,
        **error_responses(400, 408, 413, 415),
    },
    dependencies=[AnnounceChange],
)
async def rename_tag(
    name: TagInPath,
    body: TagRename,
    user: CurrentUser,
    db: DatabaseDep,
) -> tags.TagCount:
    return await tags.rename_tag(db, user.id, name, body.name)


@router.delete(
    TAG_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a tag from all your tasks",
    responses={204: documented_response("Removed; no body"), **NO_SUCH_TAG, **error_responses(400)},
    dependencies=[AnnounceChange],
)
async def delete_tag(
    name: TagInPath,
    user: CurrentUser,
    db: DatabaseDep,
) -> None:
    await tags.delete_tag(db, user.id, name)
