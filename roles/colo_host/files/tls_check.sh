#!/bin/sh
# tls_check.sh DIR SECONDS SAN: "ok" if DIR's server key and certificate are usable for SECONDS more,
# signed by DIR's ca-cert.pem, match each other and name exactly SAN (openssl's form,
# e.g. "IPAddress:192.168.1.33,IPAddress:192.168.2.33"); otherwise why not. Changes nothing.
cd "$1" || { echo "no directory $1"; exit 0; }
[ -f server-key.pem ] && [ -f server-cert.pem ] || { echo "no certificate yet"; exit 0; }
openssl verify -CAfile ca-cert.pem server-cert.pem >/dev/null 2>&1 || { echo "not signed by the pair's CA"; exit 0; }
openssl x509 -checkend "$2" -noout -in server-cert.pem >/dev/null || { echo "expires within $2 s"; exit 0; }
[ "$(openssl x509 -noout -pubkey -in server-cert.pem)" = "$(openssl pkey -pubout -in server-key.pem)" ] ||
  { echo "certificate of another key"; exit 0; }
san=$(openssl x509 -noout -ext subjectAltName -in server-cert.pem | tail -n +2 | tr -d ' ')
[ "$san" = "$3" ] || { echo "names $san, not $3"; exit 0; }
echo ok
