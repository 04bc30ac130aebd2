"""Read-side queries for pages and APIs."""

from django.db.models import Prefetch

from streams.models import Gap, Shard, StreamSource


def sources_for_overview():
    """Every source with its streams, shards and gaps, in a fixed number of queries."""
    return StreamSource.objects.prefetch_related(
        Prefetch("streams__shards", queryset=Shard.objects.order_by("discovered_at", "id")),
        Prefetch("gaps", queryset=Gap.objects.order_by("-detected_at")),
    ).order_by("table_name")
