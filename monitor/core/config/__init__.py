"""The configuration: strict pydantic models (one module per section) and the loader that builds them from YAML.

    base       Strict, Duration, names, maintenance windows
    targets    Target
    checks     CheckBase and one model per check kind; the Check union
    matchers   expect.json values: equality or a matcher (one_of, exists, regex)
    alerting   sinks, flapping, rule overrides, the alerts section
    identities Identity (mint or sign_in), who the signed-in checks act as
    journeys   the journey and tenant_isolation kinds, {placeholder} templates
    kinds      the Check union of every kind
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
    MIGRATION_FILE,
    AuthContractCheck,
    AuthExpect,
    CheckBase,
    Cors,
    DbCheck,
    HttpCheck,
    HttpExpect,
    Migrations,
    PostgrestCheck,
    RefusalShape,
    RequestSpec,
    Synthesize,
    VoiceCheck,
    path_placeholders,
    split_table,
)
from monitor.core.config.exposition import DETAIL_FAMILIES, DetailFamily, MetricsSettings
from monitor.core.config.heartbeat import HeartbeatCheck
from monitor.core.config.identities import Identity, Mint, SignIn
from monitor.core.config.journeys import (
    RUN_ID,
    SIGN_IN_STEP,
    SUB,
    JourneyCheck,
    JourneyStep,
    TenantIsolationCheck,
    fill_json,
    fill_template,
    template_names,
)
from monitor.core.config.kinds import CHECK_KINDS, CHECK_MODELS, Check, identity_refs
from monitor.core.config.loader import ENV_PREFIX, load_config
from monitor.core.config.matchers import MATCHER_KEYS, JsonMatcher, as_matcher
from monitor.core.config.root import Config, Defaults, HttpSettings, cross_check, dependencies, parse_listen
from monitor.core.config.shard import DEFAULT_REPLICAS, apply_shard, parse_shard, shard_from_ordinal, shard_of
from monitor.core.config.targets import Target

__all__ = [
    "ALL_AUDIO_FORMATS",
    "ALL_FORGED",
    "CHECK_KINDS",
    "CHECK_MODELS",
    "DEFAULT_REPLICAS",
    "DETAIL_FAMILIES",
    "ENV_PREFIX",
    "MATCHER_KEYS",
    "MIGRATION_FILE",
    "NAME_PATTERN",
    "RUN_ID",
    "SIGN_IN_STEP",
    "SINK_KINDS",
    "SUB",
    "AlertName",
    "AlertmanagerSink",
    "Alerts",
    "AudioFormat",
    "AuthContractCheck",
    "AuthExpect",
    "Check",
    "CheckBase",
    "Config",
    "Cors",
    "DbCheck",
    "Defaults",
    "DetailFamily",
    "Duration",
    "Flapping",
    "ForgedToken",
    "HeartbeatCheck",
    "HttpCheck",
    "HttpExpect",
    "HttpMethod",
    "HttpSettings",
    "Identity",
    "JourneyCheck",
    "JourneyStep",
    "JsonMatcher",
    "Maintenance",
    "Method",
    "MetricsSettings",
    "Migrations",
    "Mint",
    "PagerDutySink",
    "PostgrestCheck",
    "RefusalShape",
    "RequestSpec",
    "RuleOverride",
    "SignIn",
    "Sink",
    "SinkBase",
    "SlackSink",
    "Strict",
    "Synthesize",
    "Target",
    "TenantIsolationCheck",
    "VoiceCheck",
    "WebhookSink",
    "apply_shard",
    "as_matcher",
    "cross_check",
    "dependencies",
    "fill_json",
    "fill_template",
    "identity_refs",
    "load_config",
    "parse_listen",
    "parse_shard",
    "path_placeholders",
    "require_timeout_below_interval",
    "shard_from_ordinal",
    "shard_of",
    "split_table",
    "template_names",
]
