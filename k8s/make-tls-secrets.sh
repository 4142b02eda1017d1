#!/usr/bin/env bash
# Makes the certificates the manifests mount and, unless --files-only, creates their Secrets in namespace
# gpo: a private CA, GPO's server certificate, and a client certificate for the gateway and for each rail.
#
#   bash k8s/make-tls-secrets.sh DIR [--files-only] [--rails "simulator mpesa"]
#
# DIR keeps the CA's key (ca.key): keep it offline; it signs every new certificate. PostgreSQL's and
# RabbitMQ's CAs are yours: create gpo-postgres-ca and gpo-rabbitmq-ca from them (k8s/README.md, "TLS").
set -euo pipefail
dir=${1:?usage: make-tls-secrets.sh DIR [--files-only] [--rails "simulator mpesa"]}
shift
apply=1
rails="simulator mpesa"
while [ $# -gt 0 ]; do
  case "$1" in
    --files-only) apply=0 ;;
    --rails) rails=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
namespace=${GPO_NAMESPACE:-gpo}
days=${GPO_CERT_DAYS:-397}
mkdir -p "$dir"
umask 077
cd "$dir"

if [ ! -f ca.key ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.crt \
    -days 3650 -subj "/CN=GPO cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

issue() {  # issue NAME COMMON_NAME USAGE [SUBJECT_ALT_NAMES]
  local name=$1 cn=$2 usage=$3 sans=${4:-}
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$cn" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# GPO's certificate: the Service's names for the sidecars and clients, 127.0.0.1 for the gateway in its pod.
# The gateway serves HTTPS with it too, on the same Service.
svc="DNS:gpo,DNS:gpo.$namespace,DNS:gpo.$namespace.svc,DNS:gpo.$namespace.svc.cluster.local"
issue server gpo serverAuth "$svc,DNS:localhost,IP:127.0.0.1"
issue gateway gpo-gateway clientAuth
for rail in $rails; do
  issue "rail-$rail" "gpo-rail-$rail" clientAuth
done

if [ "$apply" = 1 ]; then
  secret() {  # secret NAME CERT_BASENAME: tls.crt, tls.key and the CA
    kubectl -n "$namespace" create secret generic "$1" \
      --from-file=tls.crt="$2.crt" --from-file=tls.key="$2.key" --from-file=ca.crt=ca.crt
  }
  secret gpo-server-tls server
  secret gpo-gateway-tls gateway
  for rail in $rails; do
    secret "gpo-rail-$rail-tls" "rail-$rail"
  done
fi
echo "certificates in $dir: ca.crt, server, gateway, ${rails// /, }" >&2
