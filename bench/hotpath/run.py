#!/usr/bin/env python3
"""Hot-path benchmark, one run, side by side, with wrk against 127.0.0.1 (bounded in time):

  bare                 a bare axum route (bench/src/bin/bare.rs), the yardstick
  pg durable           GET /whoami, valid keys, durable usage events, Postgres event store
  pg async             the same, KEYLEDGER_USAGE_DURABILITY=async
  pg invalid           GET /whoami with invalid keys (half unknown ids, half bad checksums)
  sqlite durable       GET /whoami, valid keys, durable usage, SQLite (synchronous=FULL)
  sqlite async         the same, async

For each: req/s, ratio to bare, p50, p99, non-2xx, CPU microseconds per request of the
server and of all postgres processes (from /proc/<pid>/stat utime+stime), usage events per
group commit, and the usage projector's lag (sampled from /metrics every 100 ms, in events,
converted to ms at the case's rate). `--idle` (also part of a run without --only) measures
an idle node's CPU over 30 s, embedded and on Postgres.

Usage: python3 bench/hotpath/run.py [--duration 8] [--connections 64] [--keys 400]
                                    [--only pg,sqlite,bare,idle] [--idle-seconds 30]
Needs: wrk (Debian: apt-get install -y wrk), Postgres (KEYLEDGER_BENCH_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432/postgres, on this machine: its processes are measured),
release binaries (cargo build --release -p api -p bench --bins).
"""
import argparse, json, os, re, secrets, shutil, subprocess, sys, tempfile, threading, time
import urllib.request, uuid, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target", "release")
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TICK = os.sysconf("SC_CLK_TCK")


def b62(n, width):
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(width, "0")


def fake_token(valid_checksum=True):
    """A well-formed token for a key id nobody created (or with a wrong checksum)."""
    body = "kl_live_" + b62(uuid.uuid4().int, 22) + "_" + b62(int.from_bytes(secrets.token_bytes(32), "big"), 43)
    crc = zlib.crc32(body.encode())
    if not valid_checksum:
        crc ^= 1
    return body + b62(crc, 6)


