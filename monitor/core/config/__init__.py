"""The configuration: strict pydantic models (one module per section) and the loader that builds them from YAML.

    base       Strict, Duration, names, maintenance windows
    targets    Target
    checks     CheckBase and one model per check kind; the Check union
    matchers   expect.json values: equality or a matcher (one_of, exists, regex)
    alerting   sinks, flapping, rule overrides, the alerts section
    root       Defaults, HttpSettings, Config, cross-section rules
    loader     YAML, ${VAR} expansion, PAM_MONITOR_* overrides, one line per problem
"""

from __future__ import annotations

from monitor.core.config.alerting import (
    SINK_KINDS,
    AlertmanagerSink,
    Alerts,
    Flapping,
    PagerDutySink,
    RuleOverride,
    Sink,
    SinkBase,
    SlackSink,
    WebhookSink,
)
from monitor.core.config.base import (
    ALL_AUDIO_FORMATS,
    ALL_FORGED,
    NAME_PATTERN,
    AlertName,
    AudioFormat,
    Duration,
    ForgedToken,
    HttpMethod,
    Maintenance,
    Method,
    Strict,
    require_timeout_below_interval,
)
from monitor.core.config.checks import (
    CHECK_KINDS,
    CHECK_MODELS,
    AuthContractCheck,
    AuthExpect,
    Check,
    CheckBase,
    DbCheck,
    HttpCheck,
    HttpExpect,
    PostgrestCheck,
    RequestSpec,
    Synthesize,
    VoiceCheck,
    path_placeholders,
    split_table,
)
from monitor.core.config.loader import ENV_PREFIX, apply_shard, load_config, parse_shard
from monitor.core.config.matchers import MATCHER_KEYS, JsonMatcher, as_matcher
from monitor.core.config.root import Config, Defaults, HttpSettings, cross_check, dependencies, parse_listen
from monitor.core.config.targets import Target

__all__ = [
    "ALL_AUDIO_FORMATS",
    "ALL_FORGED",
    "CHECK_KINDS",
    "CHECK_MODELS",
    "ENV_PREFIX",
    "MATCHER_KEYS",
    "NAME_PATTERN",
    "SINK_KINDS",
    "AlertName",
    "AlertmanagerSink",
    "Alerts",
    "AudioFormat",
    "AuthContractCheck",
    "AuthExpect",
    "Check",
    "CheckBase",
    "Config",
    "DbCheck",
    "Defaults",
    "Duration",
    "Flapping",
    "ForgedToken",
    "HttpCheck",
    "HttpExpect",
    "HttpMethod",
    "HttpSettings",
    "JsonMatcher",
    "Maintenance",
    "Method",
    "PagerDutySink",
    "PostgrestCheck",
    "RequestSpec",
    "RuleOverride",
    "Sink",
    "SinkBase",
    "SlackSink",
    "Strict",
    "Synthesize",
    "Target",
    "VoiceCheck",
    "WebhookSink",
    "apply_shard",
    "as_matcher",
    "cross_check",
    "dependencies",
    "load_config",
    "parse_listen",
    "parse_shard",
    "path_placeholders",
    "require_timeout_below_interval",
    "split_table",
]
