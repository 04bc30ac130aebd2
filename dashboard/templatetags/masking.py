"""`value|is_mask`: whether a value the server renders (a key part's value) is a masking
stand-in (streams.codec.is_mask), so that it can carry the "masked" class the scripts give the
values they draw."""

from django import template

from streams.codec import is_mask as codec_is_mask

register = template.Library()


@register.filter
def is_mask(value) -> bool:
    return codec_is_mask(value)