def cpu_seconds(pids):
    """utime + stime of the given processes, in seconds (vanished processes count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / TICK


def postgres_pids():
    out = subprocess.run(["ps", "-C", "postgres", "-o", "pid="], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class CpuMeter:
    """CPU of the server and of every postgres process between start() and stop(); postgres
    backends that exit in between are lost, so the bench keeps its connections open."""

    def __init__(self, server_pid):
        self.server_pid = server_pid

    def start(self):
        self.pg_pids = postgres_pids()
        self.s0, self.p0 = cpu_seconds([self.server_pid]), cpu_seconds(self.pg_pids)
        return self

    def stop(self):
        pg_now = postgres_pids()
        new = [p for p in pg_now if p not in self.pg_pids]  # started during the case
        return (cpu_seconds([self.server_pid]) - self.s0,
                cpu_seconds(self.pg_pids) - self.p0 + cpu_seconds(new))


def start(cmd, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    lines = []
    while True:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"{cmd[0]} exited: {lines}")
        lines.append(line.strip())
        m = re.match(r"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, m.group(1), lines


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def http(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def metric(base, name):
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wrk(url, duration, connections, tokens_file=None):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    env = dict(os.environ)
    if tokens_file:
        cmd[1:1] = ["-s", os.path.join(ROOT, "bench", "hotpath", "tokens.lua")]
        env["TOKENS_FILE"] = tokens_file
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "p50_ms": pct(50), "p99_ms": pct(99), "socket_errors": errors.group(1) if errors else "",
            "raw": out}


def progress(text):
    """A line on stderr as each step ends, so a long run shows where it is."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Node:
    """One keyledger server with its keys."""

    def __init__(self, env, label):
        self.label = label
        self.proc, self.url, self.lines = start([os.path.join(REL, "keyledger"), "serve"], env)
        self.root = next((l.split("store it now): ")[1] for l in self.lines if "store it now" in l), None)
        self.org = next((l.split("(plan enterprise): ")[1] for l in self.lines if "(plan enterprise)" in l), None)

    def create_keys(self, n, tmp):
        # Four at a time: each create hashes its secret with argon2 (the slow part).
        from concurrent.futures import ThreadPoolExecutor
        def one(i):
            return http("POST", f"{self.url}/organizations/{self.org}/api-keys", self.root,
                        {"name": f"bench {i}", "scopes": ["work-orders:read"]})["secret"]
        with ThreadPoolExecutor(4) as pool:
            tokens = list(pool.map(one, range(n)))
        path = os.path.join(tmp, f"tokens-{self.label}")
        open(path, "w").write("\n".join(tokens))
        return path

    def warm(self, tokens_file):
        # A node's first verification of a key runs argon2 once.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda t: http("GET", f"{self.url}/whoami", t),
                          open(tokens_file).read().split("\n")))

    def wait_projected(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if metric(self.url, 'keyledger_projector_lag_events{projection="key_usage"}') == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        stop(self.proc)


def measure(node, url, args, tokens_file, with_pg):
    """One wrk case against `node`, with CPU, group commits and projection lag."""
    b0 = metric(node.url, "keyledger_usage_batch_size_count")
    e0 = metric(node.url, "keyledger_usage_batch_size_sum")
    lags, done = [], threading.Event()

    def sample():
        while not done.is_set():
            try:
                lags.append(metric(node.url, 'keyledger_projector_lag_events{projection="key_usage"}'))
            except Exception:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    meter = CpuMeter(node.proc.pid).start()
    r = wrk(url, args.duration, args.connections, tokens_file)
    server_s, pg_s = meter.stop()
    done.set()
    sampler.join()
    node.wait_projected()
    batches = metric(node.url, "keyledger_usage_batch_size_count") - b0
    events = metric(node.url, "keyledger_usage_batch_size_sum") - e0
    n = max(1, r["requests"])
    progress(f"{node.label}: {r['rps']:,.0f} req/s, p99 {r['p99_ms']:.2f} ms")
    r["server_us"] = server_s * 1e6 / n
    r["pg_us"] = pg_s * 1e6 / n if with_pg else None
    r["events"] = events
    r["per_commit"] = events / batches if batches else None
    if lags and events:
        lags.sort()
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        r["lag_p99_ms"] = p99 / r["rps"] * 1000
        r["lag_p99_events"] = p99
    return r


def idle(env, seconds, with_pg, label):
    node = Node(env, label)
    try:
        time.sleep(3)  # start-up work (migrations, first catch-up) is not idling
        meter = CpuMeter(node.proc.pid).start()
        time.sleep(seconds)
        server_s, pg_s = meter.stop()
    finally:
        node.stop()
    return {"server_pct": server_s / seconds * 100, "pg_pct": pg_s / seconds * 100 if with_pg else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--keys", type=int, default=400)
    ap.add_argument("--only", default="bare,pg,sqlite,idle",
                    help="comma-separated subset of bare,pg,sqlite,idle")
    ap.add_argument("--idle", action="store_true", help="only the idle measurement")
    ap.add_argument("--idle-seconds", type=int, default=30)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    only = {"idle"} if args.idle else set(args.only.split(","))

    admin = os.environ.get("KEYLEDGER_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    tmp = tempfile.mkdtemp(prefix="kl-hotpath-")
    dbs = []

    def pg_db():
        db = "kl_bench_" + uuid.uuid4().hex[:12]
        subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {db}"], check=True)
        dbs.append(db)
        return admin.rsplit("/", 1)[0] + "/" + db

    base_env = dict(os.environ, KEYLEDGER_LISTEN="127.0.0.1:0", RUST_LOG="warn")
    results, idles, notes = {}, {}, []
    bare_proc = None
    try:
        if "bare" in only or "pg" in only or "sqlite" in only:
            bare_proc, bare_url, _ = start([os.path.join(REL, "bare"), "127.0.0.1:0"])
            meter = CpuMeter(bare_proc.pid).start()
            results["bare"] = r = wrk(bare_url + "/", args.duration, args.connections)
            s, _ = meter.stop()
            r["server_us"] = s * 1e6 / max(1, r["requests"])
            progress(f"bare: {r['rps']:,.0f} req/s, p99 {r['p99_ms']:.2f} ms")
            stop(bare_proc)
            bare_proc = None

        for backend in ("pg", "sqlite"):
            if backend not in only:
                continue
            url = pg_db() if backend == "pg" else "sqlite://" + os.path.join(tmp, "bench.db")
            env = dict(base_env, KEYLEDGER_DATABASE_URL=url)
            with_pg = backend == "pg"
            tokens = None
            for mode in ("durable", "async"):
                node = Node(dict(env, KEYLEDGER_USAGE_DURABILITY=mode), f"{backend}-{mode}")
                try:
                    if tokens is None:
                        t0 = time.time()
                        tokens = node.create_keys(args.keys, tmp)
                        notes.append(f"{backend}: {args.keys} keys created in {time.time() - t0:.1f} s")
                    node.warm(tokens)
                    results[f"{backend} {mode}"] = measure(node, node.url, args, tokens, with_pg)
                    if mode == "durable" and backend == "pg":
                        bad = os.path.join(tmp, "bad")
                        open(bad, "w").write("\n".join(fake_token(i % 2 == 0) for i in range(1000)))
                        results["pg invalid keys"] = measure(node, node.url, args, bad, with_pg)
                finally:
                    node.stop()

        if "idle" in only:
            idles["embedded (SQLite)"] = idle(dict(base_env, KEYLEDGER_DATABASE_URL="sqlite://" + os.path.join(tmp, "idle.db")),
                                             args.idle_seconds, False, "idle-sqlite")
            idles["Postgres"] = idle(dict(base_env, KEYLEDGER_DATABASE_URL=pg_db()), args.idle_seconds, True, "idle-pg")
    finally:
        if bare_proc:
            stop(bare_proc)
        for db in dbs:
            subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

    bare_rps = results.get("bare", {}).get("rps")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s, {args.keys} keys; " + "; ".join(notes))
    print()
    print("| case | req/s | vs bare | p50 ms | p99 ms | non-2xx | server CPU us/req | Postgres CPU us/req | events/commit | lag p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        ratio = r["rps"] / bare_rps if bare_rps else None
        lag = f"{r['lag_p99_ms']:.0f} ms" if r.get("lag_p99_ms") is not None else "-"
        print(f"| {name} | {r['rps']:,.0f} | {f(ratio, '.2f')} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['non2xx']:,} | {f(r.get('server_us'), '.1f')} | {f(r.get('pg_us'), '.1f')} | "
              f"{f(r.get('per_commit'), '.1f')} | {lag} |")
        if r.get("socket_errors"):
            print(f"<!-- {name}: socket errors {r['socket_errors']} -->")
    if idles:
        print()
        print(f"| idle node ({args.idle_seconds} s) | server, % of one core | Postgres, % of one core |")
        print("| --- | ---: | ---: |")
        for name, r in idles.items():
            print(f"| {name} | {r['server_pct']:.2f}% | {f(r['pg_pct'], '.2f')}{'%' if r['pg_pct'] is not None else ''} |")
    if args.json:
        json.dump({"cases": {k: {x: y for x, y in v.items() if x != "raw"} for k, v in results.items()},
                   "idle": idles}, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
