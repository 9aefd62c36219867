#!/usr/bin/env sh
# Makes the certificates deploy/docker-compose.secure.yml mounts: a CA, and for each broker a PEM
# file with its private key and certificate (CN=broker-N; names broker-N, localhost, 127.0.0.1),
# all signed by the CA. For trying the secure topology out, not for production: keep the CA key
# somewhere safe, or use your own CA.
#   deploy/make-certs.sh [OUT_DIR]     (default: deploy/certs)
set -eu
out="${1:-$(dirname "$0")/certs}"
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=strom compose CA" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null
for n in 1 2 3; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=broker-$n" \
    -keyout "broker-$n.key" -out "broker-$n.csr" 2>/dev/null
  printf "subjectAltName=DNS:broker-%s,DNS:localhost,IP:127.0.0.1\n" "$n" > "broker-$n.ext"
  openssl x509 -req -in "broker-$n.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 365 -extfile "broker-$n.ext" -out "broker-$n.crt" 2>/dev/null
  cat "broker-$n.key" "broker-$n.crt" > "broker-$n.pem"
  rm "broker-$n.key" "broker-$n.csr" "broker-$n.ext" "broker-$n.crt"
  chmod 600 "broker-$n.pem"
done
chmod 600 ca-key.pem
echo "certificates in $out: ca.pem, broker-1.pem, broker-2.pem, broker-3.pem"
