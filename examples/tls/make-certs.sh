#!/usr/bin/env bash
# Makes throwaway certificates for trying TLS and mTLS with plugrpc (OpenSSL 3, EC P-256):
#   ca.{crt,key}            a test CA
#   server.{crt,key}        the host's certificate: DNS localhost, IP 127.0.0.1 and ::1
#   client.{crt,key}        a client certificate from the CA: CN client, URI SAN
#                           spiffe://example.org/client (the identity plugins see)
#   other-ca.{crt,key}, other-client.{crt,key}
#                           an unrelated CA and client, which the host must refuse
# Usage: examples/tls/make-certs.sh OUT_DIR   (never use these keys for anything real)
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR}
mkdir -p "$OUT"
cd "$OUT"
DAYS=3650

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

mkca() { # name CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$1.crt"
}

mkleaf() { # name CN ca extfile-content
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial \
    -sha256 -days "$DAYS" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

LEAF_COMMON='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer'

mkca ca "plugrpc test CA"
mkleaf server localhost ca "$LEAF_COMMON
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
mkleaf client client ca "$LEAF_COMMON
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://example.org/client"

mkca other-ca "unrelated test CA"
mkleaf other-client other-client other-ca "$LEAF_COMMON
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://example.org/other-client"

rm -f ./*.srl
chmod 600 ./*.key
openssl verify -CAfile ca.crt server.crt client.crt >/dev/null
openssl verify -CAfile other-ca.crt other-client.crt >/dev/null
echo "test certificates written to $OUT"
