"""A bare Celery app for the real-worker actuator test.

The actuator only speaks Celery's remote-control protocol, which is the same for any
worker; a bare app starts in a second or two where the project's app imports every
system (Prophet included) first, which on a busy CI runner took over a minute.
"""

import os

from celery import Celery

app = Celery("scaling-actuator-test", broker=os.environ["CELERY_BROKER_URL"])
app.conf.worker_hijack_root_logger = False
