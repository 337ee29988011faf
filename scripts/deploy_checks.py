#!/usr/bin/env python3
"""The checks of scripts/check-deploy that are easier in Python than in bash.

    deploy_checks.py names FILE...
        every projectionist_* name used in FILEs is a metric the daemon exports
    deploy_checks.py dashboard DASHBOARD.json RULES_OUT.yaml
        the dashboard's structure; its expressions, with Grafana's variables
        replaced, written as recording rules for `promtool check rules`
    deploy_checks.py rules-wrapped ALERTS.yaml PROMETHEUSRULE.yaml
        the PrometheusRule holds exactly the groups of the rule file
    deploy_checks.py manifests RENDERED.yaml OUT_DIR
        splits `kubectl kustomize` output: built-in kinds to OUT_DIR/builtin.yaml
        (for kubernetes-validate); checks the custom kinds (no schema ships for
        them) and how the objects fit together; writes what `projectionist
        check` needs to see the pod's view: OUT_DIR/etc/config.toml,
        OUT_DIR/etc/projections/*.toml and OUT_DIR/env (KEY=VALUE lines)

Every problem is printed; the exit status is 1 when there is any.
Needs PyYAML (the venv scripts/check-deploy makes has it).
"""

import base64
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

# What the daemon exports (src/metrics.rs); a histogram's series are these
# names with _bucket, _sum and _count. The Rust side tests the same files
# against the registry itself; this list gives the answer without a build.
COUNTERS = {
    "projectionist_events_consumed_total",
    "projectionist_events_projected_total",
    "projectionist_events_skipped_total",
    "projectionist_events_failed_total",
    "projectionist_events_dead_lettered_total",
    "projectionist_dead_letters_truncated_total",
    "projectionist_cache_writes_total",
    "projectionist_retries_total",
    "projectionist_rebalances_total",
    "projectionist_records_dropped_total",
    "projectionist_partition_gaps_total",
    "projectionist_partition_replays_total",
    "projectionist_partition_resets_total",
}
HISTOGRAMS = {
    "projectionist_batch_duration_seconds",
    "projectionist_batch_size_events",
    "projectionist_projection_freshness_seconds",
    "projectionist_cache_operation_duration_seconds",
}
GAUGES = {
    "projectionist_consumer_lag_messages",
    "projectionist_consumer_lag_seconds",
    "projectionist_projection_state",
    "projectionist_cache_up",
    "projectionist_ready",
    "projectionist_consumer_assigned",
    "projectionist_heartbeat_timestamp_seconds",
    "projectionist_build_info",
}
SERIES_NAMES = (
    COUNTERS
    | GAUGES
    | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

# The consumed topics' partition count: more replicas than this sit idle.
PARTITIONS = 4
# Kinds that have no schema in kubernetes-validate: checked here instead.
CUSTOM_API_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
ENV_PREFIX = "PROJECTIONIST__"

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print(f"  problem: {text}")


def finish() -> int:
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    return 0


# ---------------------------------------------------------------- names


def names(files: list[str]) -> int:
    used_anywhere = 0
    for file in files:
        used = set(re.findall(r"\bprojectionist_[a-z0-9_]+\b", Path(file).read_text()))
        used_anywhere += len(used)
        unknown = sorted(used - SERIES_NAMES)
        for name in unknown:
            problem(f"{file}: {name} is not a metric the daemon exports")
        if not unknown:
            print(f"  {file}: {len(used)} metric names, all exported")
    if used_anywhere == 0:
        problem("no projectionist_* metric name found at all")
    return finish()


# ---------------------------------------------------------------- dashboard

# Grafana's variables, replaced by values PromQL can parse.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$namespace": "default",
    "$pod": ".*",
}


def dashboard(path: str, rules_out: str) -> int:
    try:
        board = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        problem(f"{path} is not valid JSON: {error}")
        return finish()

    if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 36:
        problem(f"{path}: schemaVersion {board.get('schemaVersion')!r} is missing or older than 36")
    variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
    source = variables.get("datasource")
    if not source or source.get("type") != "datasource" or source.get("query") != "prometheus":
        problem(f"{path}: no `datasource` variable of type datasource querying prometheus")
    for name in ("namespace", "pod"):
        if name not in variables:
            problem(f"{path}: no `{name}` variable")

    panels = []
    for panel in board.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # the panels of collapsed rows
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        problem(f"{path}: panel ids are not unique")

    rules = []
    graphs = 0
    for panel in panels:
        title = panel.get("title", f"panel {panel.get('id')}")
        if panel.get("type") == "row":
            continue
        graphs += 1
        datasource = panel.get("datasource", {})
        if datasource.get("uid") != "${datasource}":
            problem(f"{path}: panel {title!r} does not use the ${{datasource}} variable")
        targets = panel.get("targets") or []
        if not targets:
            problem(f"{path}: panel {title!r} has no targets")
        for target in targets:
            expr = (target.get("expr") or "").strip()
            if not expr:
                problem(f"{path}: panel {title!r} target {target.get('refId')} has no expression")
                continue
            if "projectionist_" not in expr:
                problem(f"{path}: panel {title!r} target {target.get('refId')} uses no projectionist metric")
            for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
            if "$" in expr:
                problem(f"{path}: panel {title!r} uses an unknown variable: {expr}")
            rules.append({"record": f"dashboard:panel_{panel.get('id')}:{target.get('refId')}", "expr": expr})
    if graphs == 0:
        problem(f"{path}: no panels")
    Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"  {path}: {graphs} panels, {len(rules)} queries; queries written to {rules_out}")
    return finish()


