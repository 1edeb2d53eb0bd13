#!/usr/bin/env bash
# Every manifest in deploy/kubernetes/ against the real Kubernetes and
# cert-manager schemas (tests/tools/k8s_validate.mjs, npm kubernetes-models:
# types, enums, required fields, and unknown fields as --validate=strict),
# plus Keyhold's own checks (native sidecar, probes, hardening, uids and gid
# agreeing with deploy/policy.yaml); tests/data/k8s/broken-pod.yaml must be
# rejected with the expected errors; deploy/policy.yaml passes
# keyholdd --check-config with an identity in place.
# The npm packages are pinned by tests/tools/k8s-validate/package{,-lock}.json
# and installed once outside the source tree, in $KH_K8S_VALIDATE_DIR
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/keyhold/k8s-validate).
set -euo pipefail
: "${KEYHOLDD:?}" "${KH_TEST_PKI:?}"
src=$(cd "$(dirname "$0")/../.." && pwd)
pins=$src/tests/tools/k8s-validate
mods=${KH_K8S_VALIDATE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/keyhold/k8s-validate}
T=$(mktemp -d /tmp/kh-k8s.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0
PASSES=0
pass() { PASSES=$((PASSES + 1)); echo "ok - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "not ok - $*"; }

for c in node npm; do
  command -v "$c" >/dev/null || { echo "not ok - $c not found: install nodejs and npm (tools/install-deps.sh)"; exit 1; }
done

# install: npm ci into a fresh directory beside $mods, then rename it into
# place, so an interrupted install never leaves a half-filled $mods. Done
# again when the pinned files change. Bounded to 4 minutes (meson gives the test 5).
installed() { cmp -s "$pins/package.json" "$mods/package.json" &&
  cmp -s "$pins/package-lock.json" "$mods/package-lock.json" && [ -d "$mods/node_modules" ]; }
mkdir -p "$(dirname "$mods")"
exec 9>"$mods.lock"
flock -w 600 9 || { echo "not ok - another install holds $mods.lock"; exit 1; }
if ! installed; then
  new=$mods.new.$$
  rm -rf "$new" && mkdir -p "$new"
  cp "$pins/package.json" "$pins/package-lock.json" "$new/"
  echo "# installing the validator's npm packages into $mods"
  if ! (cd "$new" && timeout 240 npm ci --no-audit --no-fund --loglevel=error) >"$T/npm.log" 2>&1; then
    echo "not ok - npm ci of $pins failed (npm registry unreachable, or a pinned version gone?):"
    head -12 "$T/npm.log" | sed 's/^/    /'
    rm -rf "$new"
    exit 1
  fi
  rm -rf "$mods" && mv "$new" "$mods"
fi
exec 9>&-

validate() { timeout 60 node "$src/tests/tools/k8s_validate.mjs" "$mods" "$@"; }

# The shipped manifests: every document valid, and Keyhold's checks pass.
rc=0
validate --policy "$src/deploy/policy.yaml" "$src"/deploy/kubernetes/*.yaml >"$T/good.out" 2>&1 || rc=$?
sed 's/^/# /' "$T/good.out"
if [ "$rc" -eq 0 ] && ! grep -q '^invalid' "$T/good.out" && [ "$(grep -c '^valid' "$T/good.out")" -ge 5 ]; then
  pass "deploy/kubernetes/*.yaml: $(grep -c '^valid' "$T/good.out") documents valid"
else
  fail "deploy/kubernetes/*.yaml rejected (exit $rc)"
fi
for kind in ServiceAccount Deployment ConfigMap Issuer Certificate; do
  grep -q "^valid .* $kind/" "$T/good.out" && pass "$kind validated" || fail "no $kind validated"
done

# The broken manifest: rejected, each document for its own reason.
rc=0
validate "$src/tests/data/k8s/broken-pod.yaml" >"$T/bad.out" 2>&1 || rc=$?
sed 's/^/# /' "$T/bad.out"
[ "$rc" -eq 1 ] && pass "broken-pod.yaml rejected (exit 1)" || fail "broken-pod.yaml: validator exit $rc, want 1"
expect() { # expect WHAT PATTERN: a line of bad.out matches the fixed string
  grep -qF -- "$2" "$T/bad.out" && pass "rejects $1" || fail "does not reject $1 ('$2')"
}
expect "restartPolicy: Sometimes" "/spec/restartPolicy must be equal to one of the allowed values"
expect "a string containerPort" "/spec/containers/0/ports/0/containerPort must be integer"
expect "an unknown (typo'd) field" "/spec/containers/0/securityContext/readOnlyRootFilesytem unknown field"
expect "a Pod without containers" "/spec must have required property containers"
expect "a kind it has no schema for" "no schema for apiVersion keyhold.example.org/v1 kind Sidecar"
grep -q '^valid' "$T/bad.out" && fail "a broken document was accepted" || pass "no broken document accepted"

# The policy the ConfigMap carries, checked by keyholdd itself with an
# identity directory "app" in place (the pod mounts the Secret there).
bash "$KH_TEST_PKI" "$T/pki" >/dev/null
mkdir -p "$T/ids" && cp -r "$T/pki/ids/client" "$T/ids/app"
if "$KEYHOLDD" --check-config "$src/deploy/policy.yaml" --identities "$T/ids" >"$T/check.out" 2>&1; then
  pass "keyholdd --check-config deploy/policy.yaml: $(cat "$T/check.out")"
else
  fail "keyholdd --check-config deploy/policy.yaml: $(cat "$T/check.out")"
fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
