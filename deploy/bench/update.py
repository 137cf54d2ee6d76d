#!/usr/bin/env python3
"""Rolling-update benchmark (issue 5): Shoal on the private lab beside Docker Swarm and the
engine floor, interleaved in the same run. Reuses deploy/bench/cluster.py's helpers.

  deploy/bench/update.py --lab-run /run/shoalbench-lab [--plan K,T,K,K,T] [--no-swarm] [--no-floor]
                         [--order stop-first|start-first]

Plan: one letter per round, K = `--stop-signal KILL`, T = default SIGTERM with the 10 s grace
(`sleep` as PID 1 ignores SIGTERM). Per round: Shoal's run, the peer's own
`bench_update.py --runs 1 [--stop-signal default]` and (K rounds only) the floor
`bench_engine_floor.sh 30` ("replace 30"); order rotates from round to round.

Shoal run: fresh 30-replica service on shoal-test/busybox:a, all 30 running, all 30 containers
present, 3 s idle; the clock starts just before launching
  shoal service update --detach --image shoal-test/busybox:b --update-parallelism 5 --update-delay 0s NAME
then `service ps --format json` every 100 ms until 30 running tasks on :b and no other task
running (any desired state), then `service inspect` every 100 ms until UpdateStatus.State is
"completed". Same predicates as the peer's bench_update.py.
"""
import argparse, datetime, json, os, statistics, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as C

IMG_B = "shoal-test/busybox:b"


def shoal_update(sh, r, kind, replicas=30, par=5, order="stop-first"):
    name = f"shb-update-{kind}-{r}"
    args = ["service", "create", "-d", "--name", name, "--replicas", str(replicas)]
    if kind == "K":
        args += ["--stop-signal", "KILL"]
    sh.cli(*args, C.IMAGE, "sleep", "1000000")
    C.wait(lambda: sh.running(sh.tasks(name)) == replicas, "initial")
    C.wait(lambda: sh.all_containers(name) == replicas, "clean start")
    time.sleep(C.SETTLE)
    t0 = time.monotonic()
    sh.cli("service", "update", "--detach", "--image", IMG_B, "--update-parallelism", str(par),
           "--update-delay", "0s", "--update-order", order, name)
    t_cli = time.monotonic() - t0

    def new_done():
        ts = sh.tasks(name)
        on_b = sum(1 for t in ts if t["CurrentState"].lower().startswith("running")
                   and t["DesiredState"].lower() == "running" and t.get("Image", "").endswith(":b"))
        return on_b == replicas and sh.running(ts, desired=False) == replicas
    C.wait(new_done, "all tasks on new spec")
    t_tasks = time.monotonic() - t0
    states = []

    def completed():
        s = json.loads(sh.cli("service", "inspect", name))
        s = s[0] if isinstance(s, list) else s
        st = (s.get("UpdateStatus") or {}).get("State")
        if not states or states[-1] != st:
            states.append(st)
        return st == "completed"
    C.wait(completed, "update completed")
    t_done = time.monotonic() - t0
    C.say(f"  shoal update {kind} #{r + 1}: all {replicas} on :b {t_tasks:.2f}s, completed {t_done:.2f}s "
          f"(+{t_done - t_tasks:.2f}s; cli {t_cli:.2f}s; states seen {states})")
    t_rm = time.monotonic()
    sh.remove(name)
    C.say(f"    (removed in {time.monotonic() - t_rm:.1f}s)")
    return {"tasks": t_tasks, "completed": t_done, "cli": t_cli}


def swarm_update(kind):
    args = ["bench_update.py", "--runs", "1"] + (["--stop-signal", "default"] if kind == "T" else [])
    lines = "\n".join(C.peer(*args))
    return {"tasks": C.num(r"all tasks new median=([\d.]+)", lines),
            "completed": C.num(r"status completed median=([\d.]+)", lines)}


def floor_replace():
    out = C.run([os.path.join(C.PEER, "bench_engine_floor.sh"), "30"], cwd=C.PEER)
    v = C.num(r"floor replace 30: ([\d.]+) s", out)
    s = C.num(r"floor start N=30: ([\d.]+) s", out)
    C.say(f"  floor (bench_engine_floor.sh 30): start 30 {s:.2f}s, replace 30 {v:.2f}s")
    return {"replace": v, "start": s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", default="K,T,K,K,T")
    ap.add_argument("--lab-run", default="/run/shoalbench-lab")
    ap.add_argument("--no-swarm", action="store_true")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--order", default="stop-first", choices=["stop-first", "start-first"],
                    help="Shoal's --update-order (the peer's bench_update.py keeps its own)")
    ap.add_argument("--out", default="/var/tmp/shoal-bench")
    a = ap.parse_args()
    C.LAB_RUN = a.lab_run
    sh = C.Shoal()
    sh.cleanup()
    os.makedirs(a.out, exist_ok=True)
    outf = os.path.join(a.out, "update-" + datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ") + ".json")
    R = {}
    for r, kind in enumerate(a.plan.split(",")):
        C.say(f"== round {r + 1}: {kind} ({datetime.datetime.utcnow().strftime('%H:%M:%S')} UTC)")
        steps = [lambda: R.setdefault(f"shoal {kind}", []).append(shoal_update(sh, r, kind, order=a.order))]
        if not a.no_swarm:
            steps.append(lambda: R.setdefault(f"swarm {kind}", []).append(swarm_update(kind)))
        if kind == "K" and not a.no_floor:
            steps.append(lambda: R.setdefault("floor", []).append(floor_replace()))
        k = r % len(steps)
        for f in steps[k:] + steps[:k]:
            f()
        with open(outf, "w") as f:
            json.dump(R, f, indent=1)
    pt = [x * 1000 for x in sh.poll_times]
    if pt:
        C.say(f"shoal poll cost (`service ps` fork): {len(pt)} polls, median {statistics.median(pt):.1f} ms, max {max(pt):.1f} ms")
    C.say(f"raw figures: {outf}")
    for key, xs in R.items():
        for field in xs[0]:
            C.say(f"{key} {field}: {C.fmt([x[field] for x in xs])}  ({len(xs)} runs)")


if __name__ == "__main__":
    main()
