"""A handler module whose import takes longer than a test allows for initialisation."""

import time

time.sleep(3)


def handler(event, context):
    return None
