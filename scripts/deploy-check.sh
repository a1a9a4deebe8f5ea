#!/usr/bin/env bash
# Checks deploy/ (run by `make deploy-check`, after `make image-context`):
#   1. go test ./deploy/: every YAML and JSON file parses; every metric the
#      alert rules and the dashboard name is on a running relay's /metrics;
#      Dockerfile, Kubernetes manifests and systemd unit keep their promises.
#   2. promtool check rules and promtool test rules (Debian: prometheus).
#   3. systemd-analyze verify and security of the unit (Debian: systemd).
#   4. the image built from bin/image with buildah (Debian: buildah) or a
#      running docker daemon, then `hookrelay version` run inside it.
# A missing tool is skipped with a message; HOOKRELAY_DEPLOY_STRICT=1 makes
# a skip fail (CI, where the tools are installed).
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
skips=()
skip() {
	echo "deploy-check: SKIP $1: $2" >&2
	skips+=("$1")
}
step() { echo "deploy-check: $*"; }

step "go test ./deploy/"
"$GO" test -count=1 ./deploy/

if command -v promtool >/dev/null; then
	step "promtool check rules / test rules"
	promtool check rules deploy/alerts.yaml
	(cd deploy && promtool test rules alerts_test.yaml)
else
	skip promtool "not installed (apt-get install prometheus)"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if command -v systemd-analyze >/dev/null; then
	step "systemd-analyze verify / security"
	# verify needs ExecStart's binary to exist: point it at the one built here.
	bin="$(pwd)/bin/static/hookrelay"
	sed "s|/usr/local/bin/hookrelay|$bin|" deploy/systemd/hookrelay.service >"$tmp/hookrelay.service"
	# It exits 0 on some warnings (an unknown value is "ignoring"): any
	# output about the unit fails the check.
	out="$(systemd-analyze verify --man=no "$tmp/hookrelay.service" 2>&1 || echo "exit status $?")"
	if [ -n "$out" ]; then
		echo "$out" >&2
		echo "deploy-check: systemd-analyze verify deploy/systemd/hookrelay.service failed" >&2
		exit 1
	fi
	# Overall exposure at most 2.0 of 10 (it is 1.2 today).
	systemd-analyze security --offline=yes --man=no --threshold=20 "$tmp/hookrelay.service" | tail -1
else
	skip systemd-analyze "not installed (apt-get install systemd)"
fi

image=localhost/hookrelay:deploy-check
if command -v buildah >/dev/null; then
	step "buildah build deploy/Dockerfile (FROM scratch, nothing pulled)"
	b=(buildah --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs)
	"${b[@]}" build --isolation chroot -q -f deploy/Dockerfile -t "$image" bin/image >/dev/null
	cfg="$("${b[@]}" inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Volumes}} {{.OCIv1.Config.ExposedPorts}}' "$image")"
	echo "image config: $cfg"
	case "$cfg" in
	"65532:65532 map[/var/lib/hookrelay:{}] map[8080/tcp:{} 9090/tcp:{}]") ;;
	*) echo "deploy-check: unexpected image config: $cfg" >&2; exit 1 ;;
	esac
	c="$("${b[@]}" from -q "$image")"
	out="$("${b[@]}" run --isolation chroot "$c" -- /hookrelay version)"
	"${b[@]}" rm "$c" >/dev/null
	echo "in the image: $out"
	want="$(bin/static/hookrelay version)"
	[ "$out" = "$want" ] || { echo "deploy-check: image says $out, bin/static/hookrelay $want" >&2; exit 1; }
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	step "docker build deploy/Dockerfile (FROM scratch, nothing pulled)"
	docker build -q -f deploy/Dockerfile -t "$image" bin/image >/dev/null
	docker run --rm "$image" version
	docker image rm "$image" >/dev/null
else
	skip image "neither buildah nor a running docker daemon (apt-get install buildah)"
fi

if [ "${#skips[@]}" -gt 0 ]; then
	echo "deploy-check: passed, but skipped: ${skips[*]}" >&2
	[ "${HOOKRELAY_DEPLOY_STRICT:-}" != 1 ] || { echo "deploy-check: HOOKRELAY_DEPLOY_STRICT=1: skips fail" >&2; exit 1; }
else
	echo "deploy-check: all passed"
fi
