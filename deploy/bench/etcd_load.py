#!/usr/bin/env python3
"""Write load on etcd through its HTTP/JSON gateway (python3 stdlib, asyncio, HTTP/1.1
keep-alive, one connection per client): CLIENTS clients each `PUT /v3/kv/put` a key of
their own in a loop for SECONDS. Each put is one Raft commit (fsynced on a majority
before the answer). Prints commits/s and latency percentiles.

  deploy/bench/etcd_load.py http://127.0.0.1:2379 CLIENTS SECONDS

This is the etcd side of the Raft comparison in docs/BENCHMARKS.md; the load generator
itself is Python, so on this 2-vCPU box it takes CPU from etcd (say so beside the figures).
"""
import asyncio, base64, json, sys, time
from urllib.parse import urlparse


async def client(host, port, cid, deadline, lat, errs):
    key = base64.b64encode(f"bench-{cid}".encode()).decode()
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    while time.monotonic() < deadline:
        body = json.dumps({"key": key, "value": base64.b64encode(str(i).encode()).decode()}).encode()
        req = (f"POST /v3/kv/put HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        t = time.monotonic()
        writer.write(req)
        await writer.drain()
        status = await reader.readline()
        n = 0
        chunked = False
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode().partition(":")
            if k.lower() == "content-length":
                n = int(v)
            if k.lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await reader.readline()).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(n)
        if b" 200 " in status:
            lat.append(time.monotonic() - t)
        else:
            errs.append(status)
        i += 1
    writer.close()


async def main():
    url, clients, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    u = urlparse(url)
    lat, errs = [], []
    deadline = time.monotonic() + secs
    t0 = time.monotonic()
    await asyncio.gather(*(client(u.hostname, u.port, c, deadline, lat, errs) for c in range(clients)))
    wall = time.monotonic() - t0
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, round((len(lat) - 1) * q))] * 1000 if lat else 0
    print(f"RESULT etcd_load clients={clients} secs={wall:.1f}: commits={len(lat)} commits/s={len(lat) / wall:.0f} "
          f"latency ms p50={p(0.5):.2f} p90={p(0.9):.2f} p99={p(0.99):.2f} max={p(1.0):.2f} errors={len(errs)}"
          + (f" (first: {errs[0]!r})" if errs else ""))


if __name__ == "__main__":
    asyncio.run(main())
