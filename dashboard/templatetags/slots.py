"""Marking the parts of a row partial that a page's script fills.

Each row's markup is written once, in a partial (templates/dashboard/_*.html). The server
includes it for the rows it renders, and the page includes it once more inside a <template>
element, with `as_template=True`, for its script to clone and fill (static/js/lib/dom.js,
slotsFill). There, and only there, `{% slot "name" %}` marks an element as the slot "name";
rows the server renders carry no marks, so they are the markup a page without script shows.
"""

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def slot(context, name: str) -> str:
    """` data-slot="<name>"` inside a <template> (the context's `as_template` is true), else ""."""
    return format_html(' data-slot="{}"', name) if context.get("as_template") else ""
