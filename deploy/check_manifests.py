#!/usr/bin/env python3
"""Checks moe-serve's deployment files against what the binaries really do.

    python3 deploy/check_manifests.py            # all checks; exit 0 when all pass
    python3 deploy/check_manifests.py --schema   # also require the schema check
    python3 deploy/check_manifests.py --deploy-dir /tmp/copy/deploy

Reads deploy/compose.yaml, deploy/prometheus/prometheus.yml and every YAML in
deploy/k8s/, and asks the built binaries (--bin-dir, default ../build) what
they accept: each program's flags and defaults from its --helpfull, every
container's command line and FLAGS_<flag> environment (which
deploy/entrypoint.sh passes on with --fromenv) through the program's own
parser (--only_check_args), and the presets from `moe_export_preset --list
--list_format=json`. It checks that every container's flags exist and parse,
that ports, probes and health checks hit the ports the processes
listen on, that grace periods outlast the drain, that --expert_workers names
workers that exist and host exactly the experts it assigns them, that the
model flags agree between the front end and its workers, the security
context, Service selectors and target ports, the HPA target, the volumes.

Schema check (optional): with Node.js and the npm package kubernetes-models
installed (`npm install -g kubernetes-models@5.1.0`, works offline
afterwards), every Kubernetes object is also validated against the
Kubernetes OpenAPI schema, and fields the schema does not know (typos such
as `livenesProbe`) are reported. With kubectl on the PATH, `kubectl
kustomize` must render deploy/k8s. Both run when available; --schema makes
the schema check mandatory, --no-schema skips both.

Standard library plus PyYAML (Debian: python3-yaml).
"""

import argparse
import copy
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.stderr.write(
        "check_manifests: the Python module 'yaml' is missing; as root run:\n"
        "  apt-get update && apt-get install -y --no-install-recommends python3-yaml\n")
    sys.exit(1)

ENTRYPOINT = "/usr/local/bin/moe-entrypoint"
# Where each program lands under the build folder.
PROGRAM_DIRS = {
    "moe_server": "server",
    "moe_expert_worker": "server",
    "moe_client": "client",
    "moe_loadgen": "client",
    "moe_export_preset": "tools",
}
# absl's usage flags, which --helpfull does not list (absl/flags/usage_config).
ABSL_USAGE_FLAGS = ("help", "helpfull", "helpshort", "helppackage", "version",
                    "only_check_args", "helpon", "helpmatch")
CLIENT_COMMANDS = {"health", "metadata", "infer", "stats"}
MODEL_FLAGS = ("preset", "seed", "model_dir", "layer", "dtype")
RUN_AS_USER = 10001
# After the drain the server waits up to 2 s for clients to go quiet.
QUIET_S = 2


# --------------------------------------------------------------------------
# Results


class Checker:
    def __init__(self):
        self.count = 0
        self.failures = []
        self.notes = []

    def check(self, ok, where, message):
        self.count += 1
        msg = f"{where}: {message}"
        if not ok and msg not in self.failures:  # YAML aliases repeat a value
            self.failures.append(msg)
        return ok

    def fail(self, where, message):
        return self.check(False, where, message)

    def note(self, message):
        self.notes.append(message)


# --------------------------------------------------------------------------
# What the binaries accept, asked of them


def run_binary(argv, env=None, timeout=60):
    """Runs a moe-serve binary; returns (exit code, stdout + stderr)."""
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, str(e)
    return out.returncode, out.stdout + out.stderr


class Flags:
    """The flags one program defines, as its --helpfull lists them: name -> default."""

    HELP_LINE = re.compile(r"^\s+--([A-Za-z0-9_]+) \(.*\); default: (.*);$", re.M)

    def __init__(self, program, binary):
        self.program = program
        self.binary = binary
        self.defs = {}
        code, text = run_binary([binary, "--helpfull"])
        self.error = None if code == 0 else f"{binary} --helpfull exited {code}: {text[-300:]}"
        for m in self.HELP_LINE.finditer(text):
            self.defs[m.group(1)] = m.group(2)

    def known(self, name):
        return name in self.defs or name in ABSL_USAGE_FLAGS

    def is_bool(self, name):
        return self.defs.get(name) in ("true", "false")

    def default(self, name):
        """The default as --helpfull prints it (a string); None for an unknown flag."""
        return self.defs.get(name)

    def suggest(self, name):
        close = difflib.get_close_matches(name, list(self.defs), n=1)
        return f" (did you mean --{close[0]}?)" if close else ""

    def check_args(self, argv, env):
        """The program's own verdict on argv and FLAGS_ env: None, or its error text."""
        names = sorted(k[len("FLAGS_"):] for k in env)
        full = [self.binary] + argv + ["--only_check_args"]
        if names:
            full.append("--fromenv=" + ",".join(names))
        code, text = run_binary(full, env={**os.environ, **env})
        if code == 0:
            return None
        lines = [l for l in text.splitlines() if l.strip()]
        return "; ".join(lines[-3:]) or f"exit {code}"


def binary_path(bin_dir, program):
    return os.path.join(bin_dir, PROGRAM_DIRS[program], program)


def load_program_flags(ck, bin_dir):
    flags = {}
    for program in PROGRAM_DIRS:
        path = binary_path(bin_dir, program)
        if not ck.check(os.access(path, os.X_OK), "binaries",
                        f"{path} is missing: build first (cmake --build build), or pass "
                        "--bin-dir"):
            continue
        f = Flags(program, path)
        if ck.check(f.error is None and f.defs, "binaries",
                    f.error or f"{path} --helpfull lists no flags"):
            flags[program] = f
    return flags


def preset_expert_counts(ck, bin_dir):
    """Preset name -> number of routed experts (0: a dense FFN), from moe_export_preset."""
    path = binary_path(bin_dir, "moe_export_preset")
    if not os.access(path, os.X_OK):
        return {}
    code, text = run_binary([path, "--list", "--list_format=json"])
    try:
        presets = json.loads(text) if code == 0 else None
    except json.JSONDecodeError:
        presets = None
    if not ck.check(isinstance(presets, list), "binaries",
                    f"{path} --list --list_format=json did not print a JSON list: {text[-300:]}"):
        return {}
    return {p["name"]: int(p["experts"]) for p in presets}


# --------------------------------------------------------------------------
# Command lines


DYNAMIC = object()  # a value the shell computes at run time


class Invocation:
    """What one container runs: the program and its effective flags."""

    def __init__(self, where, program, flags, values, positionals):
        self.where = where
        self.program = program
        self.flags = flags
        self.values = values  # flag -> value (command line over FLAGS_ env)
        self.positionals = positionals

    def get(self, name):
        if name in self.values:
            return self.values[name]
        return self.flags.default(name)

    def get_int(self, name):
        v = self.get(name)
        if v is DYNAMIC or v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    def listen_ports(self):
        """name -> port the process listens on (http and metrics -1: off)."""
        if self.program == "moe_server":
            ports = {"grpc": self.get_int("grpc_port"), "http": self.get_int("http_port"),
                     "metrics": self.get_int("metrics_port")}
        elif self.program == "moe_expert_worker":
            port = self.get_int("port")  # the deprecated name wins when set
            ports = {"grpc": port if port is not None and port >= 0
                     else self.get_int("grpc_port"),
                     "metrics": self.get_int("metrics_port")}
        else:
            return {}
        return {k: v for k, v in ports.items() if v is not None and v > 0}