# ---------------------------------------------------------------- rules-wrapped


def rules_wrapped(alerts_path: str, wrapped_path: str) -> int:
    alerts = yaml.safe_load(Path(alerts_path).read_text())
    rules = [r for g in alerts.get("groups", []) for r in g.get("rules", [])]
    if not any("alert" in r for r in rules):
        problem(f"{alerts_path} has no alerts")
    for rule in rules:
        name = rule.get("alert") or rule.get("record")
        if "alert" not in rule:
            continue
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problem(f"{alerts_path}: alert {name} has no severity label (critical, warning or info)")
        for annotation in ("summary", "description"):
            if not rule.get("annotations", {}).get(annotation):
                problem(f"{alerts_path}: alert {name} has no {annotation} annotation")
    wrapped = yaml.safe_load(Path(wrapped_path).read_text())
    if wrapped.get("kind") != "PrometheusRule":
        problem(f"{wrapped_path} is not a PrometheusRule")
    elif wrapped.get("spec") != alerts:
        problem(f"{wrapped_path}: spec differs from {alerts_path}; run scripts/sync-deploy-projections")
    if not problems:
        print(f"  {len(rules)} alerts with severity, summary and description; {wrapped_path} holds exactly them")
    return finish()


# ---------------------------------------------------------------- manifests


def manifests(rendered: str, out_dir: str) -> int:
    documents = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builtin = [d for d in documents if not d.get("apiVersion", "").startswith(CUSTOM_API_GROUPS)]
    custom = [d for d in documents if d.get("apiVersion", "").startswith(CUSTOM_API_GROUPS)]
    (out / "builtin.yaml").write_text(yaml.safe_dump_all(builtin))
    by_kind: dict[str, list[dict]] = {}
    for document in documents:
        by_kind.setdefault(document.get("kind", "?"), []).append(document)
    print(f"  {len(builtin)} built-in objects, {len(custom)} custom: "
          + ", ".join(f"{k} {len(v)}" for k, v in sorted(by_kind.items())))

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problem(f"expected one Deployment, found {len(deployments)}")
        return finish()
    deployment = deployments[0]
    config_maps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}

    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("containers", [])
    container = next((c for c in containers if c.get("name") == "projectionist"), None)
    if container is None:
        problem("the Deployment has no container named projectionist")
        return finish()

    env = pod_environment(container, secrets)
    config_text = write_pod_files(pod, container, config_maps, out)
    if config_text is None:
        return finish()
    try:
        config = tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as error:
        problem(f"the mounted config.toml is not TOML: {error}")
        return finish()
    (out / "env").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))

    def effective(section: str, key: str, default):
        name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        if name in env:
            return env[name]
        return config.get(section, {}).get(key, default)

    check_deployment(deployment, pod, container, effective)
    check_service_and_monitor(by_kind, deployment)
    check_scaled_object(by_kind, deployment, effective)
    check_disruption_budget(by_kind, deployment)
    return finish()


