"""The change feed's answers: one schema for the feed's page and the live events' data."""

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from todo_api.tasks.schemas import TaskRead


class TaskUpserted(BaseModel):
    """The task as it is now: created, or changed in any way since the cursor."""

    type: Literal["upsert"] = "upsert"
    task: TaskRead


class TaskDeleted(BaseModel):
    """The task is gone; forget it."""

    type: Literal["delete"] = "delete"
    id: uuid.UUID


ChangeRead = Annotated[TaskUpserted | TaskDeleted, Field(discriminator="type")]
change_adapter: TypeAdapter[TaskUpserted | TaskDeleted] = TypeAdapter(ChangeRead)


class ChangesPage(BaseModel):
    """Changes after `since`, oldest first, and the cursor to ask from next."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changes": [
                        {
                            "type": "upsert",
                            "task": TaskRead.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                        },
                        {"type": "delete", "id": "7c1e0a57-3b7e-4d4f-8d61-0a4f3f9e2b10"},
                    ],
                    "cursor": "1042",
                    "has_more": False,
                }
            ]
        }
    )

    changes: list[ChangeRead]
    cursor: str = Field(description="Pass as `since` next time (and as `Last-Event-ID`).")
    has_more: bool = Field(description="More changes are waiting: ask again at once.")
