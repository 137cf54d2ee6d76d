#!/usr/bin/env python3
"""Single-node create benchmark: Shoal beside the engine floor, interleaved, same dockerd.

  deploy/bench/single_node.py [--runs 3] [--sizes 10,50]

For each size N and run: `shoal service create --replicas N` (clock started before the CLI
is launched) until a 100 ms poll of `shoal service ps` shows N running, and the time to the
first running task; then the floor: the same N containers (same image, command, network)
started straight on the same dockerd with `docker run -d`, 4 at a time. Needs release
binaries ($CARGO_TARGET_DIR/release, default /var/tmp/shoal-target) and the test images.
Prints one RESULT line per figure and a markdown table of medians.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/shoal-target")
BIN = os.path.join(TARGET, "release")
IMAGE = "shoal-test/busybox:a"
POLL = 0.1


def run(*args, check=True):
    p = subprocess.run(args, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"{args} failed: {p.stderr.strip()}")
    return p.stdout


class Shoald:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="shoal-bench-")
        self.sock = os.path.join(self.dir, "shoald.sock")
        log = open(os.path.join(self.dir, "shoald.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "shoald"), "--data-dir", os.path.join(self.dir, "data"),
             "--socket", self.sock, "--node-name", "bench1"],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        for _ in range(200):
            if subprocess.run(self.cli("info"), capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        run(*self.cli("swarm", "init", "--listen-addr", "127.0.0.1:0"))

    def cli(self, *args):
        return [os.path.join(BIN, "shoal"), "-H", f"unix://{self.sock}", *args]

    def running(self, name):
        out = run(*self.cli("service", "ps", "--format", "json", name))
        n = 0
        for line in out.splitlines():
            t = json.loads(line)
            if t["DesiredState"].lower() == "running" and t["CurrentState"].lower().startswith("running"):
                n += 1
        return n

    def node_containers(self):
        node_id = json.load(open(os.path.join(self.dir, "data", "node.json")))["node_id"]
        return run("docker", "ps", "-aq", "--filter", f"label=shoal.node.id={node_id}").split()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        ids = self.node_containers()
        if ids:
            run("docker", "rm", "-f", *ids)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_shoal(d, n, i):
    name = f"bench{n}x{i}"
    t0 = time.perf_counter()
    run(*d.cli("service", "create", "--name", name, "--replicas", str(n), "--stop-signal", "KILL",
               IMAGE, "sleep", "1000000"))
    first = None
    while True:
        k = d.running(name)
        now = time.perf_counter() - t0
        if k >= 1 and first is None:
            first = now
        if k >= n:
            break
        if now > 300:
            sys.exit(f"{name}: only {k}/{n} running after 300 s")
        time.sleep(POLL)
    total = time.perf_counter() - t0
    run(*d.cli("service", "rm", name))
    while d.node_containers():
        time.sleep(POLL)
    return total, first


def bench_floor(n):
    label = "shoal-floorbench"
    t0 = time.perf_counter()
    firsts = []
    def one(_):
        run("docker", "run", "-d", "--label", label, IMAGE, "sleep", "1000000")
        firsts.append(time.perf_counter() - t0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    total = time.perf_counter() - t0
    ids = run("docker", "ps", "-aq", "--filter", f"label={label}").split()
    if ids:
        run("docker", "rm", "-f", *ids)
    return total, min(firsts)


def settle():
    """Let dockerd finish the previous phase's removals before the next clock starts."""
    time.sleep(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="10,50")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    d = Shoald()
    res = {}
    try:
        for i in range(a.runs):
            for n in sizes:
                settle()
                s_total, s_first = bench_shoal(d, n, i)
                settle()
                f_total, f_first = bench_floor(n)
                for k, v in (("shoal", s_total), ("shoal_first", s_first), ("floor", f_total), ("floor_first", f_first)):
                    res.setdefault((k, n), []).append(v)
                print(f"RESULT run {i} N={n}: shoal {s_total:.2f} s (first {s_first:.2f} s), "
                      f"floor {f_total:.2f} s (first {f_first:.2f} s)", flush=True)
    finally:
        d.close()
    print("\n| N | Shoal all running | first running | engine floor (4 at a time) | Shoal / floor |")
    print("| --- | --- | --- | --- | --- |")
    for n in sizes:
        med = lambda k: statistics.median(res[(k, n)])
        rng = lambda k: f"{min(res[(k, n)]):.2f}-{max(res[(k, n)]):.2f}"
        print(f"| {n} | {med('shoal'):.2f} s [{rng('shoal')}] | {med('shoal_first'):.2f} s [{rng('shoal_first')}] "
              f"| {med('floor'):.2f} s [{rng('floor')}] | {med('shoal') / med('floor'):.2f} |")


if __name__ == "__main__":
    main()
