"""Notifications through a durable outbox: enqueue in the caller's transaction, deliver after.

models (OutboxMessage), templates (Vietnamese mail bodies), outbox (notify_incident,
notify_users), channels (SMTP, webhook, local command), dispatcher (dispatch_pending, claims,
retries), jobs (catch-up dispatch, cleanup), wiring (the per-app dispatcher thread).
"""
