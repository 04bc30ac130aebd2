"""/healthz and /readyz: no login, no item data, nothing cached. Routed at the site root
(config/urls.py), where load balancers and Kubernetes look. The checks are dashboard.health's.

They pass the origins middleware (config/origins.py) as any request without Fetch Metadata
headers does, which is what curl and probes send; like every request, their Host must be one
ALLOWED_HOSTS names, or Django answers 400 (a Kubernetes httpGet probe sends the pod's IP
unless its httpHeaders set Host).
"""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from dashboard.health import readiness_check


@never_cache
@require_safe
def healthz(request):
    """200 while this process serves requests; it checks nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    """200 when every readiness_check passes, else 503; the body is readiness_check's."""
    result = readiness_check()
    return JsonResponse(result, status=200 if result["ready"] else 503)
