#!/usr/bin/env bash
# `make e2e`: the shipped image and manifests on a real single-node cluster on this machine.
#
#   1. hack/node/up.sh starts the node (docs/e2e.md); it is torn down on exit (KEEP_NODE=1 keeps it).
#      E2E_CLUSTER=kind (`make e2e-kind`): a kind cluster instead (hack/kind, KIND_NODE_IMAGE), with
#      routes on the host to its Service and pod ranges; everything else is the same.
#   2. The controller and sandbox images are built and imported into the node's containerd; the
#      controller also as ghcr.io/phi-dev/mediajob-controller:0.1.0, the name the manifests use.
#   3. The simulators are deployed in-cluster (manifests/e2e, namespace mediajob-e2e).
#   4. A real Prometheus (Debian's) starts on the host, configured from manifests/monitoring as the
#      Prometheus Operator would (hack/prometheus_config.py), scraping every controller pod.
#   5. Helm: README's Helm block (between <!-- install-helm:begin --> and <!-- install-helm:end -->)
#      runs VERBATIM with `bash -euo pipefail` in a temporary copy of the repo with a my-values.yaml
#      pointing at the simulators. Checks: 2 replicas Ready, one Lease holder, the mirror's MediaJobs
#      all Ready, webhooks answered through the controller's Service, exactly 2 Airtable writes per
#      job, Prometheus scraping 2 targets with one leader; `kubectl delete pod <leader>` moves the
#      Lease within 20 s with jobs in flight and no doubled write; `kubectl mediajob stats`;
#      docs/operations.md's Helm uninstall block keeps the CRD and every MediaJob.
#   6. kustomize: the README's install block (<!-- install:begin --> ... <!-- install:end -->) in
#      another copy whose manifests/default/config.env points at the simulators, over the CRD Helm
#      kept. The same checks, a `kubectl rollout restart` too, 30 s without restarts or liveness
#      failures; then the job gauges summed over both replicas in Prometheus equal the Processing
#      MediaJobs; the uninstall block keeps every MediaJob, and MediaJobControllerDown fires.
#   7. Pods, leader changes, job phases and per-phase timings.
#
#   hack/e2e.sh --print-install-block [FILE [MARKER]]  # only extract a block (used by the tests);
#     # MARKER install or install-helm (README), uninstall or uninstall-helm (docs/operations.md)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

install_block() { # install_block README [MARKER]: the one ```sh block between the markers, or fail
  local readme=$1 marker=${2:-install}
  awk -v begin="<!-- $marker:begin -->" -v end="<!-- $marker:end -->" '
    index($0, begin) { inside = 1; seen_begin = 1; next }
    index($0, end) { inside = 0; seen_end = 1; next }
    !inside { next }
    /^```/ && fence { fence = 0; next }
    /^```sh[[:space:]]*$/ { fence = 1; sh++; next }
    /^```/ { fence = 1; other++; next }
    fence == 1 && sh == 1 && !other { print }
    END {
      if (!seen_begin || !seen_end) { print "no " begin " ... " end " in " FILENAME > "/dev/stderr"; exit 1 }
      if (sh != 1 || other || fence) {
        printf "want exactly one closed ```sh block between the install markers, found %d (and %d other blocks)\n", sh, other > "/dev/stderr"; exit 1
      }
    }' "$readme"
}
if [[ ${1:-} == --print-install-block ]]; then
  install_block "${2:-$repo/README.md}" "${3:-install}"
  exit
fi

cd "$repo"
# One node per machine (fixed state dir, cni0, DNS on port 53): concurrent runs wait their turn.
exec 9>/run/lock/mediajob-e2e.lock
if ! flock -n 9; then
  echo "another make e2e runs on this machine; waiting for it" >&2
  flock 9
fi
started=$(date +%s)
phase_start=$started
timings=()
phase() { # phase NAME: closes the previous phase's timer
  local now; now=$(date +%s)
  timings+=("$(printf '%-28s %4ds' "$current_phase" $((now - phase_start)))")
  phase_start=$now; current_phase=$1
  echo "=== $1"
}
current_phase="start"
fail() { echo "E2E FAILED: $*" >&2; exit 1; }

