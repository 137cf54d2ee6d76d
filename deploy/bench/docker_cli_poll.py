#!/usr/bin/env python3
"""Times the docker CLI's `service ls`, `service ps` and `service ps -q` against one Docker
API endpoint with a service of N running tasks: Swarm's dockerd or Shoal's --docker-api,
the same client (Debian's docker, 20.10) and the same commands. The service is created
through that same API (`docker service create --no-resolve-image --detach`), waited on
until N/N, timed, and removed.

Prints per command: wall time per call (median, min, max over --polls calls) and the
serving daemon's CPU time per call (utime+stime delta from /proc/PID/stat over the polls),
and a final RESULT line.

Usage: docker_cli_poll.py --host unix:///SOCK --pid-file FILE --image IMG
                          [--replicas 1000] [--polls 20] [--label NAME]
"""
import argparse, os, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--pid-file", required=True)
ap.add_argument("--image", required=True)
ap.add_argument("--replicas", type=int, default=1000)
ap.add_argument("--polls", type=int, default=20)
ap.add_argument("--label", default="target")
ap.add_argument("--docker", default="/usr/bin/docker")
ap.add_argument("--converge-timeout", type=float, default=1800)
a = ap.parse_args()

env = dict(os.environ, DOCKER_HOST=a.host)
name = "pollbench"
hz = os.sysconf("SC_CLK_TCK")


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {a.label}: {msg}", flush=True)


def docker(*args, check=True):
    return subprocess.run([a.docker, *args], env=env, capture_output=True, text=True, check=check)


def cpu():
    pid = int(open(a.pid_file).read().split()[0])
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz


docker("service", "rm", name, check=False)
t0 = time.monotonic()
docker("service", "create", "--no-resolve-image", "--detach", "--name", name,
       "--replicas", str(a.replicas), "--stop-signal", "KILL", a.image, "sleep", "1000000")
want = f"{a.replicas}/{a.replicas}"
while True:
    out = docker("service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}").stdout.strip()
    if out == want:
        break
    if time.monotonic() - t0 > a.converge_timeout:
        sys.exit(f"{a.label}: {name} did not converge: {out}")
    time.sleep(2)
say(f"{a.replicas} tasks running after {time.monotonic() - t0:.1f} s")
time.sleep(5)

results = {}
for label, args in [("service ls", ["service", "ls"]),
                    ("service ps", ["service", "ps", name]),
                    ("service ps -q", ["service", "ps", "-q", name])]:
    lines = len(docker(*args).stdout.splitlines())  # warm, and check it answers
    walls = []
    c0 = cpu()
    for _ in range(a.polls):
        s = time.monotonic()
        docker(*args)
        walls.append((time.monotonic() - s) * 1000)
    c = (cpu() - c0) / a.polls * 1000
    results[label] = (statistics.median(walls), min(walls), max(walls), c)
    say(f"docker {label} ({lines} lines): median {statistics.median(walls):.1f} ms "
        f"(min {min(walls):.1f}, max {max(walls):.1f}) wall, daemon CPU {c:.1f} ms per call")

docker("service", "rm", name, check=False)
print("RESULT " + a.label + " " + " ".join(
    f"{k.replace(' ', '_')}={v[0]:.1f}ms/{v[3]:.1f}cpu" for k, v in results.items()), flush=True)
