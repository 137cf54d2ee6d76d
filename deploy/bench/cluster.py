#!/usr/bin/env python3
"""Cluster benchmark: Shoal on deploy/lab.sh beside Docker Swarm and the engine floor, interleaved.

  deploy/bench/cluster.py [--runs 3] [--sizes 10,50,100] [--only memory,create,scale,drain]
                          [--no-swarm] [--no-floor] [--out DIR]

Needs, already up (this script starts and stops neither):
  * Shoal's lab, 1 manager + 2 workers, release binaries:
      SHOAL_BIN_DIR=/var/tmp/shoal-target/release deploy/lab.sh up --managers 1 --workers 2
    or the same lab under other names (so the test lab can come and go meanwhile):
      SHOAL_BIN_DIR=/var/tmp/shoal-target/release deploy/bench/lab_private.sh up --managers 1 --workers 2
      and --lab-run /run/shoalbench-lab
  * the Swarm reference harness (../shared/peers/swarm/setup.sh), unless --no-swarm.

Workload and rules are the peer harness's (../shared/peers/swarm/README.md): busybox
`sleep 1000000`, `--stop-signal KILL`, the clock starts just before the CLI command is
launched, the control plane is polled every 100 ms, every run starts from a clean state
(previous service removed and all its containers gone on every node, then 3 s idle).
Shoal is polled with `shoal service ps --format json` against n1's socket (a CLI fork per
poll; the poll's own cost is printed). Per round, the Shoal run, the peer's own script
(`bench_*.py --runs 1`) and the floor (`bench_engine_floor.sh N`) are run back to back; the
order rotates from one round to the next.

Items:
  create  N = 10, 50, 100: until N running, and until the first task runs.
  floors  bench_engine_floor.sh N (swarm harness engines, `--network none`), and the same N
          started on the lab's engines with docker's default bridge, which Shoal's tasks use.
  scale   10 -> 100 until 100 running; 100 -> 10 until only 10 tasks still running.
          Floor for the way up: bench_engine_floor.sh 90; for the way down: 90 containers
          `docker kill`ed straight on the lab's three engines, 4 at a time per engine.
  drain   30 replicas, `node update --availability drain n2` (a worker): until all 30 run
          elsewhere, until n2 has no running container of the service, and the fewest tasks
          a 100 ms poll saw running (any desired state, and desired=running only). The same
          poller is run once per round against Swarm (swb-node2) for its dip. Floor: the 10
          replacements started straight on the other hosts' engines, 4 at a time per engine.
  memory  VmRSS (and PSS) of each host's shoald, from /proc: idle, with 100 tasks spread,
          after removing them (median of 3 samples 2 s apart).
Writes raw figures as JSON into --out (default /var/tmp/shoal-bench) and prints a markdown
table of median [min-max] at the end.
"""
import argparse, datetime, http.client, json, os, re, socket, statistics, subprocess, sys, time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.normpath(os.path.join(ROOT, "..", "shared", "peers", "swarm"))
BIN = os.environ.get("SHOAL_BIN_DIR", "/var/tmp/shoal-target/release")
LAB_RUN = "/run/shoal-lab"
IMAGE = "shoal-test/busybox:a"
POLL = 0.1
SETTLE = 3.0
TIMEOUT = 300


def say(*a):
    print(*a, flush=True)


