"""The live feed's websocket. Workers send one `records.batch` message per saved batch to each
source's group; this consumer passes on the rows that match the browser's filter.

Protocol (also in docs/API.md):
  browser -> {"type": "subscribe", "filter": {<feed query parameters>}}
  server  -> {"type": "subscribed", "filter": {...}}
           | {"type": "records", "records": [<feed row>...], "last_id": N}   (only when rows match)
           | {"type": "error", "message": "..."}

Permission is checked once, at connect (_refused), not on every push: a socket lives until it
closes, so a user whose role is taken away, or who is deactivated, keeps receiving on a socket
already open; logging out leaves the page, which closes it. Re-checking per push would mean
reading the user and their permissions afresh for every batch on every socket (scope["user"]
and its permission cache are the connect's), which costs more than the window it closes.
"""

from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from audit.chain import audit_record
from dashboard.http import UNMASK_PERMISSION, query_audited, unmask_asked
from streams.feed import FeedFilter, FilterError
from streams.models import ChangeRecord, StreamSource
from streams.records import masking_load, records_filtered, records_matching
from workers.models import Trigger
from workers.timeline import INVOCATIONS_GROUP, InvocationFilter, invocation_rows_masked

# Close codes in the application range: 4401 mirrors HTTP 401, 4403 mirrors HTTP 403 (logged
# in, without the permission the socket needs: dashboard/roles.py).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def _refused(consumer, *, perm: str) -> bool:
    """Closes `consumer`'s socket, and says so, unless its user is logged in and holds `perm`."""
    user = consumer.scope["user"]
    if not user.is_authenticated:
        await consumer.close(code=CLOSE_UNAUTHENTICATED)
        return True
    if not await user.ahas_perm(perm):
        await consumer.close(code=CLOSE_FORBIDDEN)
        return True
    return False


@database_sync_to_async
def _source_groups(source_ids: tuple[int, ...]) -> list[str]:
    sources = StreamSource.objects.all()
    if source_ids:
        sources = sources.filter(pk__in=source_ids)
    return [StreamSource(pk=pk).group_name for pk in sources.values_list("pk", flat=True)]


@database_sync_to_async
def _matching_ids(flt: FeedFilter, ids: list[int], *, unmasked: bool) -> set[int]:
    masking = masking_load(unmasked=unmasked)
    records = records_filtered(flt=flt, masking=masking, queryset=ChangeRecord.objects.filter(pk__in=ids))
    if not flt.pattern and not masking.active:
        return set(records.values_list("pk", flat=True))
    shown = records_matching(flt=flt, masking=masking, records=records.select_related("source", "shard__stream"))
    return {record.pk for record in shown}


async def _unmask_granted(consumer, *, surface: str, params: dict) -> bool:
    """Whether the socket's user may see item data unmasked; audited when granted, as every
    unmasked view is (dashboard.http.masking_for)."""
    user = consumer.scope["user"]
    if not await user.ahas_perm(UNMASK_PERMISSION):
        return False
    await database_sync_to_async(audit_record)(
        actor=user, action="streams.changerecord.unmask", request=_scope_request(consumer.scope),
        details={"surface": surface, "path": consumer.scope.get("path", ""), "query": query_audited(params=params)})
    return True


def _scope_request(scope) -> SimpleNamespace:
    """What audit.chain.request_address reads of a request (META's REMOTE_ADDR and
    X-Forwarded-For), from a socket's ASGI scope."""
    headers = dict(scope.get("headers") or [])
    client = scope.get("client") or ("", 0)
    return SimpleNamespace(META={
        "REMOTE_ADDR": client[0] or "",
        "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode("latin-1"),
    })


class FeedConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        if await _refused(self, perm="streams.view_changerecord"):
            return
        self.filter = FeedFilter()
        # Masked until a subscribe asks for unmasked=1 and the user may (streams.masking).
        self.unmasked = False
        self.joined: list[str] = []
        await self._join(await _source_groups(()))
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _join(self, groups: list[str]) -> None:
        for group in set(self.joined) - set(groups):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(groups) - set(self.joined):
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or content.get("type") != "subscribe":
            await self.send_json({"type": "error", "message": "Send {\"type\": \"subscribe\", \"filter\": {...}}."})
            return
        params = content.get("filter") or {}
        try:
            self.filter = FeedFilter.from_params(params)
        except FilterError as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        asked = isinstance(params, dict) and unmask_asked(params)
        if asked and not await _unmask_granted(self, surface="feed_socket", params=params):
            await self.send_json({"type": "error", "message": "Seeing item data unmasked needs the Admin role; records stay masked."})
            asked = False
        self.unmasked = asked
        # Joining only the groups a filter can match keeps unwanted batches off this socket.
        await self._join(await _source_groups(self.filter.sources))
        await self.send_json({"type": "subscribed", "filter": self.filter.as_json()})

    async def feed_close(self, event):
        """Ends this socket from the server side. The page reconnects with backoff and fetches
        what it missed, so this is also how to drop browsers after, say, a deploy."""
        await self.close(code=event.get("code", 1012))

    async def records_batch(self, event):
        # The masked rows when the batch's source has masking rules: filters below then test
        # what this viewer is shown, never the values masking hides.
        shown = event["records"] if self.unmasked else event.get("records_masked", event["records"])
        rows = [row for row in shown if self.filter.matches_row(row)]
        if rows and self.filter.needs_database:
            keep = await _matching_ids(self.filter, [row["id"] for row in rows], unmasked=self.unmasked)
            rows = [row for row in rows if row["id"] in keep]
        if rows:
            await self.send_json({"type": "records", "records": rows, "last_id": event["last_id"]})


@database_sync_to_async
def _trigger_names(trigger_ids: set[int]) -> dict[int, str]:
    return dict(Trigger.objects.filter(pk__in=trigger_ids).values_list("pk", "name"))


@database_sync_to_async
def _rows_masked(rows: list[dict]) -> list[dict]:
    return invocation_rows_masked(rows=rows, masking=masking_load())


class InvocationConsumer(AsyncJsonWebsocketConsumer):
    """The live invocation timeline. The trigger runner sends one `invocations.new` message per
    recorded invocation to INVOCATIONS_GROUP; this passes on those matching the page's filter.

    Protocol (also in docs/API.md):
      browser -> {"type": "subscribe", "trigger": <id or null>, "outcome": "<outcome>" or ""}
      server  -> {"type": "subscribed", "trigger": ..., "outcome": ...}
               | {"type": "invocations", "invocations": [<invocation row + "trigger_name">...]}
               | {"type": "error", "message": "..."}
    Before a subscribe every invocation is sent.
    """

    async def connect(self):
        if await _refused(self, perm="workers.view_invocation"):
            return
        self.filter = InvocationFilter()
        self.unmasked = False
        # Rows name their trigger; names are looked up once per socket (a trigger added after
        # the page loaded is not in the page's list).
        self.trigger_names: dict[int, str] = {}
        await self.channel_layer.group_add(INVOCATIONS_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(INVOCATIONS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or content.get("type") != "subscribe":
            await self.send_json({"type": "error", "message": "Send {\"type\": \"subscribe\", \"trigger\": id, \"outcome\": \"...\"}."})
            return
        try:
            self.filter = InvocationFilter.from_params(content)
        except FilterError as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        asked = unmask_asked(content)
        if asked and not await _unmask_granted(self, surface="invocations_socket", params=content):
            await self.send_json({"type": "error", "message": "Seeing item data unmasked needs the Admin role; error messages stay withheld."})
            asked = False
        self.unmasked = asked
        await self.send_json({"type": "subscribed", **self.filter.as_json()})

    async def invocations_new(self, event):
        rows = [row for row in event["invocations"] if self.filter.matches_row(row)]
        if not rows:
            return
        unknown = {row["trigger_id"] for row in rows} - set(self.trigger_names)
        if unknown:
            self.trigger_names.update(await _trigger_names(unknown))
        rows = [{**row, "trigger_name": self.trigger_names.get(row["trigger_id"], "")} for row in rows]
        if not self.unmasked:
            rows = await _rows_masked(rows)
        await self.send_json({"type": "invocations", "invocations": rows})
