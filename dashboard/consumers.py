"""The live feed's websocket. Workers send one `records.batch` message per saved batch to each
source's group; this consumer passes on the rows that match the browser's filter.

Protocol (also in docs/API.md):
  browser -> {"type": "subscribe", "filter": {<feed query parameters>}}
  server  -> {"type": "subscribed", "filter": {...}}
           | {"type": "records", "records": [<feed row>...], "last_id": N}   (only when rows match)
           | {"type": "error", "message": "..."}
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from streams.feed import FeedFilter, FilterError
from streams.models import ChangeRecord, StreamSource

# Close codes in the application range: 4401 mirrors HTTP 401.
CLOSE_UNAUTHENTICATED = 4401


@database_sync_to_async
def _source_groups(source_ids: tuple[int, ...]) -> list[str]:
    sources = StreamSource.objects.all()
    if source_ids:
        sources = sources.filter(pk__in=source_ids)
    return [StreamSource(pk=pk).group_name for pk in sources.values_list("pk", flat=True)]


@database_sync_to_async
def _matching_ids(flt: FeedFilter, ids: list[int]) -> set[int]:
    return set(flt.apply(ChangeRecord.objects.filter(pk__in=ids)).values_list("pk", flat=True))


class FeedConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        if not self.scope["user"].is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.filter = FeedFilter()
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
        try:
            self.filter = FeedFilter.from_params(content.get("filter") or {})
        except FilterError as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        # Joining only the groups a filter can match keeps unwanted batches off this socket.
        await self._join(await _source_groups(self.filter.sources))
        await self.send_json({"type": "subscribed", "filter": self.filter.as_json()})

    async def feed_close(self, event):
        """Ends this socket from the server side. The page reconnects with backoff and fetches
        what it missed, so this is also how to drop browsers after, say, a deploy."""
        await self.close(code=event.get("code", 1012))

    async def records_batch(self, event):
        rows = [row for row in event["records"] if self.filter.matches_row(row)]
        if rows and self.filter.needs_database:
            keep = await _matching_ids(self.filter, [row["id"] for row in rows])
            rows = [row for row in rows if row["id"] in keep]
        if rows:
            await self.send_json({"type": "records", "records": rows, "last_id": event["last_id"]})
