#!/usr/bin/env python3
"""Overlay benchmark: Shoal's VXLAN overlay beside Docker Swarm's, same run, same workload.

  deploy/bench/overlay.py [--runs 3] [--time 5] [--no-swarm] [--names 10]

Needs, already up (this script starts and stops neither):
  * Shoal's lab, 1 manager + 2 workers:
      SHOAL_BIN_DIR=/var/tmp/shoal-target/release deploy/lab.sh up --managers 1 --workers 2
  * the Swarm reference harness (../shared/peers/swarm/setup.sh), unless --no-swarm.
  * iperf3 on this machine (apt-get install iperf3): it is copied into an image on every
    lab host (shoal-test/iperf3), as the peer harness does for its own.

Items (per round, Shoal then the peer's own bench_overlay.py --runs 1, order rotating):
  throughput  iperf3, 1 TCP stream, --time seconds: underlay (host n2 -> host n1, the lab's
              veth-bridge-veth) and overlay (a task on n2 -> a task on n1, over the
              network's VXLAN); the ratio overlay / underlay. Swarm: the same two figures
              from its harness.
  encrypted   (--encrypted) the same overlay run on a network made with --opt encrypted
              (Shoal: QUIC between the nodes, in user space); the ratio encrypted / plain
              per round. Swarm: its harness's --encrypted figure (IPsec ESP, absent here).
  names       time from a task's process starting on n3 to its name (tasks.NAME) answering
              in a task on n2, both read from /proc/uptime in the containers (one kernel
              clock), --names times.
Prints a markdown table of median [min-max].
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.normpath(os.path.join(ROOT, "..", "shared", "peers", "swarm"))
LAB = os.path.join(ROOT, "deploy", "lab.sh")
IPERF_IMAGE = "shoal-test/iperf3"


def say(*a):
    print(*a, flush=True)


def run(cmd, check=True, timeout=300):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.stdout


def lab(*args, check=True):
    return run(["bash", LAB, *args], check=check)


def shoal(*args, check=True):
    return lab("shoal", "n1", *args, check=check)


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(xs, unit, digits=2):
    if not xs:
        return "FAILED"
    m, lo, hi = stats(xs)
    return f"{m:.{digits}f} {unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


def iperf_image():
    """shoal-test/iperf3 on every lab host: this machine's iperf3, its libraries, busybox."""
    have = all(subprocess.run(["bash", LAB, "docker", f"n{k}", "image", "inspect", IPERF_IMAGE],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
               for k in (1, 2, 3))
    if have:
        return
    iperf = run(["which", "iperf3"]).strip()
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/usr/bin")
        os.makedirs(f"{root}/bin")
        os.makedirs(f"{root}/tmp")
        os.chmod(f"{root}/tmp", 0o1777)
        run(["cp", iperf, f"{root}/usr/bin/iperf3"])
        run(["cp", "/bin/busybox", f"{root}/bin/busybox"])
        for applet in ("sh", "sleep", "cat"):
            os.symlink("busybox", f"{root}/bin/{applet}")
        for lib in re.findall(r"(/\S+\.so[\S]*)", run(["ldd", iperf])):
            os.makedirs(root + os.path.dirname(lib), exist_ok=True)
            run(["cp", "-L", lib, root + lib])
        tar = f"{root}.tar"
        run(["tar", "-C", root, "-cf", tar, "."])
        for k in (1, 2, 3):
            run(["bash", "-c", f"bash {LAB} docker n{k} import -c 'ENV PATH=/usr/bin:/bin' - {IPERF_IMAGE} < {tar}"])
        os.unlink(tar)


def gbps(out):
    j = json.loads(out)
    if "error" in j:
        raise RuntimeError(j["error"])
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


def container_of(host, service):
    out = lab("docker", f"n{host}", "ps", "-q", "--filter", f"label=shoal.service.name={service}")
    return out.split()[0] if out.split() else None


def wait(what, f, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def address_of(service):
    for line in shoal("service", "ps", "--format", "json", service).splitlines():
        t = json.loads(line)
        if t.get("CurrentState", "").startswith("Running") and t.get("NetworksAttachments"):
            return t["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
    return None


def shoal_underlay(secs):
    srv = subprocess.Popen(["bash", LAB, "exec", "n1", "iperf3", "-s", "-1", "-B", "10.78.0.11"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        out = lab("exec", "n2", "iperf3", "-c", "10.78.0.11", "-t", str(secs), "-J")
    finally:
        srv.wait(timeout=20)
    return gbps(out)


def shoal_overlay_setup(suffix="", opts=()):
    net = f"benchnet{suffix}"
    shoal("network", "create", "-d", "overlay", *opts, net, check=False)
    shoal("service", "create", "--detach", "--name", f"iperf-srv{suffix}", "--network", net,
          "--constraint", "node.hostname==n1", IPERF_IMAGE, "iperf3", "-s")
    shoal("service", "create", "--detach", "--name", f"iperf-cli{suffix}", "--network", net,
          "--constraint", "node.hostname==n2", IPERF_IMAGE, "sleep", "1000000")
    srv = wait(f"iperf-srv{suffix} running", lambda: address_of(f"iperf-srv{suffix}"))
    cli = wait(f"iperf-cli{suffix}'s container", lambda: container_of(2, f"iperf-cli{suffix}"))
    return srv, cli


def shoal_overlay(srv, cli, secs):
    out = lab("docker", "n2", "exec", cli, "iperf3", "-c", srv, "-t", str(secs), "-J")
    return gbps(out)


def name_time(cli):
    """Seconds from a task's process start on n3 to tasks.late answering on n2."""
    shoal("service", "rm", "late", check=False)
    wait("late gone", lambda: not container_of(3, "late") or None)
    # The poller starts first, then the task; both stamp /proc/uptime.
    poller = subprocess.Popen(
        ["bash", LAB, "docker", "n2", "exec", cli, "sh", "-c",
         "until nslookup tasks.late 2>/dev/null | grep -q 'Address: *10[.]'; do :; done; cat /proc/uptime"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.3)
    shoal("service", "create", "--detach", "--name", "late", "--network", "benchnet",
          "--constraint", "node.hostname==n3", "shoal-test/busybox:a", "sh", "-c",
          "cat /proc/uptime > /tmp/started; exec sleep 1000000")
    answered = float(poller.communicate(timeout=60)[0].split()[0])
    late = wait("late's container", lambda: container_of(3, "late"))
    started = float(wait("late's start stamp", lambda: lab(
        "docker", "n3", "exec", late, "cat", "/tmp/started", check=False).split() or None)[0])
    shoal("service", "rm", "late", check=False)
    return answered - started


def swarm_overlay(secs, encrypted=False):
    out = run(["python3", os.path.join(PEER, "bench_overlay.py"), "--runs", "1", "--time",
               str(secs)] + (["--encrypted"] if encrypted else []), timeout=600)
    m = re.search(r"underlay median=([\d.]+).*overlay median=([\d.]+)", out)
    if not m:
        raise RuntimeError(f"no RESULT from the peer's bench_overlay.py:\n{out[-600:]}")
    e = re.search(r"encrypted overlay (FAILED|median=[\d.]+)", out)
    return float(m.group(1)), float(m.group(2)), (e.group(1) if e else "-")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time", type=int, default=5)
    ap.add_argument("--names", type=int, default=10)
    ap.add_argument("--no-swarm", action="store_true")
    ap.add_argument("--encrypted", action="store_true")
    a = ap.parse_args()
    iperf_image()
    srv, cli = shoal_overlay_setup()
    if a.encrypted:
        esrv, ecli = shoal_overlay_setup("-enc", ("--opt", "encrypted"))
    res = {"shoal_under": [], "shoal_over": [], "swarm_under": [], "swarm_over": [], "names": [],
           "shoal_enc": [], "swarm_enc": []}
    for r in range(a.runs):
        order = ["shoal", "swarm"] if r % 2 == 0 else ["swarm", "shoal"]
        for who in order:
            if who == "shoal":
                u = shoal_underlay(a.time)
                o = shoal_overlay(srv, cli, a.time)
                res["shoal_under"].append(u)
                res["shoal_over"].append(o)
                say(f"round {r+1} shoal: underlay {u:.2f}, overlay {o:.2f} Gbit/s ({o/u:.2f})")
                if a.encrypted:
                    e = shoal_overlay(esrv, ecli, a.time)
                    res["shoal_enc"].append(e)
                    say(f"round {r+1} shoal: encrypted overlay {e:.2f} Gbit/s ({e/o:.2f} of plain)")
            elif not a.no_swarm:
                u, o, e = swarm_overlay(a.time, a.encrypted)
                res["swarm_enc"].append(e)
                res["swarm_under"].append(u)
                res["swarm_over"].append(o)
                say(f"round {r+1} swarm: underlay {u:.2f}, overlay {o:.2f} Gbit/s ({o/u:.2f})")
    for i in range(a.names):
        t = name_time(cli)
        res["names"].append(t)
        say(f"name {i+1}: {t*1000:.0f} ms")
    shoal("service", "rm", "iperf-srv", "iperf-cli", "iperf-srv-enc", "iperf-cli-enc",
          check=False)
    ratio = lambda u, o: [x / y for x, y in zip(o, u)]
    say("")
    say("| item | Shoal | Swarm |")
    say("| --- | --- | --- |")
    say(f"| iperf3 underlay, 1 stream {a.time}s | {fmt(res['shoal_under'], 'Gbit/s')} | {fmt(res['swarm_under'], 'Gbit/s')} |")
    say(f"| iperf3 overlay, task n2 -> task n1 | {fmt(res['shoal_over'], 'Gbit/s')} | {fmt(res['swarm_over'], 'Gbit/s')} |")
    say(f"| overlay / underlay (per round) | {fmt(ratio(res['shoal_under'], res['shoal_over']), '')} | {fmt(ratio(res['swarm_under'], res['swarm_over']), '')} |")
    if a.encrypted:
        say(f"| iperf3 encrypted overlay, task n2 -> task n1 | {fmt(res['shoal_enc'], 'Gbit/s')} | {'; '.join(res['swarm_enc']) or '-'} |")
        say(f"| encrypted / plain overlay (per round) | {fmt(ratio(res['shoal_over'], res['shoal_enc']), '')} | - |")
    say(f"| task start on n3 -> tasks.NAME answers on n2 | {fmt([t*1000 for t in res['names']], 'ms', 0)} | - |")


if __name__ == "__main__":
    sys.exit(main())