def parse_invocation(ck, where, program, argv, env, all_flags):
    """Checks a program's argv and FLAGS_ environment; returns an Invocation."""
    flags = all_flags.get(program)
    if flags is None:
        ck.fail(where, f"unknown program '{program}' (known: {', '.join(sorted(all_flags))})")
        return None
    values, positionals = {}, []
    static_env, static_argv = {}, []  # what the program itself is asked to parse
    # FLAGS_<flag> environment: deploy/entrypoint.sh passes --fromenv=<names>,
    # which fails on a name the program does not define.
    for key, val in sorted(env.items()):
        if not key.startswith("FLAGS_"):
            continue
        name = key[len("FLAGS_"):]
        if not ck.check(name in flags.defs, where,
                        f"environment {key}: {program} has no flag --{name}{flags.suggest(name)}"):
            continue
        if val is None:
            continue
        values[name] = DYNAMIC if "$" in val else val
        if "$" not in val:
            static_env[key] = val
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            static_argv.extend(argv[i - 1:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            static_argv.append(arg)
            continue
        body = arg.lstrip("-")
        name, eq, val = body.partition("=")
        if not flags.known(name) and not eq and name.startswith("no") and flags.is_bool(name[2:]):
            name, val, eq = name[2:], "false", "="
        if not ck.check(flags.known(name), where,
                        f"{program} has no flag --{name}{flags.suggest(name)}"):
            continue
        if not eq:
            if flags.is_bool(name):
                val = "true"
            elif i < len(argv):
                val = argv[i]
                i += 1
            else:
                ck.fail(where, f"--{name} needs a value")
                continue
        if "$" in val:
            values[name] = DYNAMIC
            continue
        values[name] = val
        static_argv.append(f"--{name}={val}")
    # The known flags with static values, through the program's own parser.
    verdict = flags.check_args(static_argv, static_env)
    ck.check(verdict is None, where, f"{program} refuses this command line: {verdict}")
    if program == "moe_client":
        ck.check(len(positionals) == 1 and positionals[0] in CLIENT_COMMANDS, where,
                 f"moe_client needs exactly one command of {sorted(CLIENT_COMMANDS)}, "
                 f"got {positionals}")
    else:
        ck.check(not positionals, where,
                 f"{program} takes no positional arguments, got {positionals} "
                 "(a misspelt program name is passed to moe_server as one)")
    return Invocation(where, program, flags, values, positionals)


def entrypoint_split(args):
    """deploy/entrypoint.sh: an optional PROGRAM first, else moe_server."""
    if args and args[0] in PROGRAM_DIRS:
        return args[0], list(args[1:])
    return "moe_server", list(args)


def shell_parts(argv):
    """(script, $0, positional) when argv is `sh -c SCRIPT [$0 [ARGS...]]`."""
    if len(argv) >= 3 and os.path.basename(argv[0]) in ("sh", "bash", "dash") and argv[1] == "-c":
        return argv[2], (argv[3] if len(argv) > 3 else "sh"), list(argv[4:])
    return None


def static_script_args(ck, where, script, positional):
    """The program and argv a start script execs, read from its text."""
    m = re.search(r"\bexec\s+" + re.escape(ENTRYPOINT) + r"\b([^\n;&|]*)", script)
    if not ck.check(m is not None, where,
                    f"the start script must `exec {ENTRYPOINT} PROGRAM ...` so that the "
                    "program is PID 1 and receives SIGTERM"):
        return None, None
    try:
        tokens = shlex.split(m.group(1))
    except ValueError as e:
        ck.fail(where, f"cannot split the exec line of the start script: {e}")
        return None, None
    argv = []
    for t in tokens:
        if t in ("$@", "${@}"):
            argv.extend(positional)
        else:
            argv.append(t)
    return entrypoint_split(argv)


def run_start_script(ck, where, script, dollar0, positional, env):
    """Runs a start script with the program replaced by printf; returns its argv."""
    probe = script.replace(ENTRYPOINT, "printf '%s\\n'")
    full_env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    full_env.update({k: v for k, v in env.items() if v is not None})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = subprocess.run(["/bin/sh", "-c", probe, dollar0, *positional], env=full_env,
                                 cwd=tmp, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            ck.fail(where, "the start script did not finish in 10 s when run with printf")
            return None, None
    if not ck.check(res.returncode == 0, where,
                    f"the start script fails (exit {res.returncode}) with "
                    f"HOSTNAME={env.get('HOSTNAME')}: {res.stderr.strip()}"):
        return None, None
    return entrypoint_split(res.stdout.splitlines())


def parse_expert_list(text, num_experts=None):
    """model/expert_ranges.cc's ParseExpertList: 'N', 'A-B', comma lists."""
    ids = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", piece)
        if not m:
            raise ValueError(f"expert list '{text}': bad piece '{piece}' (use N or A-B)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if lo > hi:
            raise ValueError(f"expert list '{text}': bad piece '{piece}'")
        if num_experts is not None and hi >= num_experts:
            raise ValueError(f"expert list '{text}': '{piece}' is outside 0..{num_experts - 1}")
        ids.extend(range(lo, hi + 1))
    if not ids:
        raise ValueError(f"expert list '{text}' is empty")
    if len(set(ids)) != len(ids):
        raise ValueError(f"expert list '{text}' repeats an expert")
    return sorted(ids)


def fmt_experts(ids):
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)


def parse_expert_workers(spec, num_experts):
    """workers/remote_expert_backend.cc's ParseExpertWorkerSpec -> [(experts, [(host, port)])]."""
    shards, taken = [], set()
    for part in spec.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"'{part}' is not EXPERTS=HOST:PORT[,HOST:PORT...]")
        experts_text, addrs = part.split("=", 1)
        experts = parse_expert_list(experts_text, num_experts)
        for e in experts:
            if e in taken:
                raise ValueError(f"expert {e} is in two shards")
            taken.add(e)
        addresses = []
        for a in addrs.split(","):
            a = a.strip()
            if not a:
                continue
            host, sep, port = a.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"address '{a}' needs host:port")
            addresses.append((host, int(port)))
        if not addresses:
            raise ValueError(f"shard '{experts_text}' has no address")
        shards.append((experts, addresses))
    if not shards:
        raise ValueError("no shard given")
    return shards


def check_model_agreement(ck, where, server, worker):
    for name in MODEL_FLAGS:
        a, b = server.get(name), worker.get(name)
        if a is DYNAMIC or b is DYNAMIC:
            continue
        ck.check(str(a) == str(b), where,
                 f"--{name} differs: the server has {a!r}, worker {worker.where} has {b!r} "
                 "(the server refuses workers of another model, preset, seed, layer or dtype)")


def expert_worker_shards(ck, where, inv, presets):
    """(shards, number of experts or None) of the server's --expert_workers,
    shards as [(experts, [(host, port)])]; shards is None when it has none,
    it comes from the environment at run time, or it does not parse (then
    reported)."""
    spec = inv.get("expert_workers")
    if not spec or spec is DYNAMIC:
        return None, None
    n_exp = num_experts_of(ck, where, inv, presets)
    try:
        return parse_expert_workers(spec, n_exp), n_exp
    except ValueError as e:
        ck.fail(where, f"--expert_workers: {e}")
        return None, None


def num_experts_of(ck, where, inv, presets):
    if inv.get("model_dir"):
        return None  # only known from the checkpoint
    preset = inv.get("preset")
    if preset is DYNAMIC or preset not in presets:
        ck.check(preset is DYNAMIC or not presets, where, f"unknown preset '{preset}'")
        return None
    return presets[preset]


# --------------------------------------------------------------------------
# Compose


_DEPLOY_PARENT = [None]


def shown(path):
    """A path as the messages show it: relative to the deploy folder's parent."""
    return os.path.relpath(path, _DEPLOY_PARENT[0] or os.getcwd())


VAR_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}"
                    r"|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(ck, where, value):
    """Compose interpolation with every variable unset (the defaults)."""
    if isinstance(value, dict):
        return {k: interpolate(ck, where, v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(ck, where, v) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(7)
        if m.group(3) is not None:
            ck.check(m.group(4) != "", where,
                     f"'{m.group(0)}': podman-compose 1.0.3 leaves a variable with an empty "
                     "default unsubstituted; give it a non-empty default")
            return m.group(4)
        ck.fail(where, f"'{m.group(0)}' has no default: podman-compose makes it empty, docker "
                       f"compose warns; write ${{{name}:-DEFAULT}}")
        return ""

    return VAR_RE.sub(sub, value)


def parse_duration(text):
    """Compose durations ('45s', '1m30s', '500ms') in seconds; None if malformed."""
    if isinstance(text, (int, float)):
        return float(text)
    total, pos = 0.0, 0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def as_list(cmd):
    if cmd is None:
        return None
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


def env_dict(env):
    if env is None:
        return {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env:
        k, sep, v = str(item).partition("=")
        out[k] = v if sep else None
    return out


def is_moe_image(image, build):
    if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith("deploy/Dockerfile"):
        return True
    return bool(image) and "moe-serve" in str(image).rsplit("/", 1)[-1]


def check_compose(ck, path, deploy_dir, repo, all_flags, presets):
    rel = shown(path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not ck.check(isinstance(raw, dict) and isinstance(raw.get("services"), dict), rel,
                    "no `services:` mapping"):
        return
    doc = interpolate(ck, rel, raw)
    services = doc["services"]
    base = os.path.dirname(path)
    invocations = {}
    for name, svc in services.items():
        where = f"{rel}: service '{name}'"
        if not ck.check(isinstance(svc, dict), where, "is not a mapping"):
            continue
        image, build = svc.get("image"), svc.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build is not None:
            ctx = os.path.normpath(os.path.join(base, build.get("context", ".")))
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            ck.check(os.path.isfile(dockerfile), where,
                     f"build: {shown(dockerfile)} does not exist")
        deps = svc.get("depends_on") or []
        for dep in (list(deps) if isinstance(deps, (dict, list)) else [deps]):
            ck.check(dep in services, where, f"depends_on names no service '{dep}'")
        if not is_moe_image(image, build):
            continue
        ck.check(image is not None, where,
                 "needs `image:` next to `build:` so that every service shares one build")
        entry = as_list(svc.get("entrypoint"))
        command = as_list(svc.get("command")) or []
        env = env_dict(svc.get("environment"))
        if entry is None:
            program, argv = entrypoint_split(command)
        else:
            parts = shell_parts(entry)
            if parts is not None:
                script, _, positional = parts
                program, argv = static_script_args(ck, where, script, positional + command)
            elif entry and entry[0] == ENTRYPOINT:
                program, argv = entrypoint_split(entry[1:] + command)
            else:
                ck.fail(where, f"entrypoint {entry} bypasses {ENTRYPOINT}")
                continue
        if program is None:
            continue
        inv = parse_invocation(ck, where, program, argv, env, all_flags)
        if inv is None:
            continue
        invocations[name] = inv
        ports = inv.listen_ports()
        if program in ("moe_server", "moe_expert_worker"):
            check_compose_server_like(ck, where, svc, inv, ports, all_flags)
    servers = {n: i for n, i in invocations.items() if i.program == "moe_server"}
    workers = {n: i for n, i in invocations.items() if i.program == "moe_expert_worker"}
    ck.check(bool(servers), rel, "no service runs moe_server")
    named_workers = set()
    for name, inv in servers.items():
        where = f"{rel}: service '{name}'"
        shards, n_exp = expert_worker_shards(ck, where, inv, presets)
        if shards is None:
            continue
        deps = services[name].get("depends_on") or []
        for experts, addresses in shards:
            for host, port in addresses:
                named_workers.add(host)
                if not ck.check(host in workers, where,
                                f"--expert_workers names '{host}', which is no service "
                                f"running moe_expert_worker (those: {sorted(workers)})"):
                    continue
                w = workers[host]
                ck.check(port == w.listen_ports().get("grpc"), where,
                         f"--expert_workers dials {host}:{port}, but '{host}' listens on "
                         f"--grpc_port={w.listen_ports().get('grpc')}")
                check_worker_experts(ck, where, host, experts, w)
                check_model_agreement(ck, where, inv, w)
                ck.check(host in deps, where, f"should depend_on '{host}' (start order)")
        if n_exp:
            covered = sorted(e for experts, _ in shards for e in experts)
            local = sorted(set(range(n_exp)) - set(covered))
            if local:
                ck.note(f"{where}: experts {fmt_experts(local)} run in the server process")
    for host in sorted(workers):
        ck.check(host in named_workers, f"{rel}: service '{host}'",
                 "runs moe_expert_worker but no server's --expert_workers names it")
    for name, inv in invocations.items():
        if inv.program != "moe_loadgen":
            continue
        where = f"{rel}: service '{name}'"
        profiles = services[name].get("profiles") or []
        ck.check(bool(profiles), where,
                 "a load test should sit under `profiles:` so `up` does not start it")
        check_client_address(ck, where, inv, servers, "service")
    check_prometheus(ck, deploy_dir, services, invocations)


def check_worker_experts(ck, where, host, experts, worker):
    hosted = worker.get("experts")
    if hosted is DYNAMIC:
        return
    try:
        ids = parse_expert_list(hosted or "")
    except ValueError as e:
        ck.fail(worker.where, f"--experts: {e}")
        return
    ck.check(ids == experts, where,
             f"--expert_workers gives {host} experts {fmt_experts(experts)}, but it hosts "
             f"--experts={fmt_experts(ids)} (the server refuses a worker whose experts differ)")


def check_client_address(ck, where, inv, servers, what):
    addr = inv.get("address")
    if addr is DYNAMIC or not addr:
        return
    host, _, port = addr.rpartition(":")
    if not ck.check(host in servers, where,
                    f"--address={addr}: '{host}' is no {what} running moe_server "
                    f"({sorted(servers)})"):
        return
    srv = servers[host]
    ck.check(port.isdigit() and int(port) == srv.listen_ports().get("grpc"), where,
             f"--address={addr}, but '{host}' serves gRPC on {srv.get('grpc_port')}")
    ck.check(inv.get("model") == srv.get("model_name"), where,
             f"--model={inv.get('model')}, but the server's --model_name is "
             f"{srv.get('model_name')}")


def check_compose_server_like(ck, where, svc, inv, ports, all_flags):
    drain = inv.get_int("drain_timeout_s")
    grace = svc.get("stop_grace_period")
    secs = parse_duration(str(grace)) if grace is not None else 10.0
    ck.check(secs is not None, where, f"stop_grace_period '{grace}' is not a duration")
    if drain is not None and secs is not None:
        ck.check(secs >= drain + QUIET_S, where,
                 f"stop_grace_period {secs:g}s is shorter than --drain_timeout_s={drain} plus "
                 f"{QUIET_S} s: the drain would be cut by SIGKILL"
                 + (" (compose's default is 10 s)" if grace is None else ""))
    published = set()
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            published.add(int(p.get("target")))
            continue
        spec = str(p).split("/")[0]
        target = spec.rsplit(":", 1)[-1]
        if ck.check(target.isdigit(), where, f"cannot read the container port of '{p}'"):
            published.add(int(target))
    exposed = {int(str(e).split("/")[0]) for e in (svc.get("expose") or [])}
    open_ports = published | exposed
    for port in sorted(open_ports):
        ck.check(port in ports.values(), where,
                 f"port {port} is published/exposed but {inv.program} listens on "
                 f"{sorted(ports.values())}")
    for name, port in ports.items():
        ck.check(port in open_ports, where,
                 f"{inv.program} listens on {port} ({name}) but the service neither "
                 "publishes nor exposes it")
    hc = svc.get("healthcheck")
    if not ck.check(isinstance(hc, dict) and hc.get("test"), where,
                    "needs a healthcheck (moe_client health --address=localhost:PORT)"):
        return
    test = hc["test"]
    if isinstance(test, str):
        argv = shlex.split(test)
    elif test[0] == "CMD":
        argv = list(test[1:])
    elif test[0] == "CMD-SHELL":
        argv = shlex.split(test[1])
    else:
        ck.fail(where, f"healthcheck test {test} is disabled or unreadable")
        return
    program = os.path.basename(argv[0]) if argv else ""
    if not ck.check(program == "moe_client", where,
                    f"healthcheck should run moe_client health, runs {argv}"):
        return
    hinv = parse_invocation(ck, where + " healthcheck", "moe_client", argv[1:], {}, all_flags)
    if hinv is None:
        return
    host, _, port = str(hinv.get("address")).rpartition(":")
    ck.check(host in ("localhost", "127.0.0.1", "[::1]"), where,
             f"healthcheck --address={hinv.get('address')} should be localhost")
    ck.check(port.isdigit() and int(port) == ports.get("grpc"), where,
             f"healthcheck --address={hinv.get('address')}, but {inv.program} serves gRPC "
             f"on {ports.get('grpc')}")
    ck.check(hinv.positionals == ["health"], where, "healthcheck should be `moe_client health`")


def check_prometheus(ck, deploy_dir, services, invocations):
    path = os.path.join(deploy_dir, "prometheus", "prometheus.yml")
    rel = shown(path)
    if not ck.check(os.path.isfile(path), rel, "missing"):
        return
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    scraped = set()
    for job in conf.get("scrape_configs") or []:
        ck.check(job.get("metrics_path", "/metrics") == "/metrics", rel,
                 f"job {job.get('job_name')}: the binaries serve /metrics")
        for sc in job.get("static_configs") or []:
            for target in sc.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                if host in ("localhost", "127.0.0.1"):
                    continue
                where = f"{rel}: job {job.get('job_name')} target {target}"
                if not ck.check(host in invocations, where,
                                f"'{host}' is no compose service running a moe program"):
                    continue
                metrics = invocations[host].listen_ports().get("metrics")
                ck.check(port.isdigit() and int(port) == metrics, where,
                         f"'{host}' serves /metrics on {metrics}")
                scraped.add(host)
    for name, inv in invocations.items():
        if inv.listen_ports().get("metrics"):
            ck.check(name in scraped, rel, f"does not scrape service '{name}'")
    prom = services.get("prometheus")
    if ck.check(prom is not None, "compose", "no `prometheus` service"):
        build = prom.get("build")
        ctx = build.get("context") if isinstance(build, dict) else build
        ck.check(ctx is not None and os.path.normpath(os.path.join(deploy_dir, str(ctx)))
                 == os.path.dirname(path), "compose: service 'prometheus'",
                 "should be built from deploy/prometheus (which holds prometheus.yml)")


# --------------------------------------------------------------------------
# Kubernetes


K8S_VAR_RE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def k8s_expand(text, env):
    """Kubernetes' $(VAR) expansion of command and args."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        v = env.get(m.group(1))
        return v if v is not None else m.group(0)
    return K8S_VAR_RE.sub(sub, text)


class K8s:
    def __init__(self, ck, k8s_dir):
        self.ck = ck
        self.dir = k8s_dir
        self.objects = []  # (file, doc)
        self.kustomization = None
        self.namespace_override = None
        for name in sorted(os.listdir(k8s_dir)):
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(k8s_dir, name)
            with open(path, encoding="utf-8") as f:
                try:
                    docs = [d for d in yaml.safe_load_all(f) if d is not None]
                except yaml.YAMLError as e:
                    ck.fail(f"deploy/k8s/base/{name}", f"not valid YAML: {e}")
                    continue
            for d in docs:
                if not ck.check(isinstance(d, dict) and d.get("kind") and d.get("apiVersion"),
                                f"deploy/k8s/base/{name}", "a document without apiVersion/kind"):
                    continue
                if d["kind"] != "Kustomization" and not ck.check(
                        isinstance(d.get("metadata"), dict) and d["metadata"].get("name"),
                        f"deploy/k8s/base/{name}", f"a {d['kind']} without metadata.name"):
                    continue
                if d["kind"] == "Kustomization":
                    self.kustomization = (name, d)
                else:
                    self.objects.append((name, d))
        if self.kustomization:
            self.namespace_override = self.kustomization[1].get("namespace")

    def ns(self, doc):
        if doc["kind"] == "Namespace":
            return None
        return self.namespace_override or (doc.get("metadata") or {}).get("namespace") or "default"

    def find(self, kind, ns, name):
        for f, d in self.objects:
            if d["kind"] == kind and self.ns(d) == ns and d["metadata"].get("name") == name:
                return f, d
        return None

    def of_kind(self, *kinds):
        return [(f, d) for f, d in self.objects if d["kind"] in kinds]


def where_of(f, d):
    return f"deploy/k8s/base/{f}: {d['kind']} {d['metadata'].get('name')}"


def pod_template(d):
    return ((d.get("spec") or {}).get("template") or {})


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_env(k8s, ns, c, where):
    env = {}
    ck = k8s.ck
    for src in c.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref:
            found = k8s.find("ConfigMap", ns, ref.get("name"))
            if ck.check(found is not None or ref.get("optional"), where,
                        f"envFrom names ConfigMap '{ref.get('name')}', which does not exist"):
                if found:
                    for k, v in (found[1].get("data") or {}).items():
                        env[src.get("prefix", "") + k] = str(v)
        elif src.get("secretRef"):
            ck.note(f"{where}: envFrom secretRef not inspected")
    for e in c.get("env") or []:
        env[e["name"]] = None if "valueFrom" in e else k8s_expand(str(e.get("value", "")), env)
    return env


def probe_port(probe, c):
    """(type, port number) a probe hits; named ports resolved in the container."""
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            port = probe[kind].get("port")
            if isinstance(port, str) and not port.isdigit():
                for p in c.get("ports") or []:
                    if p.get("name") == port:
                        return kind, p.get("containerPort")
                return kind, None
            return kind, int(port)
    return None, None


def prestop_sleep(c):
    pre = ((c.get("lifecycle") or {}).get("preStop") or {})
    if "sleep" in pre:
        return int(pre["sleep"].get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep" and cmd[1].isdigit():
        return int(cmd[1])
    if cmd:
        m = re.search(r"\bsleep\s+(\d+)", " ".join(cmd))
        return int(m.group(1)) if m else 0
    return 0


def k8s_invocations(k8s, f, d, all_flags):
    """[(pod name or None, container, Invocation)] for every moe container of a workload."""
    ck = k8s.ck
    ns = k8s.ns(d)
    spec = pod_template(d).get("spec") or {}
    out = []
    for c in spec.get("containers") or []:
        if "moe-serve" not in str(c.get("image", "")).rsplit("/", 1)[-1]:
            continue
        where = f"{where_of(f, d)} container {c.get('name')}"
        env = container_env(k8s, ns, c, where)
        command = [k8s_expand(str(x), env) for x in (c.get("command") or [])]
        args = [k8s_expand(str(x), env) for x in (c.get("args") or [])]
        if not command:
            program, argv = entrypoint_split(args)
            out.append((None, c, parse_invocation(ck, where, program, argv, env, all_flags)))
            continue
        full = command + args
        parts = shell_parts(full)
        if parts is None:
            if full[0] == ENTRYPOINT:
                program, argv = entrypoint_split(full[1:])
                out.append((None, c, parse_invocation(ck, where, program, argv, env, all_flags)))
            else:
                ck.fail(where, f"command {command} bypasses {ENTRYPOINT}")
            continue
        script, dollar0, positional = parts
        program, argv = static_script_args(ck, where, script, positional)
        if program is None:
            continue
        if d["kind"] == "StatefulSet" and "HOSTNAME" in script:
            # The script derives its shard from the pod's ordinal: run it once
            # per pod, with the program replaced by printf.
            replicas = int((d.get("spec") or {}).get("replicas", 1))
            for ordinal in range(replicas):
                pod = f"{d['metadata']['name']}-{ordinal}"
                penv = dict(env, HOSTNAME=pod)
                pwhere = f"{where} (pod {pod})"
                program, argv = run_start_script(ck, pwhere, script, dollar0, positional, penv)
                if program is not None:
                    out.append((pod, c, parse_invocation(ck, pwhere, program, argv, env,
                                                         all_flags)))
        else:
            out.append((None, c, parse_invocation(ck, where, program, argv, env, all_flags)))
    return [(p, c, inv) for p, c, inv in out if inv is not None]


def check_pod_basics(ck, k8s, f, d, c, inv, hpa_targets):
    where = f"{where_of(f, d)} container {c.get('name')}"
    tmpl = pod_template(d)
    spec = tmpl.get("spec") or {}
    ports = inv.listen_ports()
    # Container ports are the ports the process listens on.
    declared = {p.get("containerPort"): p.get("name") for p in c.get("ports") or []}
    for port, pname in declared.items():
        ck.check(port in ports.values(), where,
                 f"containerPort {port} ({pname}) is not a port {inv.program} listens on "
                 f"({', '.join(f'{k} {v}' for k, v in ports.items())})")
    for name, port in ports.items():
        ck.check(port in declared, where,
                 f"{inv.program} listens on {port} ({name}) but no containerPort says so")
        if port in declared:
            ck.check(declared[port] == name, where,
                     f"containerPort {port} should be named '{name}' (named '{declared[port]}')")
    # Probes: grpc.health.v1 on the gRPC port.
    for kind, required in (("readinessProbe", True), ("livenessProbe", True),
                           ("startupProbe", False)):
        probe = c.get(kind)
        if probe is None:
            ck.check(not required, where, f"needs a {kind} (grpc on port {ports.get('grpc')})")
            continue
        ptype, pport = probe_port(probe, c)
        if ptype == "grpc":
            ck.check(pport == ports.get("grpc"), where,
                     f"{kind} checks gRPC health on port {pport}, but {inv.program} serves "
                     f"gRPC on {ports.get('grpc')}")
            ck.check(not probe["grpc"].get("service"), where,
                     f"{kind}: the binaries report health for the empty service name only")
        elif ptype == "httpGet":
            http_ports = [ports.get("metrics"), ports.get("http")]
            ck.check(pport in http_ports, where,
                     f"{kind} is an HTTP GET on {pport}; only --metrics_port "
                     f"({ports.get('metrics')}) and moe_server's --http_port "
                     f"({ports.get('http')}) speak HTTP")
        else:
            ck.check(ptype is not None and pport in ports.values(), where,
                     f"{kind} hits port {pport}, where {inv.program} does not listen")
    drain = inv.get_int("drain_timeout_s")
    live = c.get("livenessProbe") or {}
    if drain is not None and live:
        window = int(live.get("periodSeconds", 10)) * int(live.get("failureThreshold", 3))
        ck.check(window >= drain, where,
                 f"livenessProbe kills after {window} s of NOT_SERVING, shorter than the "
                 f"drain (--drain_timeout_s={drain}), during which health is NOT_SERVING")
    # Grace period.
    grace = int(spec.get("terminationGracePeriodSeconds", 30))
    sleep = prestop_sleep(c)
    if drain is not None:
        ck.check(grace > drain + QUIET_S + sleep, where,
                 f"terminationGracePeriodSeconds={grace} must exceed the preStop sleep ({sleep} s)"
                 f" + --drain_timeout_s={drain} + {QUIET_S} s for clients to go quiet")
    # Security context (container settings win over the pod's).
    psc, csc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    user = csc.get("runAsUser", psc.get("runAsUser"))
    ck.check(non_root is True, where, "securityContext.runAsNonRoot must be true")
    ck.check(user == RUN_AS_USER, where,
             f"securityContext.runAsUser must be {RUN_AS_USER} (the image's user), is {user}")
    ck.check(csc.get("readOnlyRootFilesystem") is True, where,
             "securityContext.readOnlyRootFilesystem should be true")
    ck.check(csc.get("allowPrivilegeEscalation") is False, where,
             "securityContext.allowPrivilegeEscalation should be false")
    ck.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), where,
             "securityContext.capabilities.drop should contain ALL")
    # Resources.
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    ck.check("cpu" in req and "memory" in req, where, "needs resources.requests cpu and memory")
    ck.check("memory" in lim, where, "needs resources.limits.memory")
    if (d["kind"], d["metadata"]["name"]) in hpa_targets:
        ck.check("cpu" in req, where, "the HPA scales on CPU utilisation, which needs "
                                      "resources.requests.cpu")
    # Prometheus annotations.
    ann = (tmpl.get("metadata") or {}).get("annotations") or {}
    if ports.get("metrics"):
        ck.check(str(ann.get("prometheus.io/scrape")) == "true", where,
                 "pod template lacks the annotation prometheus.io/scrape: \"true\"")
        ck.check(str(ann.get("prometheus.io/port")) == str(ports["metrics"]), where,
                 f"annotation prometheus.io/port is {ann.get('prometheus.io/port')}, "
                 f"--metrics_port is {ports['metrics']}")
    # Volumes.
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    mounts = c.get("volumeMounts") or []
    for m in mounts:
        ck.check(m.get("name") in vols, where, f"volumeMount '{m.get('name')}' names no volume")
    model_dir = inv.get("model_dir")
    if model_dir and model_dir is not DYNAMIC:
        ck.check(any(model_dir == m.get("mountPath") or
                     model_dir.startswith(m.get("mountPath", "").rstrip("/") + "/")
                     for m in mounts), where,
                 f"--model_dir={model_dir} is on no mounted volume")
    ck.check(any(m.get("mountPath") == "/models" for m in mounts), where,
             "should mount the weights volume at /models")


def check_k8s(ck, k8s_dir, all_flags, presets):
    k8s = K8s(ck, k8s_dir)
    # Kustomization lists every manifest, and only existing ones.
    files = sorted(n for n in os.listdir(k8s_dir) if n.endswith((".yaml", ".yml")))
    if ck.check(k8s.kustomization is not None, "deploy/k8s/base", "no kustomization.yaml"):
        kf, kd = k8s.kustomization
        resources = kd.get("resources") or []
        for r in resources:
            ck.check(os.path.exists(os.path.join(k8s_dir, r)), f"deploy/k8s/base/{kf}",
                     f"resource '{r}' does not exist")
        for n in files:
            if n != kf:
                ck.check(n in resources, f"deploy/k8s/base/{kf}", f"does not list {n}")
    # Every namespace used exists (when the manifests create namespaces).
    namespaces = {d["metadata"]["name"] for _, d in k8s.of_kind("Namespace")}
    for f, d in k8s.objects:
        ns = k8s.ns(d)
        if ns is not None and namespaces:
            ck.check(ns in namespaces, where_of(f, d), f"namespace '{ns}' is not created")
    # Workload selectors select their own pods.
    for f, d in k8s.of_kind("Deployment", "StatefulSet", "DaemonSet"):
        sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        labels = (pod_template(d).get("metadata") or {}).get("labels") or {}
        ck.check(labels_match(sel, labels), where_of(f, d),
                 f"spec.selector.matchLabels {sel} does not match the pod labels {labels}")
        for v in (pod_template(d).get("spec") or {}).get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                ck.check(k8s.find("PersistentVolumeClaim", k8s.ns(d), claim) is not None,
                         where_of(f, d), f"volume '{v.get('name')}' claims PVC '{claim}', "
                                         "which does not exist")
    # Every PodDisruptionBudget selects the pods of exactly one workload and
    # bounds the disruption.
    for f, d in k8s.of_kind("PodDisruptionBudget"):
        spec = d.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        owners = [w for _, w in k8s.of_kind("Deployment", "StatefulSet")
                  if k8s.ns(w) == k8s.ns(d) and sel and labels_match(
                      sel, (pod_template(w).get("metadata") or {}).get("labels") or {})]
        ck.check(len(owners) == 1, where_of(f, d),
                 f"selector {sel} matches {len(owners)} workloads' pods, want exactly 1")
        ck.check(("maxUnavailable" in spec) != ("minAvailable" in spec), where_of(f, d),
                 "needs exactly one of maxUnavailable and minAvailable")
    workloads = {(d["kind"], d["metadata"]["name"]) for _, d in k8s.of_kind("Deployment",
                                                                           "StatefulSet")}
    budgeted = set()
    for _, d in k8s.of_kind("PodDisruptionBudget"):
        sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        for _, w in k8s.of_kind("Deployment", "StatefulSet"):
            if sel and labels_match(sel, (pod_template(w).get("metadata") or {}).get("labels")
                                    or {}):
                budgeted.add((w["kind"], w["metadata"]["name"]))
    for kind, name in sorted(workloads - budgeted):
        ck.fail(f"deploy/k8s/base: {kind} {name}", "no PodDisruptionBudget covers its pods")
    # HPA targets.
    hpa_targets = set()
    for f, d in k8s.of_kind("HorizontalPodAutoscaler"):
        spec = d.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        target = k8s.find(ref.get("kind"), k8s.ns(d), ref.get("name"))
        if ck.check(target is not None, where_of(f, d),
                    f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist"):
            ck.check(ref.get("apiVersion") == target[1]["apiVersion"], where_of(f, d),
                     f"scaleTargetRef.apiVersion {ref.get('apiVersion')} is not "
                     f"{target[1]['apiVersion']}")
            hpa_targets.add((ref.get("kind"), ref.get("name")))
        ck.check(int(spec.get("minReplicas", 1)) <= int(spec.get("maxReplicas", 0)),
                 where_of(f, d), "minReplicas exceeds maxReplicas")
    # Invocations of every moe container.
    servers, workers = [], {}  # workers: pod name -> (sts doc, container, inv)
    for f, d in k8s.of_kind("Deployment", "StatefulSet", "DaemonSet"):
        for pod, c, inv in k8s_invocations(k8s, f, d, all_flags):
            if pod is None or pod.endswith("-0"):
                check_pod_basics(ck, k8s, f, d, c, inv, hpa_targets)
            if inv.program == "moe_server":
                servers.append((f, d, c, inv))
            elif inv.program == "moe_expert_worker":
                if pod is None:
                    ck.fail(inv.where, "an expert worker outside a StatefulSet has no stable "
                                       "DNS name for --expert_workers")
                else:
                    workers[pod] = (f, d, c, inv)
    ck.check(bool(servers), "k8s", "no container runs moe_server")
    # Services: selectors match pods, target ports exist.
    pods = [(f, d) for f, d in k8s.of_kind("Deployment", "StatefulSet", "DaemonSet")]
    for f, d in k8s.of_kind("Service"):
        spec = d.get("spec") or {}
        sel = spec.get("selector") or {}
        matched = [(pf, pd) for pf, pd in pods if k8s.ns(pd) == k8s.ns(d) and labels_match(
            sel, (pod_template(pd).get("metadata") or {}).get("labels") or {})]
        if not ck.check(bool(matched), where_of(f, d),
                        f"selector {sel} matches the pods of no workload"):
            continue
        for p in spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            ok = False
            for _, pd in matched:
                for c in (pod_template(pd).get("spec") or {}).get("containers") or []:
                    for cp in c.get("ports") or []:
                        if tp == cp.get("name") or tp == cp.get("containerPort"):
                            ok = True
            ck.check(ok, where_of(f, d), f"port {p.get('name')}: targetPort {tp} is no "
                                         "container port of the selected pods")
    # --expert_workers: StatefulSet pod DNS names, ordinals, ports, experts.
    named = set()
    for f, d, c, inv in servers:
        where = f"{where_of(f, d)} container {c.get('name')}"
        shards, _ = expert_worker_shards(ck, where, inv, presets)
        if shards is None:
            continue
        server_ns = k8s.ns(d)
        for experts, addresses in shards:
            for host, port in addresses:
                check_k8s_worker_address(ck, k8s, where, server_ns, host, port, experts, inv,
                                         workers, named)
    for pod, (f, d, c, inv) in sorted(workers.items()):
        ck.check(pod in named, f"{where_of(f, d)} (pod {pod})",
                 "hosts experts that no server's --expert_workers names")
    return k8s


def check_k8s_worker_address(ck, k8s, where, server_ns, host, port, experts, inv, workers, named):
    labels = host.split(".")
    what = f"--expert_workers address {host}:{port}"
    if not ck.check(len(labels) >= 2 and (len(labels) < 4 or labels[3] == "svc"), where,
                    f"{what}: use a StatefulSet pod's DNS name "
                    "<pod>.<service>.<namespace>.svc.<cluster domain>"):
        return
    pod, svc = labels[0], labels[1]
    ns = labels[2] if len(labels) >= 3 else server_ns
    m = re.fullmatch(r"(.+)-(\d+)", pod)
    if not ck.check(m is not None, where, f"{what}: '{pod}' is not <statefulset>-<ordinal>"):
        return
    sts_name, ordinal = m.group(1), int(m.group(2))
    found = k8s.find("StatefulSet", ns, sts_name)
    if not ck.check(found is not None, where,
                    f"{what}: no StatefulSet '{sts_name}' in namespace '{ns}'"):
        return
    sf, sd = found
    replicas = int((sd.get("spec") or {}).get("replicas", 1))
    ck.check(ordinal < replicas, where,
             f"{what}: ordinal {ordinal} but StatefulSet {sts_name} has {replicas} replicas")
    ck.check((sd.get("spec") or {}).get("serviceName") == svc, where,
             f"{what}: StatefulSet {sts_name} has serviceName "
             f"'{(sd.get('spec') or {}).get('serviceName')}', not '{svc}'")
    sv = k8s.find("Service", ns, svc)
    if ck.check(sv is not None, where, f"{what}: no Service '{svc}' in namespace '{ns}'"):
        vspec = sv[1].get("spec") or {}
        ck.check(vspec.get("clusterIP") == "None", where,
                 f"{what}: Service '{svc}' must be headless (clusterIP: None) for pod DNS names")
        ck.check(labels_match(vspec.get("selector") or {},
                              (pod_template(sd).get("metadata") or {}).get("labels") or {}),
                 where, f"{what}: Service '{svc}' does not select StatefulSet {sts_name}'s pods")
    named.add(pod)
    if pod not in workers:
        ck.check(ordinal >= replicas, where,
                 f"{what}: pod {pod} runs no moe_expert_worker container")
        return
    wf, wd, wc, w = workers[pod]
    ck.check(port == w.listen_ports().get("grpc"), where,
             f"{what}: {pod} listens on --grpc_port={w.listen_ports().get('grpc')}")
    check_worker_experts(ck, where, pod, experts, w)
    check_model_agreement(ck, where, inv, w)


# --------------------------------------------------------------------------
# Optional: kubectl kustomize, and schema validation with kubernetes-models


SCHEMA_JS = r"""
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const root = process.argv[2];
const docs = JSON.parse(readFileSync(0, "utf8"));
function wrap(obj, path, log) {
  if (obj === null || typeof obj !== "object") return obj;
  const rec = { path, read: new Set(), enumerated: false,
                keys: Array.isArray(obj) ? [] : Object.keys(obj) };
  log.push(rec);
  const inner = Array.isArray(obj) ? obj.map((v, i) => wrap(v, `${path}/${i}`, log))
    : Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, wrap(v, `${path}/${k}`, log)]));
  return new Proxy(inner, {
    get(t, k, r) { if (typeof k === "string") rec.read.add(k); return Reflect.get(t, k, r); },
    has(t, k) { if (typeof k === "string") rec.read.add(k); return Reflect.has(t, k); },
    ownKeys(t) { rec.enumerated = true; return Reflect.ownKeys(t); },
  });
}
const results = [];
for (const { where, doc } of docs) {
  const model = `${root}/${doc.apiVersion}/${doc.kind}.js`;
  let src;
  try { src = readFileSync(model, "utf8"); } catch (e) {
    results.push({ where, errors: [`no schema for ${doc.apiVersion} ${doc.kind}`] }); continue;
  }
  const m = src.match(/_schemas\/(\w+)\.js/);
  const { validate } = await import(pathToFileURL(`${root}/_schemas/${m[1]}.js`).href);
  const log = [];
  const ok = validate(wrap(doc, "", log));
  const errors = ok ? [] : (validate.errors || []).map(
    (e) => `${e.instancePath || "/"} ${e.keyword}: ${JSON.stringify(e.params)}`);
  if (ok) {
    // Fields no validator looked at are unknown to the schema (maps and
    // free-form objects are enumerated, or not looked into at all).
    for (const r of log) {
      if (r.enumerated || r.read.size === 0) continue;
      for (const k of r.keys) if (!r.read.has(k)) errors.push(`${r.path}/${k}: unknown field`);
    }
  }
  results.push({ where, errors });
}
process.stdout.write(JSON.stringify(results));
"""

SCHEMA_INSTALL = "npm install -g kubernetes-models@5.1.0"


def find_kubernetes_models(explicit):
    candidates = []
    if explicit:
        candidates.append(explicit)
    if os.environ.get("MOE_K8S_MODELS"):
        candidates.append(os.environ["MOE_K8S_MODELS"])
    candidates += ["/usr/local/lib/node_modules", "/usr/lib/node_modules"]
    if shutil.which("npm"):
        try:
            out = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    for c in candidates:
        for root in (os.path.join(c, "kubernetes-models"), c):
            if os.path.isfile(os.path.join(root, "apps", "v1", "Deployment.js")):
                return root
    return None


def schema_check(ck, k8s, models_root):
    docs = [{"where": where_of(f, d), "doc": d} for f, d in k8s.objects]
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "validate.mjs")
        with open(js, "w", encoding="utf-8") as fh:
            fh.write(SCHEMA_JS)
        res = subprocess.run(["node", js, models_root], input=json.dumps(docs),
                             capture_output=True, text=True, timeout=120)
    if not ck.check(res.returncode == 0, "schema", f"node failed: {res.stderr.strip()[-2000:]}"):
        return
    for r in json.loads(res.stdout):
        ck.check(not r["errors"], r["where"], "schema: " + "; ".join(r["errors"]))


def kustomize_render(ck, folder, where):
    res = subprocess.run(["kubectl", "kustomize", folder], capture_output=True, text=True,
                         timeout=120)
    if not ck.check(res.returncode == 0, where, f"kubectl kustomize fails: {res.stderr.strip()}"):
        return None
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def kustomize_check(ck, k8s):
    ours = {(d["kind"], d["metadata"]["name"]) for _, d in k8s.objects}
    root = os.path.dirname(k8s.dir)
    for folder, where in ((k8s.dir, "deploy/k8s/base/kustomization.yaml"),
                          (root, "deploy/k8s/kustomization.yaml")):
        docs = kustomize_render(ck, folder, where)
        if docs is None:
            continue
        rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
        ck.check(rendered == ours, where,
                 f"kubectl kustomize renders {sorted(rendered)}, the files hold {sorted(ours)}")
    # The demo overlay as a cluster would get it.
    where = "deploy/k8s/overlays/demo"
    docs = kustomize_render(ck, os.path.join(root, "overlays", "demo"), where)
    if docs is not None:
        rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
        want = {o for o in ours if o[0] != "PersistentVolumeClaim"}
        ck.check(rendered == want, where,
                 f"renders {sorted(rendered)}, want the base without its claims {sorted(want)}")
        check_demo_objects(ck, where, [d for d in docs])


def check_demo_objects(ck, where, docs):
    """The demo overlay's objects: no claim, no volume or mount of weights,
    the demo preset, and pods otherwise as in the base."""
    for d in docs:
        what = f"{where}: {d['kind']} {d['metadata']['name']}"
        ck.check(d["kind"] != "PersistentVolumeClaim", what, "the demo needs no claim")
        if d["kind"] == "ConfigMap" and "FLAGS_preset" in (d.get("data") or {}):
            ck.check(d["data"]["FLAGS_preset"] == "demo", what, "FLAGS_preset should be demo")
            ck.check("FLAGS_model_dir" not in d["data"], what,
                     "FLAGS_model_dir needs the weights volume the demo drops")
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = pod_template(d).get("spec") or {}
        for v in spec.get("volumes") or []:
            ck.check("persistentVolumeClaim" not in v, what, f"volume '{v.get('name')}' is a claim")
        names = {v.get("name") for v in spec.get("volumes") or []}
        for c in spec.get("containers") or []:
            for m in c.get("volumeMounts") or []:
                ck.check(m.get("name") in names, what,
                         f"container {c.get('name')} mounts '{m.get('name')}', which is gone")
                ck.check(m.get("mountPath") != "/models", what, "still mounts /models")


def check_demo_overlay(ck, k8s):
    """Without kubectl: the overlay's own file, applied by hand to the base
    (its strategic-merge deletes are the only patches it may hold)."""
    where = "deploy/k8s/overlays/demo/kustomization.yaml"
    path = os.path.join(os.path.dirname(k8s.dir), "overlays", "demo", "kustomization.yaml")
    if not ck.check(os.path.isfile(path), where, "is missing"):
        return
    with open(path, encoding="utf-8") as f:
        kd = yaml.safe_load(f) or {}
    ck.check(kd.get("resources") == ["../../base"], where, "should have resources: [../../base]")
    objects = [copy.deepcopy(d) for _, d in k8s.objects]
    for p in kd.get("patches") or []:
        if not ck.check("patch" in p, where, "patches must be inline (patch: |-)"):
            continue
        doc = yaml.safe_load(p["patch"])
        meta = doc.get("metadata") or {}
        target = [d for d in objects if d["kind"] == doc.get("kind")
                  and d["metadata"]["name"] == meta.get("name")]
        if not ck.check(len(target) == 1, where,
                        f"patch targets {doc.get('kind')} {meta.get('name')}, not in the base"):
            continue
        t = target[0]
        if doc.get("$patch") == "delete":
            objects.remove(t)
        elif t["kind"] == "ConfigMap":
            t.setdefault("data", {}).update(doc.get("data") or {})
        else:
            pspec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
            tspec = pod_template(t).get("spec") or {}
            gone = {v["name"] for v in pspec.get("volumes") or [] if v.get("$patch") == "delete"}
            ck.check(gone <= {v.get("name") for v in tspec.get("volumes") or []}, where,
                     f"deletes volumes {sorted(gone)} that {t['kind']} {meta.get('name')} lacks")
            tspec["volumes"] = [v for v in tspec.get("volumes") or [] if v.get("name") not in gone]
            for pc in pspec.get("containers") or []:
                tc = [c for c in tspec.get("containers") or [] if c.get("name") == pc.get("name")]
                if not ck.check(len(tc) == 1, where, f"container '{pc.get('name')}' is not in "
                                                     f"{t['kind']} {meta.get('name')}"):
                    continue
                drop = {m["mountPath"] for m in pc.get("volumeMounts") or []
                        if m.get("$patch") == "delete"}
                tc[0]["volumeMounts"] = [m for m in tc[0].get("volumeMounts") or []
                                         if m.get("mountPath") not in drop]
    check_demo_objects(ck, where, objects)


# --------------------------------------------------------------------------


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploy-dir", default=here,
                    help="folder with compose.yaml, prometheus/ and k8s/ (default: this script's)")
    ap.add_argument("--repo-root", default=os.path.dirname(here),
                    help="repository the deployment files refer to (default: ..)")
    ap.add_argument("--bin-dir", default=None,
                    help="build folder holding server/, client/ and tools/ "
                         "(default: <repo-root>/build)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--schema", action="store_true",
                   help="require the Kubernetes schema check (node + kubernetes-models)")
    g.add_argument("--no-schema", action="store_true",
                   help="skip the schema and kustomize checks even when available")
    ap.add_argument("--schema-modules", help="node_modules folder holding kubernetes-models")
    ap.add_argument("-v", "--verbose", action="store_true", help="print notes too")
    args = ap.parse_args()

    _DEPLOY_PARENT[0] = os.path.dirname(os.path.abspath(args.deploy_dir))
    ck = Checker()
    bin_dir = args.bin_dir or os.path.join(args.repo_root, "build")
    all_flags = load_program_flags(ck, bin_dir)
    presets = preset_expert_counts(ck, bin_dir)
    ck.check("demo" in presets, "binaries", "moe_export_preset lists no preset 'demo'")

    compose = os.path.join(args.deploy_dir, "compose.yaml")
    if ck.check(os.path.isfile(compose), "deploy", "compose.yaml is missing"):
        check_compose(ck, compose, args.deploy_dir, args.repo_root, all_flags, presets)
    n_compose = ck.count

    k8s_dir = os.path.join(args.deploy_dir, "k8s", "base")
    extras = []
    if ck.check(os.path.isdir(k8s_dir), "deploy", "k8s/base/ is missing"):
        k8s = check_k8s(ck, k8s_dir, all_flags, presets)
        if not args.no_schema:
            models = find_kubernetes_models(args.schema_modules)
            if models and shutil.which("node"):
                schema_check(ck, k8s, models)
                extras.append("schema (kubernetes-models)")
            elif args.schema:
                ck.fail("schema", "needs node and the npm package kubernetes-models; as root: "
                                  f"apt-get install -y nodejs npm && {SCHEMA_INSTALL}")
            else:
                ck.note(f"schema check skipped: no kubernetes-models ({SCHEMA_INSTALL})")
            if shutil.which("kubectl"):
                kustomize_check(ck, k8s)
                extras.append("kubectl kustomize")
        check_demo_overlay(ck, k8s)
    n_k8s = ck.count - n_compose

    if args.verbose:
        for n in ck.notes:
            print(f"note: {n}")
    extra = f"; with {' and '.join(extras)}" if extras else ""
    if ck.failures:
        for msg in ck.failures:
            print(f"FAIL {msg}")
        print(f"check_manifests: {len(ck.failures)} of {ck.count} checks failed{extra}")
        return 1
    print(f"check_manifests: all {ck.count} checks passed (compose and prometheus: {n_compose}, "
          f"k8s: {n_k8s}{extra})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
