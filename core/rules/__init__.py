"""Pure decisions and transformations over data (no I/O): tag order, policy, bump decision, target discovery,
byte-preserving YAML edits, review rules, promotion gates, hook routing."""

__all__ = [
    "azdo_routing",
    "bump_decision",
    "fleet_file",
    "flux_receiver_rules",
    "helm_modes",
    "policy",
    "promotion",
    "promotion_gate",
    "repo_yaml",
    "review_rules",
    "source_hosts",
    "tag_order",
    "targets",
    "yaml_edit",
]
