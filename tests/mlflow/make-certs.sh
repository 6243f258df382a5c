#!/usr/bin/env bash
# A throw-away test CA and a server certificate for 127.0.0.1 / localhost, signed by it.
#   make-certs.sh DIR    writes DIR/ca.pem, DIR/server.pem (leaf + CA), DIR/server.key
# Used for the test OpenID provider's HTTPS listener (mod_auth_openidc refuses an http:// JWKS
# URL), so mlflow-oidc must trust ca.pem through `ca-bundle` or SSL_CERT_FILE. Needs openssl.
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mlflow-oidc e2e test CA" \
  -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
  'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
  -out server.pem 2>/dev/null
# Apache's children (www-data when started as root) read ca.pem at request time; test-only material.
chmod 644 ca.pem server.pem server.key
rm -f server.csr ext.cnf ca.srl
