#!/usr/bin/env python3
"""Gateway benchmark, one run, side by side, with wrk against 127.0.0.1 (bounded in time):

  nginx direct         nginx -> the upstream (bench/src/bin/bare.rs), no auth: the yardstick
  nginx + keyledger    nginx with auth_request to keyledger's /v1/gateway/auth
                       (deploy/nginx/keyledger-gateway.conf as deployed) -> the upstream,
                       Postgres event store, durable usage events
  ... async            the same with KEYLEDGER_USAGE_DURABILITY=async
  whoami               GET /whoami on keyledger directly (durable): the auth layer's own path
  verify               POST /v1/keys/verify on keyledger directly (durable)

Each keyledger case uses --keys valid keys in turn (warmed: argon2 once per key).
Usage: python3 bench/gateway/run.py [--duration 8] [--connections 64] [--keys 600]
Needs: wrk, nginx with auth_request (Debian: nginx-light), Postgres
(KEYLEDGER_BENCH_POSTGRES_URL), release binaries (cargo build --release -p api -p bench --bins).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hotpath"))
from run import REL, ROOT, Node, progress, start, stop, wrk  # noqa: E402

RULES = """
[[route]]
method = "GET"
path = "/invoices/*"
scope = "work-orders:read"
"""


def pg_db(base):
    name = "kl_bench_gw_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True)
    return name, base.rsplit("/", 1)[0] + "/" + name


def nginx(tmp, keyledger, upstream):
    """The deployed server block (auth on one port) and a direct server (another)."""
    conf = open(os.path.join(ROOT, "deploy", "nginx", "keyledger-gateway.conf")).read()
    import socket
    def free():
        s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
    auth_port, direct_port = free(), free()
    conf = (conf.replace("{{LISTEN}}", f"127.0.0.1:{auth_port}")
                .replace("{{KEYLEDGER}}", keyledger).replace("{{UPSTREAM}}", upstream))
    conf += f"\nserver {{ listen 127.0.0.1:{direct_port}; location / {{ proxy_pass http://protected_api; }} }}\n"
    open(os.path.join(tmp, "gateway.conf"), "w").write(conf)
    user = "user root;" if os.geteuid() == 0 else ""
    open(os.path.join(tmp, "nginx.conf"), "w").write(f"""{user}
worker_processes 1;
daemon off;
master_process off;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  include {tmp}/gateway.conf;
}}
""")
    p = subprocess.Popen(["nginx", "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/error.log"])
    time.sleep(0.5)
    return p, f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{direct_port}"


def row(name, r, base):
    ratio = r["rps"] / base if base else 0
    print(f"| {name} | {r['rps']:,.0f} | {ratio:.2f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['non2xx']} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--keys", type=int, default=600)
    a = ap.parse_args()
    for tool in ("wrk", "nginx", "psql"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    base_url = os.environ.get("KEYLEDGER_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    tmp = tempfile.mkdtemp(prefix="kl-gw-")
    rules = os.path.join(tmp, "rules.toml")
    open(rules, "w").write(RULES)
    bare, bare_url, _ = start([os.path.join(REL, "bare"), "127.0.0.1:0"])
    upstream = bare_url.removeprefix("http://")
    results = {}
    dbs = []
    try:
        for durability in ("durable", "async"):
            name, url = pg_db(base_url)
            dbs.append(name)
            env = dict(os.environ, KEYLEDGER_DATABASE_URL=url, KEYLEDGER_LISTEN="127.0.0.1:0",
                       KEYLEDGER_USAGE_DURABILITY=durability, KEYLEDGER_GATEWAY_ROUTES=rules,
                       KEYLEDGER_TRUSTED_PROXIES="127.0.0.1/32", RUST_LOG="warn")
            node = Node(env, durability)
            try:
                tokens = node.create_keys(a.keys, tmp)
                node.warm(tokens)
                progress(f"{durability}: {a.keys} keys made and warmed")
                ng_dir = os.path.join(tmp, durability)
                os.makedirs(ng_dir)
                ng, auth_url, direct_url = nginx(ng_dir, node.url.removeprefix("http://"), upstream)
                try:
                    # bench/hotpath/tokens.lua: WRK_PATH, or verify with SERVICE_KEY.
                    os.environ["WRK_PATH"] = "/invoices/1"
                    if durability == "durable":
                        results["direct"] = wrk(direct_url + "/invoices/1", a.duration, a.connections, tokens)
                        progress("nginx direct done")
                    results[f"auth {durability}"] = wrk(auth_url + "/invoices/1", a.duration, a.connections, tokens)
                    progress(f"nginx + keyledger ({durability}) done")
                    if durability == "durable":
                        os.environ["WRK_PATH"] = "/whoami"
                        results["whoami"] = wrk(node.url + "/whoami", a.duration, a.connections, tokens)
                        progress("whoami done")
                        os.environ["SERVICE_KEY"] = node.root
                        results["verify"] = wrk(node.url + "/v1/keys/verify", a.duration, a.connections, tokens)
                        del os.environ["SERVICE_KEY"]
                        progress("verify done")
                finally:
                    stop(ng)
            finally:
                node.stop()
    finally:
        stop(bare)
        for name in dbs:
            subprocess.run(["psql", base_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    print(f"\n{a.connections} connections, {a.duration} s per case, {a.keys} keys, {time.strftime('%Y-%m-%d')}\n")
    print("| case | req/s | vs nginx direct | p50 | p99 | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base = results["direct"]["rps"]
    row("nginx -> upstream (no auth)", results["direct"], base)
    row("nginx + auth_request to keyledger (Postgres, durable usage)", results["auth durable"], base)
    row("nginx + auth_request to keyledger (Postgres, async usage)", results["auth async"], base)
    print("\n| keyledger directly | req/s | vs whoami | p50 | p99 | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    row("GET /whoami (durable)", results["whoami"], results["whoami"]["rps"])
    row("POST /v1/keys/verify (durable)", results["verify"], results["whoami"]["rps"])


if __name__ == "__main__":
    main()
