"""`AnnounceChange`: the dependency every write route carries, so that live event streams
hear of the write (SPEC §11).

It announces after the response was sent (`scope="request"`), so after the request's database
work committed, and only if the route raised nothing: a stream woken by it reads the feed and
finds the change there. The announcement does not wait for anything (`EventHub.announce`).

(Its own module, not `events.py`: it needs the bearer dependency, which needs `runtime.py`,
which holds the hub.)
"""

from collections.abc import AsyncIterator

from fastapi import Depends, Request

from todo_api.auth.dependencies import CurrentUser
from todo_api.runtime import runtime_of


async def _announce_after_commit(request: Request, user: CurrentUser) -> AsyncIterator[None]:
    yield  # an error in the route is raised here, and nothing is announced
    runtime_of(request).events.announce(user.id)


AnnounceChange = Depends(_announce_after_commit, scope="request")
