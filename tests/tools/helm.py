#!/usr/bin/env python3
"""The real Helm engine (Helm 4's Go SDK through PyPI's helm-python-sdk) for the tests:
lint, schema-checked render, NOTES. No helm binary is needed.

    helm.py lint CHART [-f VALUES]...           JSON report; exit 1 on errors
    helm.py template CHART [-f VALUES]... [--name N] [--namespace NS]
                                                 the manifests, as `helm template` prints them
                                                 (Helm's install order); exit 1 when values fail
                                                 the chart's schema or a template fails
    helm.py notes CHART [-f VALUES]...          the rendered NOTES.txt
"""

import argparse
import json
import sys

import helm_python as helm

# Helm's install order (pkg/release/util/kind_sorter.go), so the output applies in order.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService",
]


def merged_values(files):
    values = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            layer = helm.values_from_yaml(f.read())
        values = deep_merge(values, layer)
    return values


def deep_merge(base, layer):
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def documents(rendered):
    """(kind, source, text) of every non-empty document, in Helm's install order."""
    docs = []
    for source, text in rendered.items():
        if source.endswith("NOTES.txt"):
            continue
        for index, doc in enumerate(text.split("\n---")):
            body = doc.strip("\n")
            lines = [l for l in body.splitlines() if l.strip() and not l.lstrip().startswith("#")]
            if not lines:
                continue
            kind = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("kind:")), "")
            docs.append((kind, source, index, body))
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    docs.sort(key=lambda d: (rank.get(d[0], len(INSTALL_ORDER)), d[1], d[2]))
    return docs


def render(args):
    values = merged_values(args.values)
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=args.name, namespace=args.namespace, is_install=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["lint", "template", "notes"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="umpire")
    parser.add_argument("--namespace", default="umpire-system")
    args = parser.parse_args()
    try:
        if args.command == "lint":
            report = helm.lint(args.chart, merged_values(args.values), strict=True,
                               namespace=args.namespace)
            print(json.dumps(report, indent=2))
            failed = report.get("errors") or any(m.get("severity", 0) >= 2 for m in report.get("messages", []))
            return 1 if failed else 0
        rendered = render(args)
        if args.command == "notes":
            print(next((t for s, t in rendered.items() if s.endswith("NOTES.txt")), ""))
            return 0
        for _, source, _, body in documents(rendered):
            print(f"---\n# Source: {source}\n{body}")
        return 0
    except helm.HelmError as error:
        print(f"helm: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
