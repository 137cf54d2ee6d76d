#!/usr/bin/env python3
"""Routing-mesh benchmark: a port published through Shoal's mesh, reached from a node that
runs no task, against a host-mode port on the task's own node; Docker Swarm's
bench_mesh.py in the same run (its mesh fails on this kernel: no IPVS).

  deploy/bench/mesh.py [--runs 3] [--time 5] [--conns 8] [--no-swarm]

Needs, already up (this script starts and stops neither):
  * Shoal's lab, 1 manager + 2 workers (deploy/lab.sh up --managers 1 --workers 2);
  * the Swarm reference harness (../shared/peers/swarm/setup.sh), unless --no-swarm;
  * wrk on this machine (apt-get install wrk), as the peer's harness uses.

Workload, as the peer's: busybox httpd serving a 1 KiB file, every request a new
connection (httpd closes it), wrk -t1 -cCONNS for TIME seconds, from host n1's namespace
(the manager, which runs no task; tcp_tw_reuse=1 and ports 1024-65535 there, as the peer
sets in its client namespace). Three services, one task each, all on n2:
  web   -p 8080:80 (routing mesh)          -> mesh via n3 (no task): 10.78.0.13:8080
  web2  -p 8082:80 (routing mesh)          -> mesh via n2 (its task): 10.78.0.12:8082
  webh  --publish mode=host,8081:80        -> host mode on n2: 10.78.0.12:8081
One task per entry point: the mesh keeps the client's address and port, so one client
reaching one task through two nodes, reusing its ports within TIME_WAIT, meets that
task's PAWS check with two timestamp offsets (SYNs dropped: TcpExtPAWSTimewait); see
docs/ARCHITECTURE.md. Reports req/s and wrk's p99 latency, and per round mesh-via-n3 /
host-mode.
"""
import argparse, os, re, subprocess, sys

from overlay import PEER, fmt, lab, run, say, shoal, wait

PAGE = "/1k.html"
HTTPD = ("head -c 1024 /dev/zero | tr '\\0' x > /tmp/1k.html; "
         "exec httpd -f -p 80 -h /tmp")
CLIENT_SYSCTLS = ["net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"]
TARGETS = [
    ("mesh via n3 (no task)", "http://10.78.0.13:8080"),
    ("mesh via n2 (its task)", "http://10.78.0.12:8082"),
    ("host mode on n2", "http://10.78.0.12:8081"),
]


def setup():
    shoal("service", "rm", "web", "web2", "webh", check=False)
    for name, port in (("web", 8080), ("web2", 8082)):
        shoal("service", "create", "--detach", "--name", name, "--constraint",
              "node.hostname==n2", "-p", f"{port}:80", "shoal-test/busybox:a", "sh", "-c",
              HTTPD)
    shoal("service", "create", "--detach", "--name", "webh", "--constraint",
          "node.hostname==n2", "--publish", "mode=host,published=8081,target=80",
          "shoal-test/busybox:a", "sh", "-c", HTTPD)
    for sysctl in CLIENT_SYSCTLS:
        lab("exec", "n1", "sysctl", "-qw", sysctl)
    for _, url in TARGETS:
        wait(f"{url} answering", lambda: lab("exec", "n1", "wget", "-qO-", url + PAGE,
                                             check=False).startswith("x"))


def wrk(url, secs, conns):
    """(requests/s, p99 in ms) from host n1."""
    out = lab("exec", "n1", "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "2s",
              "--latency", url + PAGE)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    if not rps or not p99:
        raise RuntimeError(f"wrk gave no figures:\n{out[-600:]}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    if errors:
        say(f"  {url}: {errors.group(0)}")
    return float(rps.group(1)), float(p99.group(1)) * scale


def swarm(secs, conns):
    out = run(["python3", os.path.join(PEER, "bench_mesh.py"), "--runs", "1", "--time",
               str(secs), "--conns", str(conns)], timeout=900)
    line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"no RESULT from the peer's bench_mesh.py:\n{out[-600:]}")
    def figure(label):
        m = re.search(re.escape(label) + r"[^:]*: (FAILED \(curl: \(\d+\)|median=[\d.]+)", line)
        if not m:
            return "?"
        return m.group(1).replace("median=", "") + (" req/s" if "median" in m.group(1) else ")")
    return figure("mesh-node3"), figure("hostport")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time", type=int, default=5)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--no-swarm", action="store_true")
    a = ap.parse_args()
    if subprocess.run(["which", "wrk"], stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit("wrk is not installed: apt-get install wrk")
    setup()
    rps = {label: [] for label, _ in TARGETS}
    p99 = {label: [] for label, _ in TARGETS}
    ratios, added, swarm_mesh, swarm_host = [], [], [], []
    for r in range(a.runs):
        order = ["shoal", "swarm"] if r % 2 == 0 else ["swarm", "shoal"]
        for who in order:
            if who == "shoal":
                for label, url in TARGETS:
                    v, p = wrk(url, a.time, a.conns)
                    rps[label].append(v)
                    p99[label].append(p)
                    say(f"round {r+1} shoal {label}: {v:.0f} req/s, p99 {p:.2f} ms")
                mesh, host = TARGETS[0][0], TARGETS[2][0]
                ratios.append(rps[mesh][-1] / rps[host][-1])
                added.append(p99[mesh][-1] - p99[host][-1])
            elif not a.no_swarm:
                m, h = swarm(a.time, a.conns)
                swarm_mesh.append(m)
                swarm_host.append(h)
                say(f"round {r+1} swarm: mesh via node3 {m}; host mode {h}")
    shoal("service", "rm", "web", "web2", "webh", check=False)
    say("")
    say(f"| item (wrk -t1 -c{a.conns} {a.time}s, 1 KiB, new connection per request) | Shoal | Swarm |")
    say("| --- | --- | --- |")
    swarm_col = {TARGETS[0][0]: "; ".join(swarm_mesh) or "-",
                 TARGETS[2][0]: "; ".join(swarm_host) or "-"}
    for label, _ in TARGETS:
        say(f"| {label}: requests/s | {fmt(rps[label], 'req/s', 0)} | {swarm_col.get(label, '-')} |")
        say(f"| {label}: p99 | {fmt(p99[label], 'ms')} | - |")
    say(f"| mesh via n3 / host mode (per round) | {fmt(ratios, '')} | - |")
    say(f"| p99 added by the mesh (per round) | {fmt(added, 'ms')} | - |")


if __name__ == "__main__":
    sys.exit(main())
