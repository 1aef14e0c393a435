#!/usr/bin/env bash
# Builds a real Consul agent from its Go module, for the integration suite.
# Consul's go.mod has local `replace` lines, so `go install consul@v` refuses it; we build it as
# a dependency of a throwaway module instead. Nothing of Consul's enters this repository.
set -euo pipefail
version="${CONSUL_VERSION:-v1.22.7}"
# Consul's own go.mod points its api module at ./api; the published api release that matches
# v1.22.7's local copy is v1.34.5 (v1.33.7, which go.mod names, lacks fields it uses).
api_version="${CONSUL_API_VERSION:-v1.34.5}"
cache="${MESHGATE_CACHE:-$HOME/.cache/meshgate}/consul-${version}"
bin="$cache/consul"
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "consul ${version}: cached at $bin"
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "consul:build: Go is not installed; the integration suite needs Go and the Go module proxy" >&2
  exit 2
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "consul:build: building consul ${version} with $(go version) (this takes several minutes)" >&2
go mod init meshgate.local/consulbuild >/dev/null 2>&1
if ! go get "github.com/hashicorp/consul@${version}" >&2; then
  echo "consul:build: could not fetch github.com/hashicorp/consul@${version} from the Go module proxy" >&2
  exit 3
fi
go get "github.com/hashicorp/consul/api@${api_version}" >&2
# Consul's own non-local replace/exclude lines are not inherited by a dependent module; copy them.
modfile="$(go env GOMODCACHE)/cache/download/github.com/hashicorp/consul/@v/${version}.mod"
awk '/^exclude \(/{f=1} f{print} /^\)/{if(f){f=0}}' "$modfile" >>go.mod
CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/hashicorp/consul >&2
mv "$bin.tmp" "$bin"
echo "consul:build: built $("$bin" version | head -1)" >&2
echo "$bin"