state=${MEDIAJOB_NODE_STATE:-/var/lib/mediajob-e2e}
cluster=${E2E_CLUSTER:-node} # node (hack/node) or kind
[[ $cluster == node || $cluster == kind ]] || { echo "E2E_CLUSTER must be node or kind, not $cluster" >&2; exit 2; }
kind_cluster=mediajob-e2e
kind_routes=""
kind=kind
work=$(mktemp -d /tmp/mediajob-e2e.XXXXXX)
cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)) && [[ -n ${KUBECONFIG:-} ]]; then
    echo "--- diagnostics" >&2
    kubectl get pods -A -o wide >&2 || true
    kubectl -n mediajob-system logs deployment/mediajob-controller --tail=40 >&2 || true
    kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -25 >&2 || true
  fi
  if ((rc != 0)) && [[ -f $work/prometheus.log ]]; then tail -20 "$work/prometheus.log" >&2; fi
  for pid in ${watcher:-} ${discoverer:-} ${prometheus_pid:-}; do kill "$pid" 2>/dev/null; done
  if [[ -n ${KEEP_NODE:-} ]]; then
    echo "KEEP_NODE set: the cluster stays up (node: source $state/env, hack/node/down.sh removes it;" \
      "kind: $kind delete cluster --name $kind_cluster)" >&2
  elif [[ $cluster == kind ]]; then
    for range in $kind_routes; do ip route del "$range" 2>/dev/null; done
    "$kind" delete cluster --name "$kind_cluster" >/dev/null 2>&1 || true
  else
    bash "$repo/hack/node/down.sh" || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

if [[ $cluster == kind ]]; then
  phase "kind cluster up"
  kind=$(bash hack/kind/build.sh)
  PATH=$(bash hack/controlplane/build.sh):$PATH # kubectl
  bash hack/docker.sh
  # kind's own node image for its version where it can be pulled; else (no registry) the one
  # hack/kind/node-image.sh makes here, with its cluster config. KIND_NODE_IMAGE names another.
  node_image=${KIND_NODE_IMAGE:-}
  kind_config=()
  if [[ -z $node_image ]]; then
    default_image=$(sed -nE 's/^const Image = "(.*)"$/\1/p' \
      "$(cd hack/kind && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)/pkg/apis/config/defaults/image.go")
    if ! docker image inspect "$default_image" >/dev/null 2>&1 && ! timeout 120 docker pull -q "$default_image" >/dev/null 2>&1; then
      echo "kind's node image $default_image cannot be pulled here: making one (hack/kind/node-image.sh)" >&2
      node_image=$(bash hack/kind/node-image.sh 9>&-)
      kind_config=(--config hack/kind/offline-cluster.yaml)
    fi
  fi
  # kind's nodes are privileged containers, which Docker 20.10 cannot start on a host whose
  # capability bounding set is short of one (as here): hack/kind/bounded-runtime.sh, docs/e2e.md.
  kind_path=$(bash hack/kind/bounded-runtime.sh)
  if ! PATH=${kind_path:+$kind_path:}$PATH "$kind" create cluster --name "$kind_cluster" \
    ${node_image:+--image "$node_image"} "${kind_config[@]}" \
    --kubeconfig "$work/kind.kubeconfig" --wait 180s 9>&-; then
    fail "kind could not create its cluster (above); docs/e2e.md, make e2e-kind"
  fi
  export KUBECONFIG=$work/kind.kubeconfig
  # The checks reach ClusterIPs and pod IPs from the host (the webhook Service, the report port,
  # Prometheus' targets), as they do on the node: route kind's ranges to its node's container.
  node_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$kind_cluster-control-plane")
  for range in 10.96.0.0/16 10.244.0.0/16; do
    ip route replace "$range" via "$node_ip" && kind_routes+=" $range"
  done
else
  phase "node up"
  bash hack/node/up.sh >/dev/null 9>&- # the node's processes must not hold the lock
  # shellcheck disable=SC1091
  source "$state/env"
fi
ctr() { command ctr -a /run/mediajob-e2e/containerd.sock -n k8s.io "$@"; }

