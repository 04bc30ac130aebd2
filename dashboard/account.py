"""The user's own settings: their API tokens (dashboard/tokens.py). Server-rendered forms
under Django's CSRF protection; a token is made by a logged-in user, never by a token."""

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.http import page_permission_required
from dashboard.models import ApiToken
from dashboard.tokens import EXPIRY_DAYS_DEFAULT, EXPIRY_DAYS_MAX, token_create, token_revoke

TOKEN_PERMISSION = "dashboard.add_apitoken"


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. the script that uses it.")
    expires_in_days = forms.IntegerField(min_value=1, max_value=EXPIRY_DAYS_MAX, initial=EXPIRY_DAYS_DEFAULT,
                                         label="Expires in (days)")


@never_cache
@page_permission_required(TOKEN_PERMISSION)
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """GET: the user's tokens and a form for a new one. POST: make one and show its text, on
    this answer only (never_cache: no browser or proxy keeps it)."""
    made = None
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        made = token_create(user=request.user, name=form.cleaned_data["name"],
                            expires_in_days=form.cleaned_data["expires_in_days"], now=timezone.now(), request=request)
        form = ApiTokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "dashboard/api_tokens.html", {
        "form": form, "made": made, "tokens": tokens, "now": timezone.now(),
    }, status=400 if request.method == "POST" and made is None else 200)


@page_permission_required(TOKEN_PERMISSION)
@require_POST
def api_token_revoke(request, pk: int):
    """Revoke one of the user's own tokens. Another user's, or an unknown one, is 404: whether
    it exists is not theirs to learn."""
    token = ApiToken.objects.filter(pk=pk, user=request.user).first()
    if token is None:
        raise Http404("No such token of yours.")
    if token_revoke(token_id=token.pk, user=request.user, now=timezone.now(), request=request):
        messages.success(request, f"Token {token.name} revoked: it no longer works.")
    return redirect("dashboard:api_tokens")
