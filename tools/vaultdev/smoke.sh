#!/usr/bin/env bash
# Builds vaultdev if needed (.ci/install-vaultdev), starts it on
# 127.0.0.1:18200 with root token "root" and exercises Transit with curl:
# mount, create key, encrypt, decrypt, rotate, rewrap, min_decryption_version,
# backup/restore, bad token; then AppRole: enable, create a role, log in.
set -euo pipefail
cd "$(dirname "$0")"
vaultdev="$(bash ../../.ci/install-vaultdev)"
ADDR=127.0.0.1:18200
A=http://$ADDR/v1
H='X-Vault-Token: root'
log="$(mktemp)"
"$vaultdev" -addr "$ADDR" -root-token root > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 200); do curl -sf "$A/sys/health" > /dev/null && break; sleep 0.05; done
curl -sf "$A/sys/health"; echo
j() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }
fail() { echo "FAIL: $*"; exit 1; }
curl -sf -H "$H" -X POST -d '{"type":"transit"}' "$A/sys/mounts/transit"
curl -sf -H "$H" -X POST -d '{"type":"aes256-gcm96","allow_plaintext_backup":true,"exportable":true}' "$A/transit/keys/k1" > /dev/null
PT=$(printf 'hello vault' | base64)
CT=$(curl -sf -H "$H" -X POST -d "{\"plaintext\":\"$PT\"}" "$A/transit/encrypt/k1" | j '["data"]["ciphertext"]')
[[ $CT == vault:v1:* ]] || fail "encrypt: $CT"
OUT=$(curl -sf -H "$H" -X POST -d "{\"ciphertext\":\"$CT\"}" "$A/transit/decrypt/k1" | j '["data"]["plaintext"]')
[[ $OUT == "$PT" ]] || fail "decrypt: $OUT"
curl -sf -H "$H" -X POST "$A/transit/keys/k1/rotate" > /dev/null
CT2=$(curl -sf -H "$H" -X POST -d "{\"ciphertext\":\"$CT\"}" "$A/transit/rewrap/k1" | j '["data"]["ciphertext"]')
[[ $CT2 == vault:v2:* ]] || fail "rewrap: $CT2"
OUT=$(curl -sf -H "$H" -X POST -d "{\"ciphertext\":\"$CT2\"}" "$A/transit/decrypt/k1" | j '["data"]["plaintext"]')
[[ $OUT == "$PT" ]] || fail "decrypt v2: $OUT"
curl -sf -H "$H" -X POST -d '{"min_decryption_version":2}' "$A/transit/keys/k1/config" > /dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$H" -X POST -d "{\"ciphertext\":\"$CT\"}" "$A/transit/decrypt/k1")
[[ $code == 400 ]] || fail "old version decrypt should be 400, got $code"
B=$(curl -sf -H "$H" "$A/transit/backup/k1" | j '["data"]["backup"]')
curl -sf -H "$H" -X POST -d "{\"backup\":\"$B\"}" "$A/transit/restore/k2"
OUT=$(curl -sf -H "$H" -X POST -d "{\"ciphertext\":\"$CT2\"}" "$A/transit/decrypt/k2" | j '["data"]["plaintext"]')
[[ $OUT == "$PT" ]] || fail "decrypt with restored key: $OUT"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Vault-Token: wrong' -X POST -d "{\"plaintext\":\"$PT\"}" "$A/transit/encrypt/k1")
[[ $code == 403 ]] || fail "bad token should be 403, got $code"
curl -sf -H "$H" -X POST -d '{"type":"approle"}' "$A/sys/auth/approle"
curl -sf -H "$H" -X POST -d '{"token_ttl":"60s"}' "$A/auth/approle/role/r1"
RID=$(curl -sf -H "$H" "$A/auth/approle/role/r1/role-id" | j '["data"]["role_id"]')
SID=$(curl -sf -H "$H" -X POST "$A/auth/approle/role/r1/secret-id" | j '["data"]["secret_id"]')
TTL=$(curl -sf -X POST -d "{\"role_id\":\"$RID\",\"secret_id\":\"$SID\"}" "$A/auth/approle/login" | j '["auth"]["lease_duration"]')
[[ $TTL == 60 ]] || fail "approle login: ttl $TTL"
echo "smoke: 1 passed, 0 failed"