def pod_environment(container: dict, secrets: dict) -> dict[str, str]:
    """The PROJECTIONIST__* and RUST_LOG variables the container will see."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("secretRef", {}).get("name")
        if name is None:
            problem(f"envFrom {source} is not a secretRef")
            continue
        if name not in secrets:
            problem(f"envFrom names Secret {name}, which the overlay does not create")
            continue
        secret = secrets[name]
        for key, value in (secret.get("data") or {}).items():
            env[key] = base64.b64decode(value).decode()
        env.update(secret.get("stringData") or {})
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            env[name] = str(variable["value"])
        elif "fieldRef" in variable.get("valueFrom", {}):
            env[name] = "projectionist-0"  # metadata.name and the like
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = secrets.get(reference["name"])
            if secret is None or reference["key"] not in (secret.get("data") or {}):
                problem(f"env {name} reads {reference}, which the overlay does not create")
            else:
                env[name] = base64.b64decode(secret["data"][reference["key"]]).decode()
        else:
            problem(f"env {name} has a source this check does not know: {variable}")
    for name in env:
        if name.startswith("PROJECTIONIST_") and not name.startswith(ENV_PREFIX):
            problem(f"env {name} is not an override: they start with {ENV_PREFIX}")
    return env


def write_pod_files(pod: dict, container: dict, config_maps: dict, out: Path) -> str | None:
    """Lay out /etc/projectionist as the pod sees it under OUT/etc."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_text = None
    projections = 0
    etc = out / "etc"
    (etc / "projections").mkdir(parents=True, exist_ok=True)
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            problem(f"volumeMount {mount['name']} names no volume")
            continue
        if "configMap" not in volume:
            continue
        config_map = config_maps.get(volume["configMap"]["name"])
        if config_map is None:
            problem(f"volume {mount['name']} names ConfigMap {volume['configMap']['name']}, which the overlay does not create")
            continue
        data = config_map.get("data", {})
        path = mount["mountPath"]
        if path == "/etc/projectionist/config.toml":
            key = mount.get("subPath")
            if key not in data:
                problem(f"{path} mounts key {key!r}, absent from ConfigMap {config_map['metadata']['name']}")
                continue
            config_text = data[key]
            (etc / "config.toml").write_text(config_text)
        elif path == "/etc/projectionist/projections":
            for key, text in data.items():
                (etc / "projections" / key).write_text(text)
                projections += 1
        else:
            problem(f"unexpected ConfigMap mount at {path}")
    if config_text is None:
        problem("nothing is mounted at /etc/projectionist/config.toml")
        return None
    if projections == 0:
        problem("no projection definitions are mounted at /etc/projectionist/projections")
    return config_text


