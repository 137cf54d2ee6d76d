#!/usr/bin/env python3
"""First task: `service create` to the container's start, timed by the engine's own event.

  deploy/bench/first_task.py [--runs 10] [--lab-run /run/shoalbench-lab] [--node nK]

Needs a lab already up, release binaries, e.g. 3 managers and 1 worker:
  SHOAL_BIN_DIR=/var/tmp/shoal-target/release deploy/bench/lab_private.sh up --managers 3 --workers 1

Per run, interleaved (the order alternates):
  shoal   the clock starts just before `shoal service create -d --replicas 1 --constraint
          node.hostname==NODE` is launched against n1's socket (the leader); it stops at the
          `start` event of the task's container on NODE's engine (the engine's own timeNano).
  floor   the clock starts just before `docker -H NODE run -d` of the same image, command and
          network; it stops at that container's `start` event on the same engine.
Both clocks are this host's wall clock in nanoseconds (the engines run on this host).
Each run starts clean (the previous service and container gone) after 1 s idle.
The engine's `create` event is timed too: up to it is the control plane's (or the docker
CLI's) share, after it the engine's own work.
Prints one RESULT line per run and the medians; the figure that matters is shoal - floor.
"""
import argparse, http.client, json, os, socket, statistics, subprocess, sys, threading, time
import urllib.parse

BIN = os.environ.get("SHOAL_BIN_DIR", "/var/tmp/shoal-target/release")
IMAGE = "shoal-test/busybox:a"


class Events(threading.Thread):
    """The `create` and `start` events of one engine, streamed from its socket into a list."""

    def __init__(self, sock, kinds=("create", "start")):
        super().__init__(daemon=True)
        self.sock, self.kinds, self.seen, self.cond = sock, list(kinds), [], threading.Condition()

    def run(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        q = urllib.parse.urlencode({"filters": json.dumps({"type": ["container"], "event": self.kinds})})
        c = http.client.HTTPConnection("localhost")
        c.sock = s
        c.request("GET", f"/v1.41/events?{q}")
        r = c.getresponse()
        while True:
            line = r.readline()
            if not line:
                return
            if line.strip():
                e = json.loads(line)
                with self.cond:
                    self.seen.append(e)
                    self.cond.notify_all()

    def wait(self, match, timeout=60):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.seen:
                    if match(e):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no start event")
                self.cond.wait(left)


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    return p.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--lab-run", default="/run/shoalbench-lab")
    ap.add_argument("--node", help="the host the task must land on (default: the last one)")
    a = ap.parse_args()
    hosts = sorted((d for d in os.listdir(a.lab_run) if d[0] == "n" and d[1:].isdigit()),
                   key=lambda d: int(d[1:]))
    node = a.node or hosts[-1]
    dsock = f"{a.lab_run}/{node}/docker.sock"
    shoal = [os.path.join(BIN, "shoal"), "-H", f"unix://{a.lab_run}/n1/shoald.sock"]
    docker = ["docker", "-H", f"unix://{dsock}"]
    events = Events(dsock)
    events.start()
    results = {"shoal": [], "floor": []}
    created = {"shoal": [], "floor": []}

    def shoal_once(r):
        name = f"ft-{r}"
        t0 = time.time_ns()
        run(shoal + ["service", "create", "-d", "--name", name, "--replicas", "1",
                     "--constraint", f"node.hostname=={node}", "--stop-signal", "KILL",
                     IMAGE, "sleep", "1000000"])
        t_cli = time.time_ns() - t0
        mine = lambda e: e["Actor"]["Attributes"].get("shoal.service.name") == name
        e = events.wait(lambda e: e["status"] == "start" and mine(e))
        c = events.wait(lambda e: e["status"] == "create" and mine(e))
        took, created = (e["timeNano"] - t0) / 1e9, (c["timeNano"] - t0) / 1e9
        run(shoal + ["service", "rm", name])
        while run(docker + ["ps", "-aq", "--filter", f"label=shoal.service.name={name}"]):
            time.sleep(0.05)
        print(f"RESULT shoal run={r} start={took:.3f}s create={created:.3f}s cli={t_cli / 1e9:.3f}s",
              flush=True)
        return took, created

    def floor_once(r):
        name = f"ft-floor-{r}"
        t0 = time.time_ns()
        cid = run(docker + ["run", "-d", "--name", name, IMAGE, "sleep", "1000000"])
        e = events.wait(lambda e: e["status"] == "start" and e["id"] == cid)
        c = events.wait(lambda e: e["status"] == "create" and e["id"] == cid)
        took, created = (e["timeNano"] - t0) / 1e9, (c["timeNano"] - t0) / 1e9
        run(docker + ["rm", "-f", cid])
        print(f"RESULT floor run={r} start={took:.3f}s create={created:.3f}s", flush=True)
        return took, created

    for r in range(a.runs):
        order = [("shoal", shoal_once), ("floor", floor_once)]
        if r % 2:
            order.reverse()
        for key, f in order:
            time.sleep(1)
            took, c = f(r)
            results[key].append(took)
            created[key].append(c)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nnode {node}, {a.runs} runs, median [min-max], seconds: to the start event "
          f"(to the create event)")
    for k, v in results.items():
        cm = statistics.median(created[k])
        print(f"  {k:6} {med[k]:.3f} [{min(v):.3f}-{max(v):.3f}]  "
              f"(create {cm:.3f} [{min(created[k]):.3f}-{max(created[k]):.3f}])")
    print(f"  shoal - floor: {med['shoal'] - med['floor'] :+.3f} s (target <= +0.050)")


if __name__ == "__main__":
    main()
