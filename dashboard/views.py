from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from streams.selectors import sources_for_overview


@login_required
def overview(request):
    return render(request, "dashboard/overview.html", {"sources": sources_for_overview()})
