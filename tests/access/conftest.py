"""A world for the access tests: one object of every kind a URL names."""

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts.models import AlertState, AlertTransition, Channel, Delivery, Rule
from dashboard.tokens import token_create
from streams.models import ChangeRecord, Gap, Shard, Stream
from streams.sources import source_add
from tests.support.readers import read_until_idle
from workers.models import DeadLetter, Invocation, Outcome, Trigger, TriggerCursor


class World:
    """One object of each kind a URL can name, read from DynamoDB Local where it can be."""

    def pk(self, model_label: str) -> int:
        return self.pks[model_label]


@pytest.fixture
def world(make_table, dynamodb, django_user_model):
    table = make_table(prefix="access")
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "ORDER#1"}, "sk": {"N": "1"}, "status": {"S": "NEW"}})
    assert read_until_idle(source_id=source.pk) == 1
    record = ChangeRecord.objects.get(source=source)
    shard = Shard.objects.get(stream__source=source)
    gap = Gap.objects.create(source=source, shard=shard, after_sequence_number=record.sequence_number, reason="test")
    trigger = Trigger.objects.create(name="mailer", source=source, target=Trigger.Target.PYTHON,
                                     handler="tests.handlers.basic.raising")
    cursor = TriggerCursor.objects.create(trigger=trigger, shard=shard)
    invocation = Invocation.objects.create(
        trigger=trigger, shard=shard, first_sequence_number=record.sequence_number,
        last_sequence_number=record.sequence_number, record_count=1, record_ids=[record.pk],
        outcome=Outcome.FUNCTION_ERROR,
    )
    letter = DeadLetter.objects.create(trigger=trigger, shard=shard, invocation=invocation,
                                       first_sequence_number=record.sequence_number,
                                       last_sequence_number=record.sequence_number, record_ids=[record.pk], reason="test")
    channel = Channel.objects.create(name="mail", kind=Channel.Kind.EMAIL, email_to="oncall@example.com")
    rule = Rule.objects.create(name="errors", condition=Rule.Condition.SOURCE_LAG, source=source)
    state = AlertState.objects.create(rule=rule, subject="s", subject_label="orders", status=AlertState.Status.FIRING,
                                      fired_at=timezone.now(), summary="firing")
    transition = AlertTransition.objects.create(state=state, rule=rule, kind=AlertTransition.Kind.FIRED)
    delivery = Delivery.objects.create(transition=transition, channel=channel)
    user = django_user_model.objects.create_user("someone", password="a-long-password-1")
    token = token_create(user=user, name="someone's script", expires_in_days=30, now=timezone.now()).token
    found = World()
    found.source, found.record, found.trigger, found.cursor, found.state = source, record, trigger, cursor, state
    found.invocation, found.letter, found.token = invocation, letter, token
    found.pks = {
        "streams.streamsource": source.pk,
        "streams.stream": Stream.objects.get(source=source).pk,
        "streams.shard": shard.pk,
        "streams.gap": gap.pk,
        "streams.changerecord": record.pk,
        "workers.trigger": trigger.pk,
        "workers.invocation": invocation.pk,
        "workers.deadletter": letter.pk,
        "alerts.channel": channel.pk,
        "alerts.rule": rule.pk,
        "alerts.alertstate": state.pk,
        "alerts.alerttransition": transition.pk,
        "alerts.delivery": delivery.pk,
        "auth.user": user.pk,
        "auth.group": Group.objects.get(name="Viewer").pk,
        "dashboard.apitoken": token.pk,
    }
    return found
