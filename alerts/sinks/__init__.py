"""Where notifications go: the `SinkSpec` protocol and the POST every sink shares (`spec`), one module per sink
(Alertmanager, PagerDuty, Slack, webhook), the registry from config `kind` to spec, the outbox worker draining one
lane per sink URL (`delivery`), and `pam-monitor notify --test` (`notify`).
"""
