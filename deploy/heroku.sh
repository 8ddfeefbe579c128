#!/usr/bin/env bash
# Push the web app with the model (deploy/bundle.py) to Heroku as a one-commit repository, and
# print the app's URL (also as the step output `url` in GitHub Actions) for deploy/smoke.py.
# Needs HEROKU_API_KEY and HEROKU_APP_NAME; `deploy/heroku.sh --check` only says whether both
# are set (the deploy workflow skips its steps with a notice when they are not).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -n "${HEROKU_API_KEY:-}" ] || missing+=(HEROKU_API_KEY)
[ -n "${HEROKU_APP_NAME:-}" ] || missing+=(HEROKU_APP_NAME)
if [ "${1:-}" = "--check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Deploy skipped: set the repository secrets ${missing[*]} (Settings > Secrets and variables > Actions) to deploy to Heroku (docs/deploy.md)."
    exit 1
  fi
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: ${missing[*]} not set" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python deploy/bundle.py "$work/slug"
# git reads the key from a netrc in a HOME of its own (never a command line, never ~/.netrc).
mkdir -m 700 "$work/home"
(
  umask 077
  printf 'machine git.heroku.com login heroku password %s\n' "$HEROKU_API_KEY" > "$work/home/.netrc"
  printf 'Authorization: Bearer %s\nAccept: application/vnd.heroku+json; version=3\n' \
    "$HEROKU_API_KEY" > "$work/headers"
)
commit="${GITHUB_SHA:-$(git rev-parse --short HEAD)}"
cd "$work/slug"
git init -q -b main
git add -A
git -c user.name=deploy -c user.email=deploy@users.noreply.github.com commit -qm "deploy $commit"
HOME="$work/home" git push --force --quiet "https://git.heroku.com/${HEROKU_APP_NAME}.git" main
url=$(curl -fsS -H @"$work/headers" "https://api.heroku.com/apps/${HEROKU_APP_NAME}" |
  python -c "import json, sys; print(json.load(sys.stdin)['web_url'])")
echo "deployed to ${url}"
if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "url=${url}" >> "$GITHUB_OUTPUT"; fi
