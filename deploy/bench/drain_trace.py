#!/usr/bin/env python3
"""Where a drain's time goes: the engines' own events on every host, against the CLI's start.

  deploy/bench/drain_trace.py [--lab-run /run/shoalbench-lab] [--replicas 30] [--node n2]

Needs a lab up (1 manager + 2 workers, as deploy/bench/cluster.py). Creates a service of
REPLICAS, waits until all run, then drains NODE and prints, in milliseconds from just before
the drain's CLI started: every container create, start and die on every host, and when a
50 ms poll of `service ps` first saw every replica running elsewhere. Pair it with the
hosts' shoald logs at RUST_LOG=shoal_manager=debug,shoal_agent=debug (the wall clock of
the drain's start is printed) to see the control plane's part. Undrains and removes after.
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from first_task import BIN, IMAGE, Events, run  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab-run", default="/run/shoalbench-lab")
    ap.add_argument("--replicas", type=int, default=30)
    ap.add_argument("--node", default="n2")
    a = ap.parse_args()
    hosts = sorted(d for d in os.listdir(a.lab_run) if d[0] == "n" and d[1:].isdigit())
    shoal = [os.path.join(BIN, "shoal"), "-H", f"unix://{a.lab_run}/n1/shoald.sock"]
    events = {k: Events(f"{a.lab_run}/{k}/docker.sock", ("create", "start", "die")) for k in hosts}
    for e in events.values():
        e.start()
    name = f"drain-trace-{int(time.time())}"

    def tasks():
        out = run(shoal + ["service", "ps", "--format", "json", name])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def running(t):
        return t["CurrentState"].lower().startswith("running") and t["DesiredState"].lower() == "running"

    run(shoal + ["service", "create", "-d", "--name", name, "--replicas", str(a.replicas),
                 "--stop-signal", "KILL", IMAGE, "sleep", "1000000"])
    while sum(map(running, tasks())) < a.replicas:
        time.sleep(0.1)
    time.sleep(3)
    for e in events.values():
        with e.cond:
            e.seen.clear()
    t0 = time.time_ns()
    run(shoal + ["node", "update", "--availability", "drain", a.node])
    cli = time.time_ns() - t0
    while sum(1 for t in tasks() if running(t) and t["Node"] != a.node) < a.replicas:
        time.sleep(0.05)
    elsewhere = time.time_ns() - t0
    time.sleep(2)
    print(f"drain started at {time.strftime('%H:%M:%S', time.gmtime(t0 / 1e9))}.{t0 % 10**9 // 1000:06d} UTC; "
          f"CLI {cli / 1e6:.1f} ms; all {a.replicas} running elsewhere (poll) {elsewhere / 1e6:.0f} ms")
    seen = sorted((ev["timeNano"] - t0, k, ev["status"]) for k, e in events.items() for ev in e.seen)
    for at, k, status in seen:
        print(f"  {at / 1e6:8.1f} ms  {k}  {status}")
    run(shoal + ["node", "update", "--availability", "active", a.node])
    run(shoal + ["service", "rm", name])


if __name__ == "__main__":
    main()
