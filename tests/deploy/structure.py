"""What deploy/ promises, checked on the files themselves (PyYAML; no tool
needed): the rules the issue and the README state, which no linter knows.

Prints the rules that fail (every rule with --verbose) and exits 1 when
any fails. Run from the repository root (tests/deploy/check.sh does).
"""

import re
import sys

import yaml

VERBOSE = "--verbose" in sys.argv
failures = []
held = []


def rule(ok, what):
    if VERBOSE or not ok:
        print(("      ok   " if ok else "      FAIL ") + what)
    (held if ok else failures).append(what)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def seconds(value):
    """660, "660", "660s", "11m" -> seconds."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    total = 0
    for n, unit in re.findall(r"(\d+)(h|m|s)", str(value)):
        total += int(n) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


# --- conf/fleet.yaml ------------------------------------------------------
fleet_text = open("conf/fleet.yaml", encoding="utf-8").read()
fleet = yaml.safe_load(fleet_text)
grace = fleet["server"]["grace_period_seconds"]
rule(fleet["store"].get("url") == "${TOLLGATE_DATABASE_URL}", "fleet: store.url is ${TOLLGATE_DATABASE_URL}")
rule(
    fleet["store"].get("journal_dir") == "${TOLLGATE_DATA_DIR:-data}/journal",
    "fleet: the journal under ${TOLLGATE_DATA_DIR:-data}",
)
rule(fleet["hot_state"].get("redis_url") == "${TOLLGATE_REDIS_URL}", "fleet: hot_state.redis_url is ${TOLLGATE_REDIS_URL}")
rule(
    fleet["hot_state"].get("on_failure") == "${TOLLGATE_REDIS_FAILURE:-open}",
    "fleet: hot_state.on_failure from ${TOLLGATE_REDIS_FAILURE:-open}",
)
rule("path" not in fleet["store"], "fleet: no SQLite path")
rule(fleet.get("log", {}).get("format") == "${TOLLGATE_LOG_FORMAT:-text}", "fleet: log.format from ${TOLLGATE_LOG_FORMAT:-text}")
rule(fleet["admin"]["token"] == "${TOLLGATE_ADMIN_TOKEN}", "fleet: the admin token has no default")
rule(all(":-" not in k.get("key", ":-x") for k in fleet["keys"]), "fleet: no key has a default")
for var in ["TOLLGATE_LISTEN", "TOLLGATE_METRICS_LISTEN", "TOLLGATE_ADMIN_LISTEN", "TOLLGATE_MOCK_URL"]:
    rule("${" + var + ":-" in fleet_text, f"fleet: {var} as in conf/demo.yaml")
rule(isinstance(grace, int) and grace >= 60, f"fleet: server.grace_period_seconds is {grace}")

# --- deploy/Dockerfile ----------------------------------------------------
docker = open("deploy/Dockerfile", encoding="utf-8").read()
lines = [l.strip() for l in re.sub(r"\\\n", " ", docker).splitlines() if l.strip() and not l.lstrip().startswith("#")]
stages = [re.match(r"FROM\s+\S+\s+AS\s+(\S+)", l, re.I).group(1) for l in lines if l.upper().startswith("FROM ")]
rule(len(stages) >= 2 and stages[-1] == "runtime", f"Dockerfile: multi-stage, runtime last ({', '.join(stages)})")


def stage(name):
    out, inside = [], False
    for l in lines:
        if l.upper().startswith("FROM "):
            inside = re.search(r"\sAS\s+" + re.escape(name) + r"$", l, re.I) is not None
        elif inside:
            out.append(l)
    return out


runtime = stage("runtime")
users = [l.split()[1] for l in runtime if l.upper().startswith("USER ")]
rule(users and users[-1].split(":")[0] not in ("0", "root"), f"Dockerfile: runtime runs as {users[-1] if users else 'root'}")
rule(any(re.match(r"FROM (debian:\S*slim|gcr\.io/distroless/cc\S*)\s+AS runtime$", l, re.I) for l in lines),
     "Dockerfile: runtime on debian slim (or distroless cc)")
rule(any("ca-certificates" in l for l in runtime), "Dockerfile: runtime has ca-certificates")
rule(not any(l.upper().startswith("ADD ") for l in lines), "Dockerfile: no ADD (nothing fetched from a URL)")
rule("STOPSIGNAL SIGTERM" in runtime, "Dockerfile: STOPSIGNAL SIGTERM")
rule(any(l.startswith("HEALTHCHECK") and "tollgate-healthcheck" in l for l in runtime), "Dockerfile: HEALTHCHECK")
rule(any(l.startswith("EXPOSE") and "8080" in l and "9090" in l for l in runtime), "Dockerfile: EXPOSE 8080 9090")
rule(
    'ENTRYPOINT ["tollgate", "serve", "--config", "/etc/tollgate/tollgate.yaml"]' in runtime,
    "Dockerfile: ENTRYPOINT tollgate serve --config /etc/tollgate/tollgate.yaml",
)
build = " ".join(stage("build"))
rule("--locked" in build and "--no-default-features" in build and "--bin tollgate" in build,
     "Dockerfile: cargo build --locked --no-default-features --bin tollgate (no mock)")
rule(any("cmake" in l for l in stage("source")), "Dockerfile: cmake in the builder")
mock_users = [l.split()[1] for l in stage("mock") if l.upper().startswith("USER ")]
rule(mock_users and mock_users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: the mock runs as non-root")
ignored = open(".dockerignore", encoding="utf-8").read().split()
for entry in ["target/", ".venv/", ".cli/", "*.db*"]:
    rule(entry in ignored, f".dockerignore: {entry}")

# --- deploy/docker-compose.yml + prometheus.yml ----------------------------
compose = load("deploy/docker-compose.yml")
services = compose["services"]
nodes = sorted(n for n, s in services.items() if (s.get("build") or {}).get("target") == "runtime")
rule(len(nodes) == 3, f"compose: three tollgate nodes ({', '.join(nodes)})")
volumes = {}
for n in nodes:
    s = services[n]
    env = s.get("environment", {})
    data = [v.split(":")[0] for v in s.get("volumes", []) if v.split(":")[1] == env.get("TOLLGATE_DATA_DIR")]
    volumes[n] = data
    rule(len(data) == 1 and data[0] in compose.get("volumes", {}), f"compose: {n}'s TOLLGATE_DATA_DIR on a named volume ({data})")
    rule(seconds(s.get("stop_grace_period", 10)) > grace, f"compose: {n} stop_grace_period {s.get('stop_grace_period')} > {grace} s")
    deps = s.get("depends_on", {})
    rule(all(deps.get(b, {}).get("condition") == "service_healthy" for b in ("postgres", "redis")),
         f"compose: {n} waits for healthy postgres and redis")
    rule(s.get("ulimits", {}).get("nofile", {}).get("hard", 0) >= 65536, f"compose: {n} nofile >= 65536")
    for k in ("TOLLGATE_ADMIN_TOKEN", "TOLLGATE_DEMO_KEY", "TOLLGATE_DATABASE_URL"):
        rule("${" in str(env.get(k, "")), f"compose: {n} {k} from the environment, not the file")
rule(len({v[0] for v in volumes.values() if v}) == len(nodes), "compose: one data volume per node")
for b in ("postgres", "redis"):
    rule("healthcheck" in services.get(b, {}), f"compose: {b} has a healthcheck")
rule(any(":/var/lib/postgresql/data" in v for v in services["postgres"].get("volumes", [])), "compose: postgres on a volume")
redis_cmd = " ".join(services["redis"].get("command", []))
rule("--appendonly" in redis_cmd, f"compose: redis persistence stated ({redis_cmd})")
rule(services.get("mock", {}).get("build", {}).get("target") == "mock", "compose: the mock from the Dockerfile's mock stage")
rule(any("prometheus.yml" in v for v in services["prometheus"].get("volumes", [])), "compose: prometheus mounts deploy/prometheus.yml")
prom = load("deploy/prometheus.yml")
targets = sorted(t for j in prom["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"])
rule(targets == sorted(f"{n}:9090" for n in nodes), f"prometheus: scrapes every node ({', '.join(targets)})")
rule(all("change-me" in v or v in ("open", "closed")
         for k, v in (l.split("=", 1) for l in open("deploy/compose.env.example", encoding="utf-8").read().splitlines()
                      if l and not l.startswith("#"))),
     "compose.env.example: placeholders only")

# --- deploy/kubernetes ------------------------------------------------------
k8s = {}
for name in ["namespace", "configmap", "secret", "deployment", "service", "poddisruptionbudget"]:
    for doc in load_all(f"deploy/kubernetes/{name}.yaml"):
        k8s.setdefault(doc["kind"], []).append(doc)
kust = load("deploy/kubernetes/kustomization.yaml")
rule(len(kust["resources"]) == 6, "kubernetes: the kustomization lists every manifest")
dep = k8s["Deployment"][0]
spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
labels = dep["spec"]["template"]["metadata"]["labels"]
c = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
rule(spec["replicas"] == 3, "kubernetes: 3 replicas")
ru = spec["strategy"]["rollingUpdate"]
rule(ru["maxUnavailable"] == 0 and ru["maxSurge"] == 1, "kubernetes: rolling update maxUnavailable 0, maxSurge 1")
prestop = seconds(int(c["lifecycle"]["preStop"]["exec"]["command"][-1]))
rule(pod["terminationGracePeriodSeconds"] > grace + prestop,
     f"kubernetes: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > preStop {prestop} + grace {grace}")
for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
    get = c[probe]["httpGet"]
    rule(get["port"] == "http" and get["path"] in ("/health", "/livez"), f"kubernetes: {probe} on {get['path']} of the main port")
rule(c["readinessProbe"]["httpGet"]["path"] == "/health", "kubernetes: readiness on /health (reports the store and Redis)")
live = c["livenessProbe"]
rule(live["periodSeconds"] * live["failureThreshold"] >= 60, "kubernetes: liveness waits a minute before a restart")
rule(pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"],
     "kubernetes: non-root, read-only root filesystem")
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
env = {e["name"]: e.get("value") for e in c["env"]}
vols = {v["name"]: v for v in pod["volumes"]}
rule("emptyDir" in vols[mounts[env["TOLLGATE_DATA_DIR"]]], "kubernetes: the data dir on an emptyDir")
rule(vols[mounts["/etc/tollgate"]]["configMap"]["name"] == k8s["ConfigMap"][0]["metadata"]["name"],
     "kubernetes: the ConfigMap mounted at /etc/tollgate")
rule(c["envFrom"][0]["secretRef"]["name"] == k8s["Secret"][0]["metadata"]["name"], "kubernetes: the Secret as environment")
rule("resources" in c and "requests" in c["resources"], "kubernetes: resources")
rule(k8s["ConfigMap"][0]["data"]["tollgate.yaml"] == fleet_text, "kubernetes: the ConfigMap is conf/fleet.yaml verbatim")
secret = k8s["Secret"][0]["stringData"]
for k in ("TOLLGATE_ADMIN_TOKEN", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL"):
    rule(k in secret, f"kubernetes: the Secret has {k}")
rule(all("REPLACE" in v or "example" in v for v in secret.values()), "kubernetes: the Secret holds placeholders only")
for svc in k8s["Service"]:
    sel = svc["spec"]["selector"]
    rule(all(labels.get(k) == v for k, v in sel.items()), f"kubernetes: Service {svc['metadata']['name']} selects the pods")
    rule(all(p["targetPort"] in ports for p in svc["spec"]["ports"]), f"kubernetes: Service {svc['metadata']['name']} ports exist")
    rule("sessionAffinity" not in svc["spec"] or svc["spec"]["sessionAffinity"] == "None",
         f"kubernetes: Service {svc['metadata']['name']} without sticky sessions")
rule(any(s["spec"].get("clusterIP") == "None" for s in k8s["Service"]), "kubernetes: a headless Service for DNS")
pdb = k8s["PodDisruptionBudget"][0]["spec"]
rule(all(labels.get(k) == v for k, v in pdb["selector"]["matchLabels"].items()), "kubernetes: the PDB selects the pods")
rule(pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 2, "kubernetes: the PDB keeps all but one")

# --- deploy/systemd -------------------------------------------------------
unit = {}
for l in open("deploy/systemd/tollgate@.service", encoding="utf-8"):
    if "=" in l and not l.startswith(("#", ";")):
        k, v = l.rstrip("\n").split("=", 1)
        unit.setdefault(k, []).append(v)
rule(unit["Type"] == ["exec"] or unit["Type"] == ["simple"], f"systemd: Type={unit['Type'][0]} (foreground)")
rule(seconds(unit["TimeoutStopSec"][0]) > grace, f"systemd: TimeoutStopSec {unit['TimeoutStopSec'][0]} > {grace} s")
rule(unit["KillSignal"] == ["SIGTERM"], "systemd: KillSignal=SIGTERM")
rule(int(unit["LimitNOFILE"][0]) >= 65536, "systemd: LimitNOFILE >= 65536")
rule(unit["ExecStart"][0].startswith("/usr/local/bin/tollgate serve --config /etc/tollgate/tollgate.yaml"),
     "systemd: ExecStart tollgate serve")
rule("/etc/tollgate/env" in unit["EnvironmentFile"], "systemd: EnvironmentFile=/etc/tollgate/env")
rule(unit.get("User") == ["tollgate"] and unit.get("StateDirectory") == ["tollgate"], "systemd: own user, StateDirectory")
rule("TOLLGATE_UPGRADE_SOCK=/run/tollgate/upgrade.sock" in unit["Environment"], "systemd: upgrade socket outside PrivateTmp")
for k in ("NoNewPrivileges", "PrivateTmp"):
    rule(unit.get(k) == ["yes"], f"systemd: {k}=yes")
rule(unit.get("ProtectSystem") == ["strict"] and "ReadWritePaths" in unit, "systemd: ProtectSystem=strict, ReadWritePaths")
rule(unit.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], "systemd: ExecReload sends SIGHUP (the configuration is read again)")

print(f"      {len(held)} rules hold, {len(failures)} fail")
sys.exit(1 if failures else 0)
