"""Webhooks for finished responses: the events a response's end adds (:mod:`.events`), and the delivery
worker that signs and sends them, with retries (:mod:`.sender`)."""
