#!/usr/bin/env python3
"""Stack deploy benchmark (issue 10): a 10-service stack of 30 tasks deployed until every
task runs, Shoal's `stack deploy` beside Docker Swarm's `docker stack deploy` of the same
file in the same run.

  deploy/bench/stack.py [--runs 3] [--no-swarm]

Needs, already up (this script starts and stops neither):
  * Shoal's lab, 1 manager + 2 workers (deploy/lab.sh up --managers 1 --workers 2);
  * the Swarm reference harness (../shared/peers/swarm/setup.sh), unless --no-swarm.

Workload, the same file for both (images swapped: shoal-test/busybox:a, swb/busybox:a):
services s0..s9, 3 replicas each, `sleep 1000000`, stop signal SIGKILL, on the stack's
default overlay network; no registry (--resolve-image never on both). Two figures per
system and round:
  * waiting: the deploy command run until it returns, told to wait for convergence
    (Shoal's default; Swarm's `--detach=false`);
  * polled: the deploy command detached, then the manager polled every 100 ms until 30
    tasks run (the peer harness's way of timing).
Between rounds the stack is removed and its tasks waited out on both.
"""
import argparse, json, os, sys, tempfile, time

from overlay import PEER, fmt, lab, run, say, shoal

sys.path.insert(0, PEER)
import swb  # noqa: E402  (the peer harness's API client)

SERVICES = 10
REPLICAS = 3
TOTAL = SERVICES * REPLICAS
POLL = 0.1


def stack_file(image):
    lines = ['version: "3.8"', "services:"]
    for i in range(SERVICES):
        lines += [f"  s{i}:", f"    image: {image}", "    command: sleep 1000000",
                  "    stop_signal: SIGKILL", "    deploy:", f"      replicas: {REPLICAS}"]
    path = os.path.join(tempfile.mkdtemp(prefix="stack-bench-"), "compose.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def until(pred, timeout=300):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("timed out")
        time.sleep(POLL)
    return time.monotonic() - t0


# ---- Shoal

def shoal_running():
    rows = [json.loads(l) for l in shoal("service", "ls", "--format", "json").splitlines() if l]
    ours = [r for r in rows if r["Name"].startswith("bstk_")]
    return len(ours) == SERVICES and all(r["Replicas"] == f"{REPLICAS}/{REPLICAS}" for r in ours)


def shoal_rm():
    shoal("stack", "rm", "bstk", check=False)


def shoal_round(path, waiting):
    shoal_rm()
    t0 = time.monotonic()
    if waiting:
        shoal("stack", "deploy", "--quiet", "--resolve-image", "never", "-c", path, "bstk")
        took = time.monotonic() - t0
    else:
        shoal("stack", "deploy", "--detach", "--resolve-image", "never", "-c", path, "bstk")
        until(shoal_running)
        took = time.monotonic() - t0
    if not shoal_running():
        raise RuntimeError("shoal: not all 30 tasks running")
    return took


# ---- Swarm

def docker(*args, check=True):
    return run(["docker", "-H", f"unix://{swb.sock(1)}", *args], check=check)


def swarm_running():
    services = swb.get(1, "/services",
                       {"filters": {"label": ["com.docker.stack.namespace=bstk"]}})
    if len(services) != SERVICES:
        return False
    tasks = swb.get(1, "/tasks", {"filters": {"service": [s["ID"] for s in services]}})
    return swb.running(tasks) == TOTAL


def swarm_rm():
    docker("stack", "rm", "bstk", check=False)
    until(lambda: not swb.get(1, "/services",
                              {"filters": {"label": ["com.docker.stack.namespace=bstk"]}}))
    until(lambda: not any(swb.containers(n) for n in (1, 2, 3)) and not [
        n for n in swb.get(1, "/networks") if n["Name"] == "bstk_default"], timeout=120)


def swarm_round(path, waiting):
    swarm_rm()
    t0 = time.monotonic()
    if waiting:
        docker("stack", "deploy", "--detach=false", "--resolve-image", "never", "-c", path,
               "bstk")
    else:
        docker("stack", "deploy", "--detach=true", "--resolve-image", "never", "-c", path,
               "bstk")
        until(swarm_running)
    took = time.monotonic() - t0
    if not swarm_running():
        raise RuntimeError("swarm: not all 30 tasks running")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-swarm", action="store_true")
    a = ap.parse_args()
    shoal_file = stack_file("shoal-test/busybox:a")
    swarm_file = stack_file(swb.IMG_A)
    results = {k: [] for k in ("shoal waiting", "shoal polled", "swarm waiting", "swarm polled")}
    for r in range(a.runs):
        for waiting in (True, False):
            how = "waiting" if waiting else "polled"
            t = shoal_round(shoal_file, waiting)
            results[f"shoal {how}"].append(t)
            say(f"round {r + 1}: shoal {how} {t:.2f} s")
            if not a.no_swarm:
                t = swarm_round(swarm_file, waiting)
                results[f"swarm {how}"].append(t)
                say(f"round {r + 1}: swarm {how} {t:.2f} s")
    shoal_rm()
    if not a.no_swarm:
        swarm_rm()
    for k, xs in results.items():
        say(f"RESULT {k}: {fmt(xs, 's')}")
    for how in ("waiting", "polled"):
        s, w = results[f"shoal {how}"], results[f"swarm {how}"]
        if s and w:
            import statistics
            say(f"RESULT ratio shoal/swarm ({how}): "
                f"{statistics.median(s) / statistics.median(w):.2f} (target <= 0.7)")


if __name__ == "__main__":
    main()
