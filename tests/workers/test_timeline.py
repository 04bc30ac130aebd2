"""workers.timeline.InvocationFilter: one reading of the timeline's filter for the page, the API
and the socket."""

import pytest
from django.http import QueryDict

from streams.feed import FilterError
from workers.timeline import InvocationFilter


def test_it_reads_a_repeated_parameter_alike_from_a_url_and_a_subscribe_message():
    # The page and /api/invocations read ?trigger=1&trigger=2 with QueryDict.get (the last one);
    # the page's script sends every value of a repeated parameter, as a list.
    url = InvocationFilter.from_params(QueryDict("trigger=1&trigger=2&outcome=success&outcome=timeout"))
    message = InvocationFilter.from_params({"trigger": ["1", "2"], "outcome": ["success", "timeout"]})

    assert url == message == InvocationFilter(trigger_id=2, outcome="timeout")


def test_it_reads_an_empty_list_as_no_filter_and_refuses_a_list_of_nonsense():
    assert InvocationFilter.from_params({"trigger": [], "outcome": []}) == InvocationFilter()
    with pytest.raises(FilterError, match="trigger must be a whole number"):
        InvocationFilter.from_params({"trigger": ["1", "x"]})
