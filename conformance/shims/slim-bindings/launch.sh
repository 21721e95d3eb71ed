#!/usr/bin/env bash
# Starts the slim-bindings driver shim: launch.sh [--listen ADDR]   (default 127.0.0.1:0)
# Keeps a venv and the generated gRPC stubs under <repo>/target/shims/slim-bindings/, rebuilt when
# requirements.txt or proto/conformance/v1/driver.proto change, then execs shim.py. Once the shim
# listens it prints one line on stdout: "driver listening on HOST:PORT".
set -euo pipefail

listen=127.0.0.1:0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --listen) listen="${2:?--listen needs an address}"; shift 2 ;;
    --listen=*) listen="${1#--listen=}"; shift ;;
    -h|--help) echo "usage: $0 [--listen ADDR]"; exit 0 ;;
    *) echo "launch.sh: unknown argument: $1 (usage: $0 [--listen ADDR])" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$repo/target/shims/slim-bindings"
venv="$out/venv"
gen="$out/gen"
proto_dir="$repo/proto/conformance/v1"
python="${PYTHON:-python3}"

hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$out"
req_hash="$(hash_of "$here/requirements.txt")"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]]; then
  if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "launch.sh: '$python -m venv' is not available; install the Debian package python3-venv (apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "launch.sh: creating $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$req_hash" > "$venv/.requirements.sha256"
fi

gen_hash="$(hash_of "$proto_dir/driver.proto" "$here/requirements.txt")"
if [[ ! -f "$gen/driver_pb2_grpc.py" || "$(cat "$gen/.stamp.sha256" 2>/dev/null)" != "$gen_hash" ]]; then
  rm -rf "$gen"
  mkdir -p "$gen"
  "$venv/bin/python" -m grpc_tools.protoc -I "$proto_dir" --python_out="$gen" --grpc_python_out="$gen" "$proto_dir/driver.proto" >&2
  echo "$gen_hash" > "$gen/.stamp.sha256"
fi

export DRIVER_GEN="$gen"
exec "$venv/bin/python" "$here/shim.py" --listen "$listen"
