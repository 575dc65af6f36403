"""Timeline sources: each turns a vendor's wire format into typed timeline events on the right incidents.

Sources over the daemon's HTTP side (routes built by :func:`chatops.sources.routes.http_sources` and registered
on :class:`~chatops.http.HttpServer` by the composition root): the Kubernetes audit webhook
(:mod:`~chatops.sources.k8s_audit`) and PagerDuty webhooks v3 (:mod:`~chatops.sources.pagerduty_webhook`). Every
source hands its events to the :class:`~chatops.timeline.sink.TimelineSink`. Not over HTTP: war-room Slack message
events (:mod:`~chatops.sources.slack_events`, the Socket Mode transport's ``on_event``) and the Deployment watch
(:mod:`~chatops.sources.k8s_deploys`, a background task; rollout logic in :mod:`~chatops.sources.k8s_rollout`).
Importing this package imports
nothing else (the policy loader imports :mod:`chatops.sources.audit_filter`).
"""