phase "images"
controller_image=${E2E_CONTROLLER_IMAGE:-mediajob-controller:dev}
sandbox_image=${E2E_SANDBOX_IMAGE:-mediajob-sandbox:dev}
if [[ -z ${E2E_SKIP_BUILD:-} ]]; then
  make image-sandbox >&2 # mediajob-controller:dev and mediajob-sandbox:dev
fi
docker tag "$controller_image" ghcr.io/phi-dev/mediajob-controller:0.1.0
if [[ $cluster == kind ]]; then
  docker tag "$sandbox_image" mediajob-sandbox:dev
  "$kind" load docker-image --name "$kind_cluster" ghcr.io/phi-dev/mediajob-controller:0.1.0 mediajob-sandbox:dev
fi
[[ $cluster == kind ]] || docker save ghcr.io/phi-dev/mediajob-controller:0.1.0 "$sandbox_image" | ctr images import - >/dev/null
normalized() { # how containerd names a Docker reference
  case $1 in */*) [[ ${1%%/*} == *[.:]* || ${1%%/*} == localhost ]] && echo "$1" || echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;; esac
}
# manifests/e2e runs mediajob-sandbox:dev; another build of it is renamed in the node only
if [[ $cluster == node ]]; then
  if [[ $(normalized "$sandbox_image") != docker.io/library/mediajob-sandbox:dev ]]; then
    ctr images tag --force "$(normalized "$sandbox_image")" docker.io/library/mediajob-sandbox:dev >/dev/null
  fi
  ctr images ls -q | grep -E 'mediajob|pause'
fi

phase "simulators"
kubectl apply -k manifests/e2e
kubectl -n mediajob-e2e rollout status deployment/mediajob-sandbox --timeout=120s
report_url="http://$(kubectl -n mediajob-e2e get service mediajob-sandbox -o jsonpath='{.spec.clusterIP}'):8084"
report() { curl -sf --max-time 5 "$report_url/report"; }
for i in $(seq 30); do report >/dev/null && break; ((i < 30)) || fail "the sandbox report port does not answer"; sleep 1; done

phase "Prometheus"
# Debian's prometheus on the host, configured from manifests/monitoring as the Prometheus Operator
# would (hack/prometheus_config.py): it scrapes every controller pod through the EndpointSlices of
# the Service the ServiceMonitor selects; the rules are the PrometheusRule's, with
# MediaJobControllerDown's `for: 5m` shortened to 10 s.
command -v prometheus >/dev/null || fail "prometheus is missing (make promtool installs Debian's package)"
prom_dir=$work/prometheus
"$repo/.venv/bin/python" hack/prometheus_config.py config "$prom_dir" --for MediaJobControllerDown=10s
promtool check config "$prom_dir/prometheus.yml" >/dev/null
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
monitor_selector=$("$repo/.venv/bin/python" hack/prometheus_config.py selector)
discover() { # background: the ServiceMonitor's targets, rewritten every second (the discovery's watch)
  while :; do
    kubectl -n "$ns" get endpointslices -l "$monitor_selector" -o json 2>/dev/null |
      "$repo/.venv/bin/python" hack/prometheus_config.py targets "$prom_dir" 2>/dev/null || true
    sleep 1
  done
}
ns=mediajob-system
discover &
discoverer=$!
promql() { # promql EXPR: the instant vector's single value, or "none" when it is empty
  curl -sf --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
for i in $(seq 30); do promql 'vector(1)' >/dev/null 2>&1 && break; ((i < 30)) || fail "Prometheus does not answer"; sleep 1; done
echo "Prometheus on 127.0.0.1:$prom_port scrapes the endpoints of Services labelled $monitor_selector"
prom_until() { # prom_until WANT EXPR [SECONDS]: wait until EXPR's value is WANT
  local got
  for i in $(seq "${3:-60}"); do
    got=$(promql "$2" 2>/dev/null || echo "error")
    [[ $got == "$1" ]] && return
    sleep 1
  done
  fail "Prometheus: $2 is $got, want $1"
}

kc() { kubectl -n "$ns" "$@"; }
holder() { kc get lease mediajob-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }
leader_log=()
note_leader() { leader_log+=("$(date -u +%H:%M:%S) $1"); echo "leader: $1"; }
want=0
all_mediajobs_ready() { # every job in the report has its MediaJob, and all are Ready
  want=$(report | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
  for i in $(seq 90); do
    have=$(kc get mediajobs --no-headers 2>/dev/null | wc -l)
    ((have >= want)) && break
    ((i < 90)) || fail "the mirror created $have of $want MediaJobs"
    sleep 2
  done
  kc wait --for=condition=Ready mediajob --all --timeout=300s >/dev/null
  echo "all $want MediaJobs Ready"
}

check_writes() { # no Airtable row written more than once per job (Jobs row + target row = 2)
  report | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
bad = [j for j in jobs if j["writes"] != 2]
print("Airtable writes: %d for %d jobs" % (sum(j["writes"] for j in jobs), len(jobs)))
for j in bad:
    print("  job %s (%s): %d writes, want 2" % (j["record_id"], j["status"], j["writes"]))
sys.exit(1 if bad else 0)' || fail "doubled (or missing) Airtable writes"
}

user_copy() { # user_copy DIR: the repo as a user has it (tracked files, as in this work tree)
  mkdir -p "$1"
  git ls-files -z | tar --null -T - -c | tar -x -C "$1"
}
sim=mediajob-sandbox.mediajob-e2e
# The simulators' fixed keys (sandbox/world.py); WEBHOOK_TOKEN is the one manifests/e2e sends.
export AIRTABLE_API_KEY=patSandboxWorld.0123456789abcdef NCA_API_KEY=nca-sandbox-world-key-0123 \
  WEBHOOK_TOKEN=e2e-webhook-token
run_block() { # run_block DIR FILE MARKER: the documented block, shown, then run verbatim in DIR
  install_block "$2" "$3" >"$1/$3.sh"
  echo "--- the block between <!-- $3:begin --> and <!-- $3:end --> in ${2#"$repo"/}:"
  sed 's/^/  | /' "$1/$3.sh"
  (cd "$1" && bash -euo pipefail "$3.sh")
}

verify_install() { # verify_install PATH: 2 Ready replicas, one Lease holder, the jobs done, webhooks
  phase "$1: 2 replicas Ready"
  kc rollout status deployment/mediajob-controller --timeout=180s
  ready=$(kc get deployment mediajob-controller -o jsonpath='{.status.readyReplicas}')
  [[ $ready == 2 ]] || fail "want 2 Ready replicas, have ${ready:-0}"
  for i in $(seq 60); do [[ -n $(holder) ]] && break; ((i < 60)) || fail "no pod took the Lease"; sleep 1; done
  note_leader "$(holder) holds the Lease ($1)"

  phase "$1: MediaJobs Ready"
  all_mediajobs_ready

  phase "$1: webhook through the Service"
  answered=$(report | python3 -c 'import json,sys; print(sum(1 for w in json.load(sys.stdin)["webhooks"] if w["status"] and 200 <= w["status"] < 300))')
  echo "webhooks from the NCA simulator's pod answered 2xx through http://mediajob-controller.$ns:8080: $answered"
  ((answered >= 1)) || fail "no webhook reached a controller pod through the Service"
  # and one from here, through the Service's ClusterIP (kube-proxy), with a wrong and the right token
  svc=$(kc get service mediajob-controller -o jsonpath='{.spec.clusterIP}')
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$svc:8080/webhooks/nca?token=wrong" -d '{}')
  [[ $code == 401 ]] || fail "a wrong webhook token answered $code, want 401"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$svc:8080/webhooks/nca?token=$WEBHOOK_TOKEN" -d '{"id":"x"}')
  [[ $code == 400 ]] || fail "a malformed webhook answered $code, want 400"
  echo "ClusterIP $svc:8080 answers 401 to a wrong token, 400 to a malformed body"
  check_writes

  phase "$1: Prometheus scrapes both replicas"
  prom_until 2 'count(up{job="mediajob-controller-metrics"} == 1)'
  prom_until 1 'sum(mediajob_leader)'
  echo "2 targets up, sum(mediajob_leader) = 1"
}

watch_lease() { # background: every holder change and every controller pod's end, with times
  local last="-" known=" " ending=" " now h pods p
  while :; do
    now=$(date +%s.%N)
    h=$(holder)
    if [[ $h != "$last" ]]; then echo "$now holder ${h:-none}"; last=$h; fi
    pods=$(kc get pods -l app.kubernetes.io/name=mediajob-controller \
      -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{" "}{end}' 2>/dev/null) ||
      { sleep 0.2; continue; }
    for p in $pods; do
      [[ $known == *" ${p%%=*} "* ]] || known+="${p%%=*} "
      if [[ -n ${p#*=} && $ending != *" ${p%%=*} "* ]]; then echo "$now ending ${p%%=*}"; ending+="${p%%=*} "; fi
    done
    for p in $known; do # a pod that vanished between two looks ended then at the latest
      if [[ " $pods" != *" $p="* && $ending != *" $p "* ]]; then echo "$now ending $p"; ending+="$p "; fi
    done
    sleep 0.2
  done
}

failover() { # failover LABEL ACTION...: jobs in flight, the action, then a new leader
  local label=$1; shift
  local old new
  old=$(holder)
  curl -sf -X POST "$report_url/jobs?count=6" >/dev/null
  note_leader "$old leads; $label"
  "$@"
  for i in $(seq 300); do
    new=$(holder)
    [[ -n $new && $new != "$old" ]] && break
    ((i < 300)) || fail "$label: the Lease stayed with ${new:-nobody} (was $old)"
    sleep 0.2
  done
}

lease_changes() { # every change in the watch log; fails unless each followed its holder's end within 20 s
  # The watcher looks at the holder and the pods one after the other, every ~0.2 s plus two kubectl
  # calls: a leader that ends and hands over between two looks shows its end up to one look after
  # the change. So an end recorded up to 2 s after the change still explains it.
  python3 - "$1" <<'PY'
import sys
events = [(float(t), what, name) for t, what, name in (line.split() for line in open(sys.argv[1]))]
ended = {}
for t, what, name in events:
    if what == "ending":
        ended.setdefault(name, t)
holder, bad = None, 0
for t, what, name in events:
    if what != "holder" or name == "none":
        continue
    if holder and name != holder:
        if holder in ended and ended[holder] <= t + 2:
            gap = max(t - ended[holder], 0.0)
            ok = gap <= 20
            print(f"  {holder} -> {name}: {gap:.1f} s after {holder} began to end{'' if ok else '  (over 20 s)'}")
        else:
            ok = False
            print(f"  {holder} -> {name}: the Lease moved although {holder} was not ending")
        bad += not ok
    holder = name
sys.exit(1 if bad else 0)
PY
}

settled() { # exactly two controller pods, both Ready, none ending
  for i in $(seq 300); do
    pods=$(kc get pods -l app.kubernetes.io/name=mediajob-controller --no-headers 2>/dev/null | grep -c . || true)
    ready=$(kc get deployment mediajob-controller -o jsonpath='{.status.readyReplicas}')
    [[ $pods == 2 && $ready == 2 ]] && return
    ((i < 300)) || fail "the controller did not settle to 2 Ready pods ($pods pods, ${ready:-0} Ready)"
    sleep 0.5
  done
}

failovers() { # failovers PATH [restart]: delete the leader (and roll the Deployment); the Lease moves in time
  watch_lease >"$work/lease-$1.log" &
  watcher=$!
  phase "$1: failover, delete the leader"
  failover "kubectl delete pod" kc delete pod "$(holder)" --wait=false
  settled
  if [[ ${2:-} == restart ]]; then
    phase "$1: failover, rollout restart"
    failover "kubectl rollout restart" kc rollout restart deployment/mediajob-controller
    kc rollout status deployment/mediajob-controller --timeout=240s
    for i in $(seq 150); do # the Lease may move twice: old leader -> old replica -> new replica
      pods=$(kc get pods -l app.kubernetes.io/name=mediajob-controller \
        -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null || true)
      h=$(holder)
      [[ -n $h ]] && grep -qx "$h=" <<<"$pods" && [[ $(grep -c . <<<"$pods") == 2 ]] && break
      ((i < 150)) || fail "after the rollout the Lease is held by ${h:-nobody}, not a running replica"
      sleep 0.2
    done
  fi
  sleep 1
  kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; watcher=
  echo "Lease changes (each within 20 s of the old holder's pod beginning to end):"
  lease_changes "$work/lease-$1.log" | tee -a "$work/lease-changes.txt" || fail "a Lease change was late or unexplained"

  phase "$1: all jobs done, no doubled write"
  all_mediajobs_ready
  check_writes
}

no_restarts() { # no_restarts CHECKS: both replicas stay Ready; no restart, no liveness failure
  # Readiness fails by design while a replica starts; after that both stay Ready, and liveness never fails.
  for _ in $(seq "$1"); do
    ready=$(kc get deployment mediajob-controller -o jsonpath='{.status.readyReplicas}')
    [[ $ready == 2 ]] || fail "want 2 Ready replicas after the failovers, have ${ready:-0}"
    sleep 2
  done
  restarts=$(kc get pods -l app.kubernetes.io/name=mediajob-controller -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{"\n"}{end}' | awk '{s += $1} END {print s + 0}')
  ((restarts == 0)) || fail "controller containers restarted $restarts times"
  liveness=$(kc get events --field-selector reason=Unhealthy -o jsonpath='{range .items[*]}{.involvedObject.name}: {.message}{"\n"}{end}' | grep -i liveness || true)
  [[ -z $liveness ]] || fail "liveness probe failures: $liveness"
  echo "2 replicas Ready, 0 restarts, no liveness failure"
}

uninstall() { # uninstall PATH DIR MARKER: docs/operations.md's block; every MediaJob and the CRD stay
  phase "$1: documented uninstall keeps every MediaJob"
  local before after
  before=$(kc get mediajobs -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' | sort)
  run_block "$2" "$repo/docs/operations.md" "$3"
  for i in $(seq 60); do
    [[ -z $(kc get pods -l app.kubernetes.io/name=mediajob-controller --no-headers 2>/dev/null) ]] && break
    ((i < 60)) || fail "controller pods still running after the uninstall"
    sleep 1
  done
  [[ -z $(kc get deployment -l app.kubernetes.io/name=mediajob-controller -o name) ]] ||
    fail "the uninstall left the Deployment"
  after=$(kc get mediajobs -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' | sort)
  [[ $before == "$after" ]] || fail "the uninstall lost MediaJobs"
  kubectl get crd mediajobs.media.phi.dev >/dev/null || fail "the uninstall deleted the CRD"
  echo "uninstalled; the CRD and all $(grep -c . <<<"$after") MediaJobs are still there"
}

# --- Path 1: Helm, on the fresh cluster (the chart installs the CRD) ---
phase "helm: README's Helm block"
helm_bin=$(bash hack/helm/build.sh)
export PATH=$(dirname "$helm_bin"):$PATH
helm_copy=$work/helm-user
user_copy "$helm_copy"
cat >"$helm_copy/my-values.yaml" <<VALUES
config:
  AIRTABLE_API_URL: http://$sim:8081
  AIRTABLE_BASE_ID: appSANDBOXworld01
  NCA_API_URL: http://$sim:8082
  SPACES_BASE_URL: http://$sim:8083/phi-bucket
  POLLING_INTERVAL_MINUTES: "0.25"
VALUES
echo "my-values.yaml:"; sed 's/^/  /' "$helm_copy/my-values.yaml"
run_block "$helm_copy" "${E2E_README:-$repo/README.md}" install-helm
helm -n "$ns" status mediajob-controller | sed -n '1,6p'
verify_install helm
if [[ $cluster == node ]]; then
phase "node: the kubelet's certificate is verified, the DNS may only read Services"
# kubectl logs goes API server -> kubelet: it works only if the kubelet's serving certificate is
# signed by the CA the API server was given (--kubelet-certificate-authority).
kc logs deployment/mediajob-controller --tail=1 >/dev/null || fail "kubectl logs failed: the API server rejects the kubelet's certificate"
grep -q -- '--kubelet-certificate-authority' "$state/logs/kube-apiserver.log" 2>/dev/null ||
  pgrep -af kube-apiserver | grep -q -- '--kubelet-certificate-authority' || fail "the API server does not verify the kubelet"
[[ $(kubectl auth can-i list services --as=system:mediajob-e2e-dns) == yes ]] || fail "the DNS identity cannot list Services"
for what in "get secrets -A" "list pods" "create services"; do
  # shellcheck disable=SC2086
  [[ $(kubectl auth can-i $what --as=system:mediajob-e2e-dns 2>/dev/null || true) == no ]] ||
    fail "the DNS identity may $what"
done
echo "kubectl logs through the verified kubelet; the DNS identity lists Services and nothing else"
fi
failovers helm
phase "helm: kubectl mediajob stats"
PATH=$repo/.venv/bin:$PATH kubectl mediajob stats -n "$ns"
uninstall helm "$helm_copy" uninstall-helm
[[ -z $(helm -n "$ns" list -q) ]] || fail "helm still lists a release"

# --- Path 2: the README's kustomize block, over the CRD the Helm release kept ---
phase "kustomize: README install block"
curl -sf -X POST "$report_url/jobs?count=6" >/dev/null # new work for the new install
kustomize_copy=$work/kustomize-user
user_copy "$kustomize_copy"
config_env=$kustomize_copy/manifests/default/config.env
set_config() { # set_config KEY VALUE: edit the line, as a user would in their editor
  if grep -q "^$1=" "$config_env"; then sed -i "s#^$1=.*#$1=$2#" "$config_env"; else echo "$1=$2" >>"$config_env"; fi
}
set_config AIRTABLE_API_URL "http://$sim:8081"
set_config AIRTABLE_BASE_ID appSANDBOXworld01
set_config NCA_API_URL "http://$sim:8082"
set_config SPACES_BASE_URL "http://$sim:8083/phi-bucket"
set_config POLLING_INTERVAL_MINUTES 0.25
echo "config: ${config_env#"$kustomize_copy"/}"; sed 's/^/  /' "$config_env"
run_block "$kustomize_copy" "${E2E_README:-$repo/README.md}" install
verify_install kustomize
failovers kustomize restart
phase "kustomize: probes and restarts"
no_restarts "${E2E_SOAK_CHECKS:-15}"
phase "kustomize: kubectl mediajob stats"
PATH=$repo/.venv/bin:$PATH kubectl mediajob stats -n "$ns"

phase "Prometheus: job gauges summed over replicas"
# Jobs NCA keeps running for 10 minutes stay Processing: the leader's gauge counts them, the
# follower's is empty, so the sum over both targets must equal what the API server holds.
curl -sf -X POST "$report_url/jobs?count=3&running_s=600" >/dev/null
processing() { kc get mediajobs -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Processing$' || true; }
for i in $(seq 60); do [[ $(processing) == 3 ]] && break; ((i < 60)) || fail "want 3 Processing MediaJobs, have $(processing)"; sleep 1; done
prom_until 3 'sum(mediajob_processing_jobs)'
prom_until 0 'sum(mediajob_writeback_backlog)'
[[ $(processing) == 3 ]] || fail "the Processing count moved while Prometheus was read"
[[ $(promql 'ALERTS{alertname="MediaJobControllerDown"}') == none ]] || fail "MediaJobControllerDown is active with 2 replicas up"
echo "sum(mediajob_processing_jobs) = 3 = Processing MediaJobs; backlog 0; MediaJobControllerDown silent"

uninstall kustomize "$kustomize_copy" uninstall
phase "Prometheus: MediaJobControllerDown fires"
prom_until 1 'ALERTS{alertname="MediaJobControllerDown",alertstate="firing"}' 90
echo "no replica scraped: MediaJobControllerDown firing"

phase "summary"
echo "--- pods"; kubectl get pods -A -o wide
echo "--- leader changes"; printf '  %s\n' "${leader_log[@]}"; cat "$work/lease-changes.txt"
echo "--- job phases"; kc get mediajobs
kc get mediajobs -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | sort | uniq -c
phase "done"
echo "--- timings"; printf '  %s\n' "${timings[@]:1}"
echo "E2E PASSED in $(($(date +%s) - started))s"