def check_deployment(deployment: dict, pod: dict, container: dict, effective) -> None:
    args = container.get("args", [])
    if args[:3] != ["run", "--config", "/etc/projectionist/config.toml"]:
        problem(f"container args {args} do not start with run --config /etc/projectionist/config.toml")
    if "--log-format" not in args or args[args.index("--log-format") + 1 : args.index("--log-format") + 2] != ["json"]:
        problem("container args lack --log-format json")

    drain = int(effective("pipeline", "drain_timeout_secs", 20))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    # The drain must end, and the process exit, before SIGKILL.
    if not isinstance(grace, int):
        problem(f"terminationGracePeriodSeconds {grace!r} is not a number")
    elif grace < drain + 10:
        problem(f"terminationGracePeriodSeconds {grace} leaves under 10 s after the {drain} s drain")

    listen = str(effective("server", "listen", "0.0.0.0:8080"))
    port = int(listen.rsplit(":", 1)[1])
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    if ports.get("http") != port:
        problem(f"container port http is {ports.get('http')}, the daemon listens on {port}")
    admin_listen = effective("admin", "listen", None)
    if admin_listen is None:
        problem("admin.listen is not set: the admin API (status, pause, resume) is off")
    else:
        admin_port = int(str(admin_listen).rsplit(":", 1)[1])
        if admin_port == port:
            problem(f"the admin API shares port {port} with /metrics")
        if ports.get("admin") != admin_port:
            problem(f"container port admin is {ports.get('admin')}, the admin API listens on {admin_port}")
    if not effective("admin", "token", None):
        problem("no admin token (PROJECTIONIST__ADMIN__TOKEN from the Secret): every pause is refused")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", port):
            problem(f"{probe} is not GET {path} on the http port: {get}")

    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    expectations = [
        (pod_security.get("runAsNonRoot") is True, "runAsNonRoot: true"),
        (pod_security.get("runAsUser") == 10001, "runAsUser: 10001 (the image's user)"),
        (pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccompProfile RuntimeDefault"),
        (security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true"),
        (security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false"),
        ("ALL" in security.get("capabilities", {}).get("drop", []), "capabilities drop ALL"),
    ]
    for holds, what in expectations:
        if not holds:
            problem(f"the pod lacks {what}")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                problem(f"the container has no {kind}.{resource}")

    replicas = deployment["spec"].get("replicas")
    if replicas is not None and replicas > PARTITIONS:
        problem(f"{replicas} replicas for {PARTITIONS} partitions")
    surge = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge")
    if surge not in (0, "0%"):
        problem(f"rollingUpdate.maxSurge is {surge}: a surge pod beyond the partition count never turns ready")


def selects(selector: dict, labels: dict) -> bool:
    """An equality selector (matchLabels) that is not empty and that the labels meet."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_service_and_monitor(by_kind: dict, deployment: dict) -> None:
    services = by_kind.get("Service", [])
    if len(services) != 1:
        problem(f"expected one Service, found {len(services)}")
        return
    service = services[0]
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    selector = service["spec"].get("selector", {})
    if not selects(selector, pod_labels):
        problem(f"the Service selector {selector} does not select the pods {pod_labels}")
    port_names = {p.get("name") for p in service["spec"].get("ports", [])}
    container_ports = {
        p.get("name"): p.get("containerPort")
        for c in deployment["spec"]["template"]["spec"].get("containers", [])
        for p in c.get("ports", [])
    }
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort")
        if target == "admin" or (target is not None and target == container_ports.get("admin")):
            problem(f"the Service exposes the admin API (port {port.get('name')!r})")
    for monitor in by_kind.get("ServiceMonitor", []):
        spec = monitor.get("spec", {})
        unknown = set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel", "podTargetLabels", "targetLabels", "sampleLimit"}
        if unknown:
            problem(f"ServiceMonitor spec has unknown fields {sorted(unknown)}")
        wanted = spec.get("selector", {}).get("matchLabels", {})
        labels = service["metadata"].get("labels", {})
        if not selects(wanted, labels):
            problem(f"the ServiceMonitor selector {wanted} does not match the Service labels {labels}")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problem("the ServiceMonitor has no endpoints")
        for endpoint in endpoints:
            if endpoint.get("port") not in port_names:
                problem(f"ServiceMonitor endpoint port {endpoint.get('port')!r} is not a Service port {sorted(port_names)}")
            if endpoint.get("path", "/metrics") != "/metrics":
                problem(f"ServiceMonitor endpoint path {endpoint.get('path')} is not /metrics")


def check_scaled_object(by_kind: dict, deployment: dict, effective) -> None:
    for scaled in by_kind.get("ScaledObject", []):
        spec = scaled.get("spec", {})
        unknown = set(spec) - {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                               "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
        if unknown:
            problem(f"ScaledObject spec has unknown fields {sorted(unknown)}")
        if spec.get("scaleTargetRef", {}).get("name") != deployment["metadata"]["name"]:
            problem(f"the ScaledObject targets {spec.get('scaleTargetRef')}, not the Deployment")
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not 1 <= low <= high <= PARTITIONS:
            problem(f"ScaledObject min {low} / max {high}: want 1 <= min <= max <= {PARTITIONS} partitions")
        if deployment["spec"].get("replicas") is not None:
            problem("the Deployment sets replicas although a ScaledObject owns the count")
        triggers = spec.get("triggers") or []
        if not triggers:
            problem("the ScaledObject has no triggers")
        for trigger in triggers:
            metadata = trigger.get("metadata", {})
            if trigger.get("type") == "kafka":
                brokers = str(effective("kafka", "brokers", "localhost:9092"))
                group = str(effective("kafka", "group_id", "projectionist"))
                if metadata.get("bootstrapServers") != brokers:
                    problem(f"kafka trigger bootstrapServers {metadata.get('bootstrapServers')!r} != the pods' kafka.brokers {brokers!r}")
                if metadata.get("consumerGroup") != group:
                    problem(f"kafka trigger consumerGroup {metadata.get('consumerGroup')!r} != the pods' kafka.group_id {group!r}")
                if not str(metadata.get("lagThreshold", "")).isdigit():
                    problem(f"kafka trigger lagThreshold {metadata.get('lagThreshold')!r} is not a whole number in a string")
            elif trigger.get("type") == "prometheus":
                if "projectionist_consumer_lag_messages" not in metadata.get("query", ""):
                    problem("prometheus trigger does not query projectionist_consumer_lag_messages")
            else:
                problem(f"ScaledObject trigger type {trigger.get('type')!r} is neither kafka nor prometheus")


def check_disruption_budget(by_kind: dict, deployment: dict) -> None:
    budgets = by_kind.get("PodDisruptionBudget", [])
    if len(budgets) != 1:
        problem(f"expected one PodDisruptionBudget, found {len(budgets)}")
        return
    selector = budgets[0]["spec"].get("selector", {}).get("matchLabels", {})
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    if not selects(selector, pod_labels):
        problem(f"the PodDisruptionBudget selector {selector} does not select the pods")


def main(argv: list[str]) -> int:
    commands = {
        "names": (names, None),
        "dashboard": (dashboard, 2),
        "rules-wrapped": (rules_wrapped, 2),
        "manifests": (manifests, 2),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    function, arity = commands[argv[1]]
    arguments = argv[2:]
    if arity is None:
        return function(arguments)
    if len(arguments) != arity:
        print(__doc__, file=sys.stderr)
        return 2
    return function(*arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
