#!/usr/bin/env python3
"""Hot-path benchmark: (a) a bare axum route, (b) GET /whoami with valid keys and durable
usage recording on Postgres, (c) the same with invalid keys; all in one run, side by side,
with wrk against 127.0.0.1, bounded in time. Also the argon2 verifications per request in
(b) and (c), from the server's /metrics.

Usage: python3 bench/hotpath/run.py [--duration 10] [--connections 64] [--keys 300]
Needs: wrk (Debian), Postgres (KEYLEDGER_BENCH_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432/postgres), release binaries
(cargo build --release -p api -p bench --bins).
"""
import argparse, base64, json, os, re, secrets, subprocess, sys, tempfile, threading, time
import urllib.request, uuid, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target", "release")
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "p50_ms": pct(50), "p99_ms": pct(99), "raw": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--keys", type=int, default=300)
    args = ap.parse_args()

    admin = os.environ.get("KEYLEDGER_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = "kl_bench_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {db}"], check=True)
    db_url = admin.rsplit("/", 1)[0] + "/" + db
    procs = []
    try:
        env = dict(os.environ, KEYLEDGER_DATABASE_URL=db_url, KEYLEDGER_LISTEN="127.0.0.1:0", RUST_LOG="warn")
        kl, kl_url, kl_lines = start([os.path.join(REL, "keyledger"), "serve"], env)
        procs.append(kl)
        bare, bare_url, _ = start([os.path.join(REL, "bare"), "127.0.0.1:0"])
        procs.append(bare)
        root = next(l.split("store it now): ")[1] for l in kl_lines if "store it now" in l)
        org = next(l.split("(plan enterprise): ")[1] for l in kl_lines if "(plan enterprise)" in l)

        # Keys: enterprise allows 500 requests a minute per key, so the load spreads over
        # many keys to measure the valid path rather than 429s.
        t0 = time.time()
        tokens = []
        for i in range(args.keys):
            k = http("POST", f"{kl_url}/organizations/{org}/api-keys", root, {"name": f"bench {i}", "scopes": ["work-orders:read"]})
            tokens.append(k["secret"])
        created_s = time.time() - t0
        # First verification of each key on this node runs argon2 once: warm up.
        for t in tokens:
            http("GET", f"{kl_url}/whoami", t)
        bad = [fake_token(i % 2 == 0) for i in range(1000)]
        tmp = tempfile.mkdtemp()
        good_file, bad_file = os.path.join(tmp, "good"), os.path.join(tmp, "bad")
        open(good_file, "w").write("\n".join(tokens))
        open(bad_file, "w").write("\n".join(bad))

        results = {}
        results["a_bare"] = wrk(bare_url + "/", args.duration, args.connections)
        a0 = metric(kl_url, "keyledger_argon2_verifications_total")
        # Projection lag under this load: sample the usage projector's distance from the
        # store's head (in events) every 100 ms while (b) runs.
        lags, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    lags.append(metric(kl_url, 'keyledger_projector_lag_events{projection="key_usage"}'))
                except Exception:
                    pass
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results["b_whoami_valid"] = wrk(kl_url, args.duration, args.connections, good_file)
        stop.set()
        sampler.join()
        a1 = metric(kl_url, "keyledger_argon2_verifications_total")
        results["c_whoami_invalid"] = wrk(kl_url, args.duration, args.connections, bad_file)
        a2 = metric(kl_url, "keyledger_argon2_verifications_total")
        results["b_whoami_valid"]["argon2_per_request"] = (a1 - a0) / max(1, results["b_whoami_valid"]["requests"])
        results["c_whoami_invalid"]["argon2_per_request"] = (a2 - a1) / max(1, results["c_whoami_invalid"]["requests"])
        batches = metric(kl_url, "keyledger_usage_batch_size_count")
        events = metric(kl_url, "keyledger_usage_batch_size_sum")

        print(f"keys created: {args.keys} in {created_s:.1f} s; usage events written: {events:.0f} in {batches:.0f} batches")
        print(f"{'case':<20} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'argon2/req':>11}")
        for name, r in results.items():
            print(f"{name:<20} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non2xx']:>8} {r.get('argon2_per_request', 0):>11.5f}")
        a, b, c = results["a_bare"]["rps"], results["b_whoami_valid"]["rps"], results["c_whoami_invalid"]["rps"]
        print(f"(b)/(a) = {b / a:.2%}   (c)/(b) = {c / b:.2f}x")
        if lags:
            lags.sort()
            p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            # Events arrive at (b)'s rate, so a lag of N events is N / rate seconds behind.
            print(f"usage projector lag during (b), {len(lags)} samples: p50 {p50:.0f} events (~{p50 / b * 1000:.0f} ms), "
                  f"p99 {p99:.0f} events (~{p99 / b * 1000:.0f} ms), max {lags[-1]:.0f} events")
        json.dump({k: {x: y for x, y in v.items() if x != "raw"} for k, v in results.items()},
                  open(os.path.join(tmp, "results.json"), "w"), indent=2)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


if __name__ == "__main__":
    main()