def run(cmd, check=True, cwd=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return p.stdout


# ------------------------------------------------------------------ docker engine API (unix socket)
class _UConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


_conns = {}


def engine_get(sock, path, params=None):
    q = ""
    if params:
        q = "?" + urllib.parse.urlencode(
            {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()})
    for attempt in (1, 2):
        c = _conns.get(sock) or _conns.setdefault(sock, _UConn(sock))
        try:
            c.request("GET", f"/v1.41{path}{q}")
            r = c.getresponse()
            body = r.read()
        except (http.client.HTTPException, OSError):
            c.close()
            _conns.pop(sock, None)
            if attempt == 2:
                raise
            continue
        if r.status >= 300:
            raise RuntimeError(f"GET {path} -> {r.status} {body[:200]!r}")
        return json.loads(body) if body else None


# ------------------------------------------------------------------ Shoal on the lab
class Shoal:
    label = "shoal.service.name"

    def __init__(self):
        self.hosts = sorted(int(d[1:]) for d in os.listdir(LAB_RUN)
                            if re.fullmatch(r"n\d+", d) and os.path.exists(self.dsock(int(d[1:]))))
        if not self.hosts:
            sys.exit(f"no lab host under {LAB_RUN}: run SHOAL_BIN_DIR={BIN} deploy/lab.sh up first")
        self.poll_times = []

    @staticmethod
    def dsock(k):
        return f"{LAB_RUN}/n{k}/docker.sock"

    def cli_cmd(self, *args, k=1):
        return [os.path.join(BIN, "shoal"), "-H", f"unix://{LAB_RUN}/n{k}/shoald.sock", *args]

    def cli(self, *args, k=1, check=True):
        return run(self.cli_cmd(*args, k=k), check=check)

    def tasks(self, name):
        t = time.monotonic()
        out = self.cli("service", "ps", "--format", "json", name)
        self.poll_times.append(time.monotonic() - t)
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    @staticmethod
    def running(ts, exclude_node=None, desired=True):
        n = 0
        for t in ts:
            if not t["CurrentState"].lower().startswith("running"):
                continue
            if desired and t["DesiredState"].lower() != "running":
                continue
            if exclude_node and t["Node"] == exclude_node:
                continue
            n += 1
        return n

    def containers(self, k, name, all_=True):
        return engine_get(self.dsock(k), "/containers/json",
                          {"all": "1" if all_ else "0", "filters": {"label": [f"{self.label}={name}"]}})

    def all_containers(self, name, all_=True):
        return sum(len(self.containers(k, name, all_)) for k in self.hosts)

    def create_args(self, name, n):
        return ["service", "create", "-d", "--name", name, "--replicas", str(n),
                "--stop-signal", "KILL", IMAGE, "sleep", "1000000"]

    def remove(self, name):
        self.cli("service", "rm", name, check=False)
        wait(lambda: self.all_containers(name) == 0, f"containers of {name} gone", poll=0.5)

    def services(self):
        out = self.cli("service", "ls", "--format", "json")
        return [json.loads(l)["Name"] for l in out.splitlines() if l.strip()]

    def cleanup(self):
        for s in self.services():
            self.remove(s)

    def shoald_pid(self, k):
        return int(open(f"{LAB_RUN}/n{k}/shoald.pid").read().strip())

    def dockerd_pid(self, k):
        return int(open(f"{LAB_RUN}/n{k}/docker.pid").read().strip())


def wait(pred, what, timeout=TIMEOUT, poll=POLL):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timeout waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - t0


# ------------------------------------------------------------------ Shoal items
def shoal_create(sh, n, r):
    name = f"shb-create-{n}-{r}"
    time.sleep(SETTLE)
    t0 = time.monotonic()
    sh.cli(*sh.create_args(name, n))
    t_cli = time.monotonic() - t0
    first = None
    while True:
        ts = sh.tasks(name)
        k = sh.running(ts)
        now = time.monotonic() - t0
        if k and first is None:
            first = now
        if k >= n:
            break
        if now > TIMEOUT:
            raise TimeoutError(f"{name}: {k}/{n} running")
        time.sleep(POLL)
    total = time.monotonic() - t0
    spread = {}
    for t in ts:
        if t["CurrentState"].lower().startswith("running"):
            spread[t["Node"]] = spread.get(t["Node"], 0) + 1
    say(f"  shoal create N={n}: all running {total:.2f}s (cli {t_cli:.2f}s, first {first:.2f}s) "
        f"spread={dict(sorted(spread.items()))}")
    sh.remove(name)
    return {"total": total, "first": first, "cli": t_cli}


def shoal_scale(sh, r, low=10, high=100):
    name = f"shb-scale-{r}"
    sh.cli(*sh.create_args(name, low))
    wait(lambda: sh.running(sh.tasks(name)) == low, "initial")
    wait(lambda: sh.all_containers(name) == low, "clean start")
    time.sleep(SETTLE)
    t0 = time.monotonic()
    sh.cli("service", "scale", "-d", f"{name}={high}")
    wait(lambda: sh.running(sh.tasks(name)) == high, "scale up")
    up = time.monotonic() - t0
    time.sleep(SETTLE)
    t0 = time.monotonic()
    sh.cli("service", "scale", "-d", f"{name}={low}")
    wait(lambda: sh.running(sh.tasks(name), desired=False) == low, "scale down")
    down = time.monotonic() - t0
    wait(lambda: sh.all_containers(name, all_=False) == low, "containers stopped")
    gone = time.monotonic() - t0
    say(f"  shoal scale: up {up:.2f}s, down {down:.2f}s (containers stopped {gone:.2f}s)")
    sh.remove(name)
    return {"up": up, "down": down, "down_gone": gone}


def drain_probe(tasks, running, node_containers, drain, undrain, create, remove, node, name, replicas):
    """Generic drain run: returns t_else, t_empty, on_node, min running (any desired / desired)."""
    create()
    wait(lambda: running(tasks(name)) == replicas, "initial")
    on_node = sum(1 for t in tasks(name) if t["_node"] == node and t["_running"])
    time.sleep(SETTLE)
    t0 = time.monotonic()
    drain()
    t_else = t_empty = None
    min_any = min_des = replicas
    while t_else is None or t_empty is None:
        ts = tasks(name)
        now = time.monotonic() - t0
        min_any = min(min_any, running(ts, desired=False))
        min_des = min(min_des, running(ts))
        if t_else is None and running(ts, exclude_node=node) == replicas:
            t_else = time.monotonic() - t0
        if t_empty is None and node_containers() == 0:
            t_empty = time.monotonic() - t0
        if now > TIMEOUT:
            raise TimeoutError("drain")
        time.sleep(POLL)
    # keep watching 1 s more: a dip right after the predicates hold counts too
    for _ in range(10):
        ts = tasks(name)
        min_any = min(min_any, running(ts, desired=False))
        min_des = min(min_des, running(ts))
        time.sleep(POLL)
    undrain()
    remove()
    return {"else": t_else, "empty": t_empty, "on_node": on_node, "min_any": min_any, "min_desired": min_des}


def shoal_drain(sh, r, replicas=30, node="n2"):
    name = f"shb-drain-{r}"
    k = int(node[1:])

    def tasks(nm):
        ts = sh.tasks(nm)
        for t in ts:
            t["_node"] = t["Node"]
            t["_running"] = t["CurrentState"].lower().startswith("running") and t["DesiredState"].lower() == "running"
        return ts
    sh.cli("node", "update", "--availability", "active", node)
    res = drain_probe(tasks, sh.running, lambda: len(sh.containers(k, name, all_=False)),
                      lambda: sh.cli("node", "update", "--availability", "drain", node),
                      lambda: sh.cli("node", "update", "--availability", "active", node),
                      lambda: sh.cli(*sh.create_args(name, replicas)), lambda: sh.remove(name),
                      node, name, replicas)
    say(f"  shoal drain {node}: {res['on_node']} tasks there; all elsewhere {res['else']:.2f}s, "
        f"node empty {res['empty']:.2f}s; fewest running seen {res['min_any']} (desired=running: {res['min_desired']})")
    return res


def swarm_drain_dip(r, replicas=30, node=2):
    """The same poller against Swarm, for the dip only (the timings come from the peer's script)."""
    sys.path.insert(0, PEER)
    import swb
    host = f"swb-node{node}"
    nid = [i for i, h in swb.nodes().items() if h == host][0]
    name = f"shb-swdip-{r}"

    def tasks(nm):
        ts = swb.tasks(nm)
        for t in ts:
            t["_node"] = t.get("NodeID")
            t["_running"] = t["Status"]["State"] == "running" and t.get("DesiredState") == "running"
        return ts
    res = drain_probe(tasks, swb.running, lambda: len(swb.containers(node, name, all_=False)),
                      lambda: swb.cli(1, "node", "update", "--availability", "drain", host),
                      lambda: swb.cli(1, "node", "update", "--availability", "active", host),
                      lambda: swb.cli(1, *swb.create_args(name, replicas)), lambda: swb.remove_service(name),
                      nid, name, replicas)
    say(f"  swarm drain (this poller) {host}: {res['on_node']} there; all elsewhere {res['else']:.2f}s, "
        f"node empty {res['empty']:.2f}s; fewest running seen {res['min_any']} (desired=running: {res['min_desired']})")
    return res


def floor_down(sh, total=100, kill=90, par=4):
    """Scale-down floor: `docker kill` of `kill` of `total` containers straight on the lab engines."""
    lab = "shoal-floorbench"
    hosts = sh.hosts

    def d(k, *a):
        return run(["docker", "-H", f"unix://{sh.dsock(k)}", *a])

    def clean():
        for k in hosts:
            ids = d(k, "ps", "-aq", "--filter", f"label={lab}").split()
            if ids:
                d(k, "rm", "-f", *ids)
    clean()
    per = {k: [] for k in hosts}
    for i in range(total):
        per[hosts[i % len(hosts)]].append(i)
    with ThreadPoolExecutor(par * len(hosts)) as pool:
        list(pool.map(lambda kk: d(kk, "run", "-d", "--network", "none", "--label", lab, IMAGE, "sleep", "1000000"),
                      [k for k in hosts for _ in per[k]]))
    victims = []
    for k in hosts:
        ids = d(k, "ps", "-q", "--filter", f"label={lab}").split()
        victims += [(k, c) for c in ids[:kill // len(hosts)]]
    time.sleep(SETTLE)
    t0 = time.monotonic()
    with ThreadPoolExecutor(par * len(hosts)) as pool:
        list(pool.map(lambda kc: d(kc[0], "kill", kc[1]), victims))
    t = time.monotonic() - t0
    clean()
    say(f"  floor kill {len(victims)} (lab engines, {par} at a time per engine): {t:.2f}s")
    return t


def floor_bridge(sh, n, par=4, hosts=None):
    """Start floor on the lab's engines with docker's default bridge (the network Shoal's tasks
    use today), n containers spread over the hosts (all, or those given), par at a time per
    engine."""
    lab = "shoal-floorbridge"
    hosts = hosts or sh.hosts

    def d(k, *a):
        return run(["docker", "-H", f"unix://{sh.dsock(k)}", *a])

    def clean():
        for k in hosts:
            ids = d(k, "ps", "-aq", "--filter", f"label={lab}").split()
            if ids:
                d(k, "rm", "-f", *ids)
    clean()
    time.sleep(SETTLE)
    jobs = [hosts[i % len(hosts)] for i in range(n)]
    t0 = time.monotonic()

    def per_host(k):
        with ThreadPoolExecutor(par) as pool:
            list(pool.map(lambda _: d(k, "run", "-d", "--label", lab, IMAGE, "sleep", "1000000"),
                          [j for j in jobs if j == k]))
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(per_host, hosts))
    t = time.monotonic() - t0
    clean()
    say(f"  floor start N={n} (lab engines {hosts}, default bridge, {par} at a time per engine): {t:.2f}s")
    return t


# ------------------------------------------------------------------ peer scripts
def peer(script, *args):
    out = run([os.path.join(PEER, script), *args], cwd=PEER)
    res = [l for l in out.splitlines() if l.startswith("RESULT")]
    for l in out.splitlines():
        if l.startswith("run") or l.startswith("RESULT"):
            say(f"  swarm {script}: {l}")
    return res


def num(pat, text):
    m = re.search(pat, text)
    if not m:
        raise RuntimeError(f"no {pat!r} in {text!r}")
    return float(m.group(1))


def swarm_create(n):
    lines = "\n".join(peer("bench_create.py", "--runs", "1", "--replicas", str(n)))
    return {"total": num(rf"create N={n}: median=([\d.]+)", lines),
            "first": num(r"first task running median=([\d.]+)", lines)}


def swarm_scale():
    lines = "\n".join(peer("bench_scale.py", "--runs", "1"))
    return {"up": num(r"scale up \d+->\d+: median=([\d.]+)", lines),
            "down": num(r"scale down \d+->\d+: median=([\d.]+)", lines)}


def swarm_drain():
    lines = "\n".join(peer("bench_drain.py", "--runs", "1"))
    return {"else": num(r"elsewhere median=([\d.]+)", lines), "empty": num(r"emptied median=([\d.]+)", lines)}


def engine_floor(n):
    out = run([os.path.join(PEER, "bench_engine_floor.sh"), str(n)], cwd=PEER)
    v = num(rf"floor start N={n}: ([\d.]+) s", out)
    say(f"  floor start N={n} (swarm harness engines, 4 at a time per engine): {v:.2f}s")
    return v


# ------------------------------------------------------------------ memory
def kib(pid, field, fname="status"):
    try:
        with open(f"/proc/{pid}/{fname}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def shoald_mem(sh, label, samples=3):
    rows = []
    for _ in range(samples):
        row = {}
        for k in sh.hosts:
            sp, dp = sh.shoald_pid(k), sh.dockerd_pid(k)
            row[k] = (kib(sp, "VmRSS") / 1024, kib(sp, "Pss", "smaps_rollup") / 1024, kib(dp, "VmRSS") / 1024)
        rows.append(row)
        time.sleep(2)
    med = {f"n{k}": {"rss": statistics.median(r[k][0] for r in rows), "pss": statistics.median(r[k][1] for r in rows),
                     "dockerd_rss": statistics.median(r[k][2] for r in rows)}
           for k in sh.hosts}
    say(f"  shoald memory, {label}: " + "; ".join(f"{h} RSS {v['rss']:.1f} MiB (PSS {v['pss']:.1f}; "
                                                   f"its dockerd, not in swarm mode: RSS {v['dockerd_rss']:.1f})"
                                                   for h, v in med.items()))
    return med


def shoal_memory(sh, replicas=100):
    out = {"idle": shoald_mem(sh, "idle")}
    name = "shb-mem"
    sh.cli(*sh.create_args(name, replicas))
    wait(lambda: sh.running(sh.tasks(name)) == replicas, "memory service")
    time.sleep(10)
    out["tasks"] = shoald_mem(sh, f"{replicas} tasks")
    sh.remove(name)
    time.sleep(5)
    out["after"] = shoald_mem(sh, "after removing them")
    return out


# ------------------------------------------------------------------ main
def fmt(xs, nd=2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{statistics.median(xs):.{nd}f} [{min(xs):.{nd}f}-{max(xs):.{nd}f}]"


def main():
    global SETTLE, LAB_RUN
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="10,50,100")
    ap.add_argument("--only", default="memory,create,scale,drain")
    ap.add_argument("--no-swarm", action="store_true")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--settle", type=float, default=SETTLE)
    ap.add_argument("--out", default="/var/tmp/shoal-bench")
    ap.add_argument("--lab-run", default=LAB_RUN, help="the lab's run dir (/run/shoalbench-lab for lab_private.sh)")
    a = ap.parse_args()
    SETTLE = a.settle
    LAB_RUN = a.lab_run
    only = set(a.only.split(","))
    sizes = [int(s) for s in a.sizes.split(",")]
    sh = Shoal()
    nodes = [json.loads(l) for l in sh.cli("node", "ls", "--format", "json").splitlines() if l.strip()]
    say(f"shoal lab: {len(nodes)} nodes: " + ", ".join(f"{n['Hostname']} {n['ManagerStatus'] or 'worker'}" for n in nodes))
    sh.cleanup()
    R = {}

    def add(key, v):
        R.setdefault(key, []).append(v)

    os.makedirs(a.out, exist_ok=True)
    outf = os.path.join(a.out, "cluster-" + datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ") + ".json")
    if "memory" in only:
        say("== memory")
        R["memory"] = shoal_memory(sh)
    for r in range(a.runs):
        rot = lambda xs: xs[r % len(xs):] + xs[:r % len(xs)]
        if "create" in only:
            for n in sizes:
                say(f"== round {r + 1}: create N={n}")
                steps = [("shoal", lambda: add(("create", n, "shoal"), shoal_create(sh, n, r)))]
                if not a.no_swarm:
                    steps.append(("swarm", lambda: add(("create", n, "swarm"), swarm_create(n))))
                if not a.no_floor:
                    steps.append(("floor", lambda: add(("create", n, "floor"), {"total": engine_floor(n)})))
                    steps.append(("floorbr", lambda: add(("create", n, "floorbr"), {"total": floor_bridge(sh, n)})))
                for _, f in rot(steps):
                    f()
        if "scale" in only:
            say(f"== round {r + 1}: scale")
            steps = [("shoal", lambda: add(("scale", "shoal"), shoal_scale(sh, r)))]
            if not a.no_swarm:
                steps.append(("swarm", lambda: add(("scale", "swarm"), swarm_scale())))
            if not a.no_floor:
                steps.append(("floor", lambda: add(("scale", "floor"), {"up": engine_floor(90), "down": floor_down(sh)})))
                steps.append(("floorbr", lambda: add(("scale", "floorbr"), {"up": floor_bridge(sh, 90)})))
            for _, f in rot(steps):
                f()
        if "drain" in only:
            say(f"== round {r + 1}: drain")
            steps = [("shoal", lambda: add(("drain", "shoal"), shoal_drain(sh, r)))]
            if not a.no_swarm:
                steps.append(("swarm", lambda: add(("drain", "swarm"), swarm_drain())))
                steps.append(("swarmdip", lambda: add(("drain", "swarm-dip"), swarm_drain_dip(r))))
            if not a.no_floor:
                # The drain's own floor: its 10 replacements started straight on the engines
                # that take them (every host but n2), as Shoal starts them.
                others = [k for k in sh.hosts if k != 2]
                steps.append(("floordrain", lambda: add(("drain", "floor"),
                                                        {"else": floor_bridge(sh, 10, hosts=others)})))
            for _, f in rot(steps):
                f()
        with open(outf, "w") as f:
            json.dump({" ".join(map(str, k)) if isinstance(k, tuple) else k: v for k, v in R.items()}, f, indent=1)
    pt = [x * 1000 for x in sh.poll_times]
    if pt:
        say(f"shoal poll cost (`service ps --format json` fork): {len(pt)} polls, median {statistics.median(pt):.1f} ms, "
            f"max {max(pt):.1f} ms")
    say(f"raw figures: {outf}")

    def col(key, field):
        return fmt([x[field] for x in R.get(key, [])])

    say("\n| item | Shoal | Swarm | floor (--network none) | Shoal / floor | floor (default bridge) | Shoal / bridge floor |\n"
        "| --- | --- | --- | --- | --- | --- | --- |")

    def ratio(k1, f1, k2, f2):
        try:
            return f"{statistics.median(x[f1] for x in R[k1]) / statistics.median(x[f2] for x in R[k2]):.2f}"
        except (KeyError, statistics.StatisticsError):
            return "n/a"
    for n in sizes:
        if ("create", n, "shoal") in R:
            say(f"| create N={n}, all running (s) | {col(('create', n, 'shoal'), 'total')} | "
                f"{col(('create', n, 'swarm'), 'total')} | {col(('create', n, 'floor'), 'total')} | "
                f"{ratio(('create', n, 'shoal'), 'total', ('create', n, 'floor'), 'total')} | "
                f"{col(('create', n, 'floorbr'), 'total')} | {ratio(('create', n, 'shoal'), 'total', ('create', n, 'floorbr'), 'total')} |")
            say(f"| create N={n}, first running (s) | {col(('create', n, 'shoal'), 'first')} | "
                f"{col(('create', n, 'swarm'), 'first')} | | | | |")
    if ("scale", "shoal") in R:
        say(f"| scale 10->100 (s) | {col(('scale', 'shoal'), 'up')} | {col(('scale', 'swarm'), 'up')} | "
            f"{col(('scale', 'floor'), 'up')} (start 90) | {ratio(('scale', 'shoal'), 'up', ('scale', 'floor'), 'up')} | "
            f"{col(('scale', 'floorbr'), 'up')} (start 90) | {ratio(('scale', 'shoal'), 'up', ('scale', 'floorbr'), 'up')} |")
        say(f"| scale 100->10 (s) | {col(('scale', 'shoal'), 'down')} | {col(('scale', 'swarm'), 'down')} | "
            f"{col(('scale', 'floor'), 'down')} (kill 90) | {ratio(('scale', 'shoal'), 'down', ('scale', 'floor'), 'down')} | | |")
    if ("drain", "shoal") in R:
        say(f"| drain n2, all 30 running elsewhere (s) | {col(('drain', 'shoal'), 'else')} | "
            f"{col(('drain', 'swarm'), 'else')} | | | {col(('drain', 'floor'), 'else')} | |")
        say(f"| drain n2, node empty (s) | {col(('drain', 'shoal'), 'empty')} | {col(('drain', 'swarm'), 'empty')} | | | | |")
        say(f"| drain, fewest running seen (any / desired=running) | "
            f"{min(x['min_any'] for x in R[('drain', 'shoal')])} / {min(x['min_desired'] for x in R[('drain', 'shoal')])} | "
            + (f"{min(x['min_any'] for x in R[('drain', 'swarm-dip')])} / {min(x['min_desired'] for x in R[('drain', 'swarm-dip')])}"
               if ("drain", "swarm-dip") in R else "n/a") + " | | | | |")


if __name__ == "__main__":
    main()
