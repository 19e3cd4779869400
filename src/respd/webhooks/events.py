"""The webhook events a response's end announces, as the API's ``webhooks:`` define them.

``{"id": "evt_…", "object": "event", "type": "response.completed", "created_at": …, "data": {"id": "resp_…"}}``,
one delivery per configured endpoint that wants the event and the response's API key. The deliveries are
added in the transaction that writes the terminal event (:func:`deliveries_op` goes into its batch): no
crash can end a response without them, nor announce one that did not end.
"""

from __future__ import annotations

import time

from respd.config import OpsSettings
from respd.ids import new_id
from respd.store.batch import Batch
from respd.store.signals import WEBHOOKS
from respd.store.webhooks import AddDeliveries, NewDelivery

EVENT_TYPES = {"completed": "response.completed", "failed": "response.failed",
               "cancelled": "response.cancelled", "incomplete": "response.incomplete"}  # fmt: skip


def announce(batch: Batch, ops: OpsSettings, tenant: str, response_id: str, status: str) -> None:
    """Add to ``batch`` (the one with the terminal event) the deliveries announcing that ``response_id`` ended
    with ``status``, and the notice that wakes the delivery workers."""
    op = deliveries_op(ops, tenant, response_id, status)
    if op is not None:
        batch.ops.append(op)
        batch.notify(WEBHOOKS)


def deliveries_op(ops: OpsSettings, tenant: str, response_id: str, status: str) -> AddDeliveries | None:
    """The deliveries announcing that ``response_id`` ended with ``status``, or None if no endpoint wants it."""
    event_type = EVENT_TYPES.get(status)
    if event_type is None or not ops.webhooks:
        return None
    endpoints = [e for e in ops.webhooks if e.wants(tenant, event_type)]
    if not endpoints:
        return None
    event = {"id": new_id("evt"), "object": "event", "type": event_type, "created_at": int(time.time()),
             "data": {"id": response_id}}  # fmt: skip
    return AddDeliveries([NewDelivery(id=new_id("wh"), event=event, response_id=response_id, tenant=tenant,
                                      endpoint=e.name, url=e.url) for e in endpoints])  # fmt: skip
