#!/usr/bin/env python3
"""Writes, on stdout, the YAML that `podman kube play` runs for the container
test (deploy/test_container.sh): the front end's Deployment and the model
ConfigMap exactly as deploy/k8s/overlays/demo renders them (no weights
volume; the overlay's patches are applied here by hand, and
check_manifests.py checks the overlay against the same expectations), with
these changes for podman 4.3:

  * no --expert_workers: podman has no StatefulSet, so the experts run in
    process (the expert workers' pod spec is not exercised at run time);
  * the image is the one under test, with imagePullPolicy Never;
  * with --host_ports, each container port is published on that host port
    (podman 4.3's kube play has no --publish; a cluster needs none).

Everything else (args, envFrom, env, ports, probes, securityContext with a
read-only root filesystem and no capabilities, the /tmp emptyDir, resources)
is the manifest's own.

Usage: deploy/kube_play_pod.py IMAGE [--host_ports=grpc:P,http:P,metrics:P] > pod.yaml
       deploy/kube_play_pod.py --probe_port     (the gRPC probe's port, for the test)
(needs python3-yaml)
"""
import copy
import os
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
base = os.path.join(here, "k8s", "base")


def docs(name):
    with open(os.path.join(base, name), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def main():
    server = next(d for d in docs("server.yaml") if d["kind"] == "Deployment")
    if sys.argv[1:] == ["--probe_port"]:
        probe = server["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]
        print(probe["port"])
        return
    image = sys.argv[1]
    host_ports = {}
    for arg in sys.argv[2:]:
        if not arg.startswith("--host_ports="):
            sys.exit(f"unknown argument {arg}")
        for pair in arg.split("=", 1)[1].split(","):
            name, port = pair.split(":")
            host_ports[name] = int(port)
    config = next(d for d in docs("weights.yaml") if d["kind"] == "ConfigMap")
    config = copy.deepcopy(config)
    config["data"]["FLAGS_preset"] = "demo"  # as overlays/demo sets it
    spec = server["spec"]["template"]["spec"]
    # overlays/demo: no weights volume, no /models mount.
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] != "weights"]
    for c in spec["containers"]:
        c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if m["mountPath"] != "/models"]
        c["args"] = [a for a in c["args"] if not a.startswith("--expert_workers=")]
        c["image"] = image
        c["imagePullPolicy"] = "Never"
        for p in c.get("ports", []):
            if p["name"] in host_ports:
                p["hostPort"] = host_ports.pop(p["name"])
    if host_ports:
        sys.exit(f"no container port named {sorted(host_ports)}")
    yaml.safe_dump_all([config, server], sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
