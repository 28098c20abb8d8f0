#!/bin/sh
# The API with curl: health, models, a completion, a streamed completion.
# Set OPENAI_BASE_URL (default http://127.0.0.1:8000/v1) and OPENAI_API_KEY (one of the
# server's API_KEYS; any value when it has none).
set -eu

base="${OPENAI_BASE_URL:-http://127.0.0.1:8000/v1}"
key="${OPENAI_API_KEY:-unused}"

echo "== GET /health (no key needed)"
curl --silent --show-error --fail-with-body "${base%/v1}/health"
echo

echo "== GET /v1/models"
curl --silent --show-error --fail-with-body "$base/models" \
  -H "Authorization: Bearer $key"
echo

echo "== POST /v1/chat/completions"
curl --silent --show-error --fail-with-body "$base/chat/completions" \
  -H "Authorization: Bearer $key" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Say hello."}]}'
echo

# -N: print each server-sent event as it arrives instead of buffering.
echo "== POST /v1/chat/completions, streamed"
curl --silent --show-error --fail-with-body -N "$base/chat/completions" \
  -H "Authorization: Bearer $key" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-sonnet-4-5", "stream": true,
       "messages": [{"role": "user", "content": "Say hello."}]}'
