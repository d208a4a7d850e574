"""Checks of deploy/ that no off-the-shelf linter makes. Run by deploy/check.sh
with the project's virtualenv Python (PyYAML and boto3 come with
requirements.txt).

  python deploy/check_deploy.py [--no-moto]

It renders deploy/cloudformation.yaml for each kind of target (its
conditions, Fn::If, Fn::Sub and Rules evaluated here, since cfn-lint does not
evaluate them) and checks the worker policy of each; it checks the rule's
event pattern against the one redrelay creates, and the defaults against
src/config.rs; it checks the Kubernetes manifest, the systemd unit and the
Containerfile against what redrelay reads, and docs/deploy.md's Secret and
unit lines against the manifest and the unit. Then (unless --no-moto) it
creates the rendered queue, dead-letter queue, rule, target, queue policy
and IAM policies on moto's server, checks that a redrelay event reaches the
queue and others do not, and, given a redrelay binary, runs `redrelay setup`
beside it and compares the two.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"
MANIFEST = ROOT / "deploy" / "kubernetes.yaml"

# The rule's pattern, as `event_pattern()` in src/setup.rs builds it from
# SOURCE and DETAIL_TYPE in wire/src/event.rs (the redrelay-wire crate, which
# src/event.rs re-exports). Nothing in the Rust tests ties this
# copy to that function: `source_pattern()` below reads it back from the
# sources, and the moto stage compares it with what `redrelay setup` prints.
EXPECTED_PATTERN = {
    "source": ["aws.redshift-data"],
    "detail-type": ["Redshift Data Statement Status Change"],
    "detail": {"statementName": [{"prefix": "redrelay/"}]},
}

ACCOUNT = "123456789012"
REGION = "us-east-1"
WORKGROUP_ARN = (
    f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/2c4e6a80-1b3d-4f5a-8c9e-0a1b2c3d4e5f"
)
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redshift/etl-AbCdEf"
# The PostgreSQL ledger's password (parameter LedgerSecretArn).
LEDGER_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redrelay/ledger-GhIjKl"

checked = []


def ok(what):
    checked.append(what)
    print(f"  ok  {what}")


def fail(what):
    print(f"  FAIL {what}", file=sys.stderr)
    sys.exit(1)


def expect(cond, what, detail=""):
    if cond:
        ok(what)
    else:
        fail(f"{what}{': ' + detail if detail else ''}")


# ----- CloudFormation YAML and intrinsic functions --------------------------


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !If, ...)."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template():
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


NO_VALUE = object()


class Rendered:
    """The template with parameter values, as CloudFormation would resolve it.

    `physical` maps (logical id, "Ref" | attribute) to values; missing ones
    get made-up but well-formed ARNs and URLs."""

    def __init__(self, tpl, params, physical=None):
        self.tpl = tpl
        self.params = {}
        for name, spec in tpl["Parameters"].items():
            if name in params:
                value = str(params[name])
            elif "Default" in spec:
                value = str(spec["Default"])
            else:
                raise ValueError(f"parameter {name} has no value and no default")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, value):
                raise ValueError(f"parameter {name}={value!r} does not match {pattern}")
            if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                raise ValueError(f"parameter {name}={value!r} is not one of {spec['AllowedValues']}")
            if spec["Type"] == "Number":
                n = float(value)
                if "MinValue" in spec and n < spec["MinValue"] or "MaxValue" in spec and n > spec["MaxValue"]:
                    raise ValueError(f"parameter {name}={value} is out of range")
            self.params[name] = value
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "redrelay",
        }
        p = self.params
        sqs = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}"
        self.physical = {
            ("Queue", "Ref"): f"{sqs}/{p['QueueName']}",
            ("Queue", "Arn"): f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['QueueName']}",
            ("DeadLetterQueue", "Ref"): f"{sqs}/{p['DlqName']}",
            ("DeadLetterQueue", "Arn"): f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['DlqName']}",
            ("Rule", "Arn"): f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{p['RuleName']}",
            ("WorkerPolicy", "Ref"): f"arn:aws:iam::{ACCOUNT}:policy/redrelay-WorkerPolicy-X",
        }
        self.physical.update(physical or {})
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.tpl["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name):
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        return self.physical[(name, "Ref")]

    def sub(self, text):
        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if "." in name:
                res, attr = name.split(".", 1)
                return self.physical[(res, attr)]
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, x):
        if isinstance(x, list):
            return [v for v in (self.resolve(i) for i in x) if v is not NO_VALUE]
        if not isinstance(x, dict):
            return x
        if len(x) == 1:
            (key, arg), = x.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.physical[(arg[0], arg[1])]
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not handled by this renderer")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in x.items()) if v is not NO_VALUE}

    def rule_failures(self):
        """The AssertDescription of every failed Rules assertion."""
        failures = []
        for rule in self.tpl.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for a in rule["Assertions"]:
                if not self.resolve(a["Assert"]):
                    failures.append(a["AssertDescription"])
        return failures

    def resource(self, logical_id):
        return self.resolve(self.tpl["Resources"][logical_id])

    def policy(self):
        return self.resource("WorkerPolicy")["Properties"]["PolicyDocument"]

    def outputs(self):
        """The outputs whose Condition holds, resolved."""
        out = {}
        for name, spec in self.tpl.get("Outputs", {}).items():
            if "Condition" in spec and not self.condition(spec["Condition"]):
                continue
            out[name] = self.resolve({k: v for k, v in spec.items() if k != "Condition"})
        return out


def as_list(v):
    return v if isinstance(v, list) else [v]


def grants(doc):
    """action -> list of (resources, condition) of the statements allowing it."""
    out = {}
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow", st
        for action in as_list(st["Action"]):
            out.setdefault(action, []).append((sorted(as_list(st["Resource"])), st.get("Condition")))
    return out


# ----- static checks ---------------------------------------------------------


def source_pattern():
    """The pattern `event_pattern()` builds, read from the Rust sources."""
    setup = (ROOT / "src" / "setup.rs").read_text()
    event = (ROOT / "wire" / "src" / "event.rs").read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "([^"]*)";', event))
    m = re.search(r"pub fn event_pattern\(\)[^{]*\{\s*serde_json::json!\((\{.*?\})\)\s*\}", setup, re.S)
    if not m or "SOURCE" not in consts or "DETAIL_TYPE" not in consts:
        fail("cannot find event_pattern() in src/setup.rs or SOURCE/DETAIL_TYPE in wire/src/event.rs")
    body = re.sub(r"\[(SOURCE|DETAIL_TYPE)\]", lambda k: json.dumps([consts[k.group(1)]]), m.group(1))
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        fail(f"event_pattern() in src/setup.rs is no longer plain json!(...) this check can read ({e}); "
             "update EXPECTED_PATTERN and source_pattern() in deploy/check_deploy.py")


def config_defaults():
    text = (ROOT / "src" / "config.rs").read_text()
    m = re.search(r"impl Default for Config \{.*?Self \{(.*?)\n        \}", text, re.S)
    if not m:
        fail("cannot find `impl Default for Config` in src/config.rs")
    out = {}
    for key, value in re.findall(r"^\s*(\w+): (.+?),\s*$", m.group(1), re.M):
        s = re.fullmatch(r'"([^"]*)"\.into\(\)', value)
        out[key] = s.group(1) if s else value
    return out


def check_template_static():
    tpl = load_template()
    res = tpl["Resources"]

    print("CloudFormation template vs. redrelay setup (src/setup.rs, src/config.rs):")
    pattern = res["Rule"]["Properties"]["EventPattern"]
    expect(pattern == EXPECTED_PATTERN, "rule EventPattern equals the expected pattern",
           json.dumps(pattern))
    expect(source_pattern() == EXPECTED_PATTERN, "expected pattern equals event_pattern() in src/setup.rs",
           json.dumps(source_pattern()))
    setup = (ROOT / "src" / "setup.rs").read_text()
    target_id = re.search(r'pub const TARGET_ID: &str = "([^"]*)";', setup).group(1)
    targets = res["Rule"]["Properties"]["Targets"]
    expect([t["Id"] for t in targets] == [target_id], f"rule target id is {target_id!r} as in src/setup.rs")
    defaults = config_defaults()
    params = tpl["Parameters"]
    for param, key in [
        ("QueueName", "queue_name"),
        ("RuleName", "rule_name"),
        ("EventBusName", "event_bus"),
        ("MaxReceiveCount", "max_receive_count"),
        ("VisibilityTimeoutSecs", "visibility_timeout_secs"),
        ("WaitTimeSecs", "wait_time_secs"),
    ]:
        expect(str(params[param]["Default"]) == defaults.get(key),
               f"parameter {param} default {params[param]['Default']!r} = config {key} default",
               f"config.rs says {defaults.get(key)!r}")
    expect(params["DlqName"]["Default"] == params["QueueName"]["Default"] + "-dlq",
           "parameter DlqName default is <queue_name>-dlq (config dlq_name default)")
    retention = re.findall(r'MessageRetentionPeriod, "(\d+)"', setup)
    for q in ("Queue", "DeadLetterQueue"):
        expect(str(res[q]["Properties"]["MessageRetentionPeriod"]) == "1209600" and retention == ["1209600"] * 2,
               f"{q} retention is 14 days (1209600 s), as redrelay setup sets it")

    print("CloudFormation template rendered for each kind of target:")
    base = Rendered(tpl, {"WorkgroupArn": WORKGROUP_ARN, "Database": "dev"})
    queue = base.resource("Queue")["Properties"]
    dlq_arn = base.physical[("DeadLetterQueue", "Arn")]
    queue_arn = base.physical[("Queue", "Arn")]
    rule_arn = base.physical[("Rule", "Arn")]
    expect(queue["RedrivePolicy"] == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"},
           "queue redrive policy: the DLQ after 5 receives")
    expect((queue["VisibilityTimeout"], queue["ReceiveMessageWaitTimeSeconds"]) == ("120", "20"),
           "queue visibility timeout 120 s and long-poll wait 20 s")
    qp = base.resource("QueuePolicy")["Properties"]["PolicyDocument"]["Statement"]
    expect(len(qp) == 1 and qp[0]["Principal"] == {"Service": "events.amazonaws.com"}
           and qp[0]["Action"] == "sqs:SendMessage" and qp[0]["Resource"] == queue_arn
           and qp[0]["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}},
           "queue policy: only the rule (aws:SourceArn) may SendMessage")

    cluster_arn = f"arn:aws:redshift:{REGION}:{ACCOUNT}:cluster:analytics"
    dbname_arn = f"arn:aws:redshift:{REGION}:{ACCOUNT}:dbname:analytics/dev"
    dbuser_arn = f"arn:aws:redshift:{REGION}:{ACCOUNT}:dbuser:analytics/etl"
    variants = [
        ("serverless, temporary credentials", {"WorkgroupArn": WORKGROUP_ARN},
         WORKGROUP_ARN, {"redshift-serverless:GetCredentials": [WORKGROUP_ARN]}),
        ("serverless, secret", {"WorkgroupArn": WORKGROUP_ARN, "SecretArn": SECRET_ARN},
         WORKGROUP_ARN, {"secretsmanager:GetSecretValue": [SECRET_ARN]}),
        ("cluster, IAM identity", {"ClusterIdentifier": "analytics"},
         cluster_arn, {"redshift:GetClusterCredentialsWithIAM": [dbname_arn]}),
        ("cluster, DbUser", {"ClusterIdentifier": "analytics", "DbUser": "etl"},
         cluster_arn, {"redshift:GetClusterCredentials": sorted([dbuser_arn, dbname_arn])}),
        ("cluster, secret", {"ClusterIdentifier": "analytics", "SecretArn": SECRET_ARN},
         cluster_arn, {"secretsmanager:GetSecretValue": [SECRET_ARN]}),
    ]
    credential_actions = {
        "redshift-serverless:GetCredentials",
        "redshift:GetClusterCredentials",
        "redshift:GetClusterCredentialsWithIAM",
        "secretsmanager:GetSecretValue",
    }
    owner_key = "redshift-data:statement-owner-iam-userid"
    policies = {}
    for label, extra, target_arn, creds in variants:
        for role_id, dlq, ledger in [("", "true", ""), ("AROAEXAMPLEID1234567", "false", ""),
                                     ("", "false", LEDGER_SECRET_ARN),
                                     ("AROAEXAMPLEID1234567", "true", LEDGER_SECRET_ARN)]:
            params_ = {"Database": "dev", "WorkerRoleId": role_id, "GrantDlqRedrive": dlq,
                       "LedgerSecretArn": ledger, **extra}
            r = Rendered(tpl, params_)
            if r.rule_failures():
                fail(f"{label}: template Rules reject a valid target: {r.rule_failures()}")
            doc = r.policy()
            g = grants(doc)
            problems = []
            for action in ("redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement"):
                if g.get(action) != [([target_arn], None)]:
                    problems.append(f"{action} is {g.get(action)}, not on {target_arn} alone")
            owner = ({"StringLike": {owner_key: f"{role_id}:*"}} if role_id
                     else {"StringEquals": {owner_key: "${aws:userid}"}})
            for action in ("DescribeStatement", "GetStatementResult", "CancelStatement", "ListStatements"):
                if g.get("redshift-data:" + action) != [(["*"], owner)]:
                    problems.append(f"redshift-data:{action} is {g.get('redshift-data:' + action)}")
            # The ledger's secret is its own statement, on its own ARN; the
            # Redshift credentials are the other statements.
            ledger_sts = [st for st in doc["Statement"] if st["Sid"] == "LedgerSecret"]
            want_ledger = ([{"Sid": "LedgerSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                             "Resource": LEDGER_SECRET_ARN}] if ledger else [])
            if ledger_sts != want_ledger:
                problems.append(f"LedgerSecret statement {ledger_sts} instead of {want_ledger}")
            g_creds = grants({"Statement": [st for st in doc["Statement"] if st["Sid"] != "LedgerSecret"]})
            got_creds = {a: g_creds[a][0][0] for a in g_creds if a in credential_actions}
            if got_creds != creds:
                problems.append(f"credentials {got_creds} instead of {creds}")
            secrets_read = sorted(r for res, _ in g.get("secretsmanager:GetSecretValue", []) for r in res)
            want_read = sorted(creds.get("secretsmanager:GetSecretValue", []) + ([LEDGER_SECRET_ARN] if ledger else []))
            if secrets_read != want_read:
                problems.append(f"secretsmanager:GetSecretValue on {secrets_read} instead of {want_read}")
            outputs = r.outputs()
            if ("LedgerPasswordCommand" in outputs) != bool(ledger) or (
                    ledger and LEDGER_SECRET_ARN not in outputs["LedgerPasswordCommand"]["Value"]):
                problems.append(f"output LedgerPasswordCommand is {outputs.get('LedgerPasswordCommand')}")
            consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                       "sqs:GetQueueUrl", "sqs:GetQueueAttributes"}
            for a in consume:
                if ([queue_arn], None) not in g.get(a, []):
                    problems.append(f"{a} not on the queue")
            on_dlq = {a for a, gs in g.items() if any(dlq_arn in res for res, _ in gs)}
            want_dlq = ({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                         "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                         "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"} if dlq == "true" else set())
            if on_dlq != want_dlq:
                problems.append(f"DLQ actions {sorted(on_dlq)} instead of {sorted(want_dlq)}")
            sends = g.get("sqs:SendMessage", [])
            if sends != ([([queue_arn], None)] if dlq == "true" else []):
                problems.append(f"sqs:SendMessage is {sends}")
            for st in doc["Statement"]:
                if any("*" in a for a in as_list(st["Action"])):
                    problems.append(f"wildcard action in {st['Sid']}")
                if "*" in as_list(st["Resource"]) and st["Sid"] != "FollowOwnStatements":
                    problems.append(f"'*' resource in {st['Sid']}")
                if "*" in as_list(st["Resource"]) and "Condition" not in st:
                    problems.append(f"'*' resource without a condition in {st['Sid']}")
            sids = [st["Sid"] for st in doc["Statement"]]
            if len(sids) != len(set(sids)):
                problems.append(f"duplicate Sids {sids}")
            scope = "any session of the role" if role_id else "the same session"
            expect(not problems, f"worker policy, {label}; own statements: {scope}; DLQ redrive: {dlq}; "
                   f"ledger secret: {'GetSecretValue on it alone' if ledger else 'none'}",
                   "; ".join(problems))
            policies[f"{label} {role_id or 'userid'} {dlq} {'ledger' if ledger else ''}"] = doc

    for label, params_ in [
        ("neither a workgroup nor a cluster", {}),
        ("both a workgroup and a cluster", {"WorkgroupArn": WORKGROUP_ARN, "ClusterIdentifier": "analytics"}),
        ("DbUser with a workgroup", {"WorkgroupArn": WORKGROUP_ARN, "DbUser": "etl"}),
    ]:
        r = Rendered(tpl, {"Database": "dev", **params_})
        expect(bool(r.rule_failures()), f"template Rules reject {label}")
    for label, params_ in [
        ("a workgroup name instead of its ARN", {"WorkgroupArn": "analytics"}),
        ("a queue name ending in .fifo", {"ClusterIdentifier": "analytics", "QueueName": "x.fifo"}),
        ("a long-poll wait over 20 s", {"ClusterIdentifier": "analytics", "WaitTimeSecs": "21"}),
        ("a ledger secret given by name, not ARN", {"ClusterIdentifier": "analytics",
                                                    "LedgerSecretArn": "redrelay/ledger"}),
        ("an RDS instance ARN as the ledger secret",
         {"ClusterIdentifier": "analytics", "LedgerSecretArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:ledger"}),
    ]:
        try:
            Rendered(tpl, {"Database": "dev", **params_})
            fail(f"parameter constraints accept {label}")
        except ValueError:
            ok(f"parameter constraints reject {label}")
    return policies


def check_manifest():
    print("Kubernetes manifest (three workers on a PostgreSQL ledger):")
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    expect(sorted(by_kind) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "ServiceAccount"]
           and len(docs) == 4, "one ServiceAccount, ConfigMap, Deployment and PodDisruptionBudget; "
           "no PersistentVolumeClaim and no Secret (created apart, never overwritten by apply)")
    dep = by_kind["Deployment"]["spec"]
    pod = dep["template"]["spec"]
    expect(dep["replicas"] == 3, "Deployment: 3 replicas")
    expect(dep["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
           "rolling update one pod at a time, never more than the replicas (connection budget)")
    labels = dep["selector"]["matchLabels"]
    pdb = by_kind["PodDisruptionBudget"]["spec"]
    expect(pdb["selector"]["matchLabels"] == labels == dep["template"]["metadata"]["labels"]
           and pdb.get("maxUnavailable") == 1, "PodDisruptionBudget: one worker at a time, same selector")
    spread = pod.get("topologySpreadConstraints", [])
    expect({s["topologyKey"] for s in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
           and all(s["labelSelector"]["matchLabels"] == labels for s in spread),
           "workers spread over nodes and zones")
    expect(pod["terminationGracePeriodSeconds"] == 45, "terminationGracePeriodSeconds 45 (> 30 s worker grace)")
    sa = by_kind["ServiceAccount"]
    expect(pod["serviceAccountName"] == sa["metadata"]["name"]
           and "eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}),
           "pod runs as the ServiceAccount annotated for IRSA")
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    env_from = {e["name"]: e.get("valueFrom") for e in c["env"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    cm = by_kind["ConfigMap"]
    cfg_mount = next(m for m in c["volumeMounts"] if vols[m["name"]].get("configMap"))
    cfg_key = Path(env["REDRELAY_CONFIG"]).name
    expect(Path(env["REDRELAY_CONFIG"]).parent == Path(cfg_mount["mountPath"])
           and vols[cfg_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
           and cfg_key in cm["data"], "REDRELAY_CONFIG points at the ConfigMap's redrelay.toml, mounted")
    toml_keys = set(re.findall(r"^(\w+)\s*=", cm["data"][cfg_key], re.M))
    config_rs = (ROOT / "src" / "config.rs").read_text()
    # KEYS in src/config.rs: ("name", Kind::...) entries.
    known = set(re.findall(r'^\s*\("(\w+)", Kind::\w+\),$', config_rs, re.M))
    expect(toml_keys and toml_keys <= known, f"redrelay.toml keys {sorted(toml_keys)} exist in src/config.rs",
           f"unknown: {sorted(toml_keys - known)}")
    env_keys = {n[len("REDRELAY_"):].lower() for n in env if n.startswith("REDRELAY_")} - {"config", "log"}
    expect(env_keys <= known, f"REDRELAY_ variables {sorted(env_keys)} name keys of src/config.rs",
           f"unknown: {sorted(env_keys - known)}")
    expect(not any(v.get("persistentVolumeClaim") for v in vols.values()), "no PersistentVolumeClaim mounted")

    # The ledger: URL from the Secret, password from the Secret's file.
    ref = (env_from.get("REDRELAY_LEDGER") or {}).get("secretKeyRef", {})
    expect(env["REDRELAY_LEDGER"] is None and ref.get("name") and ref.get("key"),
           f"REDRELAY_LEDGER comes from the Secret {ref.get('name')!r} (key {ref.get('key')!r}), not a literal")
    secret_name = ref["name"]
    pw = Path(env["REDRELAY_LEDGER_PASSWORD_FILE"])
    pw_mount = mounts.get(str(pw.parent))
    pw_vol = vols[pw_mount["name"]] if pw_mount else {}
    items = {i["key"]: i["path"] for i in pw_vol.get("secret", {}).get("items", [])}
    expect(pw_mount and pw_mount.get("readOnly") and pw_vol.get("secret", {}).get("secretName") == secret_name
           and pw.name in items.values(),
           f"REDRELAY_LEDGER_PASSWORD_FILE {pw} is a file of the same Secret, mounted read-only")
    mode = pw_vol["secret"].get("defaultMode")
    expect(mode is not None and mode & 0o007 == 0, f"the Secret's files are not world-readable (mode {mode:o})")
    # The URL in the header's `kubectl create secret` has sslmode=verify-full
    # and an sslrootcert that is a file of the mounted Secret.
    header = MANIFEST.read_text().split("\n---", 1)[0]
    urls = re.findall(r"--from-literal=url='([^']+)'", header)
    expect(len(urls) == 1 and urls[0].startswith("postgres://") and ":" not in urls[0].split("@")[0][11:]
           and "sslmode=verify-full" in urls[0], "the example ledger URL: postgres://, no password, "
           "sslmode=verify-full")
    root = re.search(r"sslrootcert=([^&']+)", urls[0])
    expect(root and Path(root.group(1)).parent == Path(pw_mount["mountPath"])
           and Path(root.group(1)).name in items.values(),
           "its sslrootcert is the CA bundle file of the mounted Secret")
    created = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", header))
    expect(f"secret generic {secret_name}" in header and set(items) | {ref["key"]} <= created,
           f"the header's `kubectl create secret generic {secret_name}` makes every key the pod reads",
           f"{sorted(created)} vs {sorted(set(items) | {ref['key']})}")
    n = int(env.get("REDRELAY_LEDGER_MAX_CONNECTIONS") or 0)
    default_n = re.search(r"ledger_max_connections: (\d+),", config_rs)
    expect(default_n and n == int(default_n.group(1)),
           f"REDRELAY_LEDGER_MAX_CONNECTIONS {n} is the default in src/config.rs, as the docs count it")

    # Results: on a writable emptyDir of each pod.
    res_mount = mounts.get(str(Path(env["REDRELAY_RESULTS_DIR"]).parent))
    expect(res_mount and "emptyDir" in vols[res_mount["name"]] and not res_mount.get("readOnly"),
           "results_dir on a writable emptyDir of each pod")
    psc, csc = pod["securityContext"], c["securityContext"]
    expect(psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0
           and csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
           and csc.get("capabilities", {}).get("drop") == ["ALL"]
           and psc.get("seccompProfile") == {"type": "RuntimeDefault"},
           "non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp")
    expect(c.get("args", [])[:1] == ["worker"], "container runs `redrelay worker`")
    expect(env.get("AWS_ROLE_SESSION_NAME"), "a fixed AWS_ROLE_SESSION_NAME (see the worker policy)")


def check_unit_static():
    print("systemd unit (keys redrelay reads):")
    text = (ROOT / "deploy" / "redrelay.service").read_text()
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    state = "/var/lib/" + re.search(r"^StateDirectory=(\S+)$", text, re.M).group(1)
    expect(Path(env["REDRELAY_LEDGER"]).parent == Path(state)
           and Path(env["REDRELAY_RESULTS_DIR"]).parent == Path(state)
           and re.search(rf"^ReadWritePaths={re.escape(state)}$", text, re.M),
           f"ledger and results in the StateDirectory {state}, which is writable")
    grace = 30
    m = re.search(r"^ExecStart=\S+ worker(?: --grace-secs (\d+))?\s*$", text, re.M)
    expect(m is not None, "ExecStart runs `redrelay worker`")
    if m.group(1):
        grace = int(m.group(1))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s?$", text, re.M).group(1))
    expect(grace < stop <= grace + 30, f"TimeoutStopSec {stop}s is a little above the worker grace {grace}s")
    # Several hosts on one PostgreSQL ledger: the commented lines that
    # deploy/check.sh also verifies uncommented.
    cred = re.findall(r"^#LoadCredential=([\w.-]+):(/\S+)$", text, re.M)
    pwf = re.findall(r"^#Environment=REDRELAY_LEDGER_PASSWORD_FILE=%d/([\w.-]+)$", text, re.M)
    expect(len(cred) == 1 and pwf == [cred[0][0]] and not re.search(r"^LoadCredential=", text, re.M),
           f"PostgreSQL lines, commented: LoadCredential={cred[0][0] if cred else '?'}:... and "
           "REDRELAY_LEDGER_PASSWORD_FILE=%d/ the same credential")
    urls = re.findall(r"^#\s+REDRELAY_LEDGER='([^']+)'$", text, re.M)
    root = re.search(r"sslrootcert=([^&']+)", urls[0]) if urls else None
    expect(len(urls) == 1 and urls[0].startswith("postgres://") and "sslmode=verify-full" in urls[0]
           and ":" not in urls[0][len("postgres://"):].split("@")[0] and root
           and Path(root.group(1)).parent == Path(env["REDRELAY_CONFIG"]).parent,
           "the example ledger URL: postgres://, no password, sslmode=verify-full, CA bundle in /etc/redrelay")
    expect(re.search(r"^EnvironmentFile=-/etc/redrelay/redrelay.env$", text, re.M),
           "REDRELAY_LEDGER can be set per host in /etc/redrelay/redrelay.env (overrides Environment=)")


def check_docs():
    """docs/deploy.md shows the same Secret, paths and unit lines as deploy/."""
    print("docs/deploy.md against deploy/:")
    docs = (ROOT / "docs" / "deploy.md").read_text()
    manifest = MANIFEST.read_text()
    unit = (ROOT / "deploy" / "redrelay.service").read_text()
    header = manifest.split("\n---", 1)[0]
    ledger_cmd = re.search(r"kubectl create secret generic redrelay-ledger.*?(?=\n#\s*\n)", header, re.S)
    m_keys = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", ledger_cmd.group(0)))
    m_root = re.search(r"sslrootcert=([^&']+)", header).group(1)
    block = re.search(r"kubectl create secret generic redrelay-ledger[^`]*", docs)
    # The ledger's Secret alone (the API token's follows it in the block).
    ledger_block = block.group(0).split("\nrm ", 1)[0] if block else ""
    expect(block and set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", ledger_block)) == m_keys
           and f"sslrootcert={m_root}" in ledger_block,
           "the docs' `kubectl create secret` makes the manifest's keys, with its sslrootcert path")
    expect("kubectl create secret generic redrelay-api" in header and "redrelay-api" in docs
           and "REDRELAY_API_TOKEN_FILE" in manifest,
           "the API token's Secret is created in the header and the docs, and the pod reads it")
    lines = re.findall(r"^#((?:LoadCredential|Environment=REDRELAY_LEDGER_PASSWORD_FILE)=.*)$", unit, re.M)
    expect(len(lines) == 2 and all(f"\n{ln}\n" in docs for ln in lines),
           "the docs show the unit's commented PostgreSQL lines as they are")
    params = load_template()["Parameters"]
    expect("LedgerSecretArn" in params and "`LedgerSecretArn`" in docs and "`LedgerPasswordCommand`" in docs,
           "the docs describe LedgerSecretArn and its output")


def check_containerfile():
    print("Containerfile:")
    text = (ROOT / "deploy" / "Containerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    expect(froms == ["rust:1-bookworm", "debian:bookworm-slim"],
           "two stages: rust:1-bookworm builder, debian:bookworm-slim runtime")
    expect("cargo build --profile production --locked --no-default-features -p redrelay" in text
           and "target/production/redrelay" in text,
           "builds with cargo build --profile production --locked --no-default-features -p redrelay "
           "(no emulator, LTO)")
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    expect(len(user) == 1 and user[0].split(":")[0].isdigit() and int(user[0].split(":")[0]) > 0,
           f"runs as a numeric non-root user ({user})")
    expect('ENTRYPOINT ["redrelay"]' in lines and 'CMD ["worker"]' in lines
           and 'VOLUME ["/var/lib/redrelay"]' in lines, "ENTRYPOINT redrelay, CMD worker, VOLUME /var/lib/redrelay")
    env = dict(re.findall(r"(REDRELAY_\w+)=(\S+)", text))
    expect(Path(env["REDRELAY_LEDGER"]).parent == Path("/var/lib/redrelay")
           and Path(env["REDRELAY_RESULTS_DIR"]).parent == Path("/var/lib/redrelay"),
           "ledger and results on the volume")
    # Every path the build copies from the context must pass the ignore file.
    ignore = [ln for ln in (ROOT / "deploy" / "Containerfile.dockerignore").read_text().splitlines()
              if ln and not ln.startswith("#")]
    copied = [w for ln in lines if ln.startswith("COPY ") and "--from" not in ln for w in ln.split()[1:-1]]
    kept = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    expect(ignore[0] == "*" and set(copied) <= kept and all((ROOT / c).exists() for c in copied),
           f"the build context keeps exactly what COPY reads ({', '.join(copied)})")


# ----- moto ------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_moto(venv, binary, policies):
    import boto3

    tpl = load_template()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="deploy-check-moto-", suffix=".log", delete=False)
    moto = subprocess.Popen([str(Path(venv) / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or moto.poll() is not None:
                    fail(f"moto_server did not start (log: {log.name})")
                time.sleep(0.2)
        env = {
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
        sqs, events, iam = (boto3.client(s, **kw) for s in ("sqs", "events", "iam"))
        print(f"Rendered template applied to moto ({url}):")

        # Queues and rule first, then render again with moto's real ARNs.
        r = Rendered(tpl, {"WorkgroupArn": WORKGROUP_ARN, "Database": "dev"})
        dlq = r.resource("DeadLetterQueue")["Properties"]
        dlq_url = sqs.create_queue(QueueName=dlq.pop("QueueName"), Attributes=sqs_attributes(dlq))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        physical = {("DeadLetterQueue", "Ref"): dlq_url, ("DeadLetterQueue", "Arn"): dlq_arn}
        q = Rendered(tpl, {"WorkgroupArn": WORKGROUP_ARN, "Database": "dev"}, physical).resource("Queue")
        q = q["Properties"]
        queue_url = sqs.create_queue(QueueName=q.pop("QueueName"), Attributes=sqs_attributes(q))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        physical.update({("Queue", "Ref"): queue_url, ("Queue", "Arn"): queue_arn})
        rule = Rendered(tpl, {"WorkgroupArn": WORKGROUP_ARN, "Database": "dev"}, physical).resource("Rule")
        rp = rule["Properties"]
        rule_arn = events.put_rule(Name=rp["Name"], EventBusName=rp["EventBusName"],
                                   EventPattern=json.dumps(rp["EventPattern"]), State=rp["State"],
                                   Description=rp["Description"])["RuleArn"]
        out = events.put_targets(Rule=rp["Name"], EventBusName=rp["EventBusName"], Targets=rp["Targets"])
        expect(out["FailedEntryCount"] == 0, "queue, dead-letter queue, rule and target created")
        physical[("Rule", "Arn")] = rule_arn
        r = Rendered(tpl, {"WorkgroupArn": WORKGROUP_ARN, "Database": "dev"}, physical)
        qp = r.resource("QueuePolicy")["Properties"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(qp["PolicyDocument"])})
        ok("queue policy set")

        for variant, doc in policies.items():
            name = "redrelay-" + re.sub(r"[^A-Za-z0-9]+", "-", variant).strip("-")
            iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(doc))
        ok(f"{len(policies)} worker policy variants accepted by IAM's policy grammar (moto)")

        fixtures = sorted((ROOT.parent / "shared" / "fixtures" / "events").glob("*.json"))
        others = [json.loads(f.read_text()) for f in fixtures] or [{
            "source": "aws.redshift-data", "detail-type": "Redshift Data Statement Status Change",
            "detail": {"statementName": "nightly/load", "statementId": "x", "state": "FINISHED"}}]
        ours = dict(others[0]["detail"], statementName="redrelay/deploy-check/0123456789abcdef",
                    statementId="deploy-check-ours")
        entries = [{"Source": "aws.redshift-data", "DetailType": "Redshift Data Statement Status Change",
                    "Detail": json.dumps(ours), "EventBusName": rp["EventBusName"]}]
        for e in others:
            entries.append({"Source": e["source"], "DetailType": e["detail-type"],
                            "Detail": json.dumps(e["detail"]), "EventBusName": rp["EventBusName"]})
        entries.append({"Source": "aws.redshift", "DetailType": "Redshift Data Statement Status Change",
                        "Detail": json.dumps(ours), "EventBusName": rp["EventBusName"]})
        res = events.put_events(Entries=entries)
        expect(res["FailedEntryCount"] == 0, f"put {len(entries)} events (1 redrelay statement, "
               f"{len(others)} other statements, 1 other source)")
        got = []
        deadline = time.time() + 10
        while time.time() < deadline:
            msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for m in msgs.get("Messages", []):
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            if got and not msgs.get("Messages"):
                break
        ids = [g["detail"].get("statementId") for g in got]
        expect(ids == ["deploy-check-ours"], "only the redrelay/ statement's event reached the queue",
               f"got statement ids {ids}")

        if binary is None:
            print("  skip `redrelay setup` comparison: no up-to-date redrelay binary "
                  "(build with `cargo build`, or set REDRELAY_BIN)")
            return
        print(f"`redrelay setup` ({binary}) beside the stack, on the same moto:")
        run_env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "REDRELAY_"))}
        run_env.update(env)
        run_env.update({
            "AWS_ENDPOINT_URL_SQS": url, "AWS_ENDPOINT_URL_EVENTBRIDGE": url,
            "REDRELAY_QUEUE_NAME": "setup-events", "REDRELAY_RULE_NAME": "setup-statement-status",
            "REDRELAY_LOG": "warn",
        })
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([binary, "setup"], cwd=d, env=run_env, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail(f"redrelay setup exited {p.returncode}: {p.stderr.strip()}")
        report = json.loads(p.stdout)
        expect(report["event_pattern"] == rp["EventPattern"] == EXPECTED_PATTERN,
               "the pattern `redrelay setup` prints equals the template's rule EventPattern")
        stack_rule = events.describe_rule(Name=rp["Name"], EventBusName=rp["EventBusName"])
        setup_rule = events.describe_rule(Name=report["rule_name"], EventBusName=report["event_bus"])
        expect(json.loads(stack_rule["EventPattern"]) == json.loads(setup_rule["EventPattern"])
               and stack_rule["State"] == setup_rule["State"]
               and stack_rule.get("Description") == setup_rule.get("Description"),
               "the two rules have the same pattern, state and description")
        st = events.list_targets_by_rule(Rule=rp["Name"], EventBusName=rp["EventBusName"])["Targets"]
        tt = events.list_targets_by_rule(Rule=report["rule_name"], EventBusName=report["event_bus"])["Targets"]
        expect([t["Id"] for t in st] == [t["Id"] for t in tt] == [report["target_id"]],
               f"the two rules have the one target {report['target_id']!r}")
        names = ["MessageRetentionPeriod", "VisibilityTimeout", "ReceiveMessageWaitTimeSeconds", "RedrivePolicy",
                 "Policy"]

        def attrs(u):
            a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
            return {k: a.get(k) for k in names}

        a_stack, a_setup = attrs(queue_url), attrs(report["queue_url"])
        for name in names[:3]:
            expect(a_stack[name] == a_setup[name], f"queue {name}: {a_stack[name]} in both")
        rs, rt = json.loads(a_stack["RedrivePolicy"]), json.loads(a_setup["RedrivePolicy"])
        expect(int(rs["maxReceiveCount"]) == int(rt["maxReceiveCount"])
               and rs["deadLetterTargetArn"] == dlq_arn and rt["deadLetterTargetArn"] == report["dlq_arn"],
               f"queue RedrivePolicy: each to its DLQ after {rt['maxReceiveCount']} receives")
        ps, pt = json.loads(a_stack["Policy"]), json.loads(a_setup["Policy"])

        def shape(policy, qarn, rarn):
            text = json.dumps(policy["Statement"], sort_keys=True)
            return text.replace(qarn, "QUEUE").replace(rarn, "RULE")

        expect(shape(ps, queue_arn, rule_arn) == shape(pt, report["queue_arn"], report["rule_arn"]),
               "queue policies have the same statement (modulo ARNs)")
        d_stack = attrs(dlq_url)["MessageRetentionPeriod"]
        d_setup = attrs(report["dlq_url"])["MessageRetentionPeriod"]
        expect(d_stack == d_setup == "1209600", "dead-letter queue retention 14 days in both")
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
        log.close()
        os.unlink(log.name)


def sqs_attributes(props):
    """AWS::SQS::Queue properties -> SetQueueAttributes names."""
    out = {}
    for k, v in props.items():
        if k == "RedrivePolicy":
            out[k] = json.dumps(v)
        elif k == "SqsManagedSseEnabled":
            out[k] = str(v).lower()
        else:
            out[k] = str(v)
    return out


def fresh_binary():
    """REDRELAY_BIN, or the debug build if it is newer than every source."""
    explicit = os.environ.get("REDRELAY_BIN")
    if explicit:
        return str(Path(explicit).resolve())
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    binary = target / "debug" / "redrelay"
    if not binary.exists():
        return None
    sources = [ROOT / "Cargo.toml", ROOT / "Cargo.lock", *(ROOT / "src").rglob("*.rs")]
    newest = max(p.stat().st_mtime for p in sources)
    if binary.stat().st_mtime < newest:
        print(f"  note: {binary} is older than the sources")
        return None
    return str(binary)


def main():
    args = sys.argv[1:]
    if args not in ([], ["--no-moto"]):
        sys.exit("usage: check_deploy.py [--no-moto]")
    policies = check_template_static()
    check_manifest()
    check_unit_static()
    check_containerfile()
    check_docs()
    if args:
        print("moto stage skipped (--no-moto).")
    else:
        check_moto(os.environ.get("REDRELAY_VENV") or ROOT / ".venv", fresh_binary(), policies)
    print(f"{len(checked)} checks passed.")


if __name__ == "__main__":
    main()
