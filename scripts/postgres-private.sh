# Sourced by scripts/test: `ensure_postgres VENV` makes sure OFFLOAD_TEST_POSTGRES answers.
# When the server it names (default postgresql://postgres@127.0.0.1:5432/postgres) does not
# answer, it starts a private cluster for this run: apt-get installs `postgresql` if no initdb
# exists (when we are root), initdb in a temporary folder (as the postgres user when we are
# root: PostgreSQL refuses to run as root), a free loopback port, fsync off (a test cluster),
# and an EXIT trap that stops it and removes the folder. It exports OFFLOAD_TEST_POSTGRES.

_pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_private_postgres() {
    if [ -n "${_pg_dir:-}" ]; then
        _pg_as_owner "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$_pg_dir"
        _pg_dir=""
    fi
}

ensure_postgres() {
    local venv=$1 url=${OFFLOAD_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432/postgres} port
    if "$venv/bin/python" scripts/pg_ping.py "$url" 2>/dev/null; then
        export OFFLOAD_TEST_POSTGRES=$url
        return 0
    fi
    _pg_bin=$(_pg_bindir)
    if [ -z "$_pg_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
        _pg_bin=$(_pg_bindir)
    fi
    if [ -z "$_pg_bin" ]; then
        echo "no PostgreSQL answers at $url and initdb is missing: the postgres tests skip" >&2
        return 0
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/false postgres
    fi
    _pg_dir=$(mktemp -d -t offload-pg.XXXXXX)
    [ "$(id -u)" != 0 ] || chown postgres "$_pg_dir"
    port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    _pg_as_owner "$_pg_bin/initdb" -D "$_pg_dir/data" -U postgres --auth=trust -E UTF8 \
        --no-sync >/dev/null
    _pg_as_owner "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/log" -w -t 30 start -o \
        "-p $port -k $_pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
        >/dev/null
    export OFFLOAD_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
    "$venv/bin/python" scripts/pg_ping.py "$OFFLOAD_TEST_POSTGRES" --wait 30
    echo "started a private PostgreSQL for this run at $OFFLOAD_TEST_POSTGRES" >&2
}
