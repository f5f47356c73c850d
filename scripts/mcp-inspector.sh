#!/bin/sh
# The MCP inspector's CLI (a dev dependency), a second MCP client, against a workspace's MCP
# endpoint with a bearer token:
#   scripts/mcp-inspector.sh <endpoint url> <token> --method tools/list
#   scripts/mcp-inspector.sh <endpoint url> <token> --method tools/call --tool-name exec \
#     --tool-arg command=uname --tool-arg 'args=["-a"]'
# It runs from the inspector's own directory: version 1.0.3 looks for its package.json relative
# to the working directory, and fails from most others.
set -eu
if [ "$#" -lt 3 ]; then
  echo "usage: $0 <endpoint url> <token> --method <method> [inspector options]" >&2
  exit 64
fi
url=$1
token=$2
shift 2
dir=$(cd "$(dirname "$0")/.." && pwd)/node_modules/@modelcontextprotocol/inspector-cli/build
if [ ! -f "$dir/cli.js" ]; then
  echo "$0: the MCP inspector CLI is not installed (npm ci installs it)" >&2
  exit 69
fi
cd "$dir"
exec node cli.js --cli "$url" --transport http --header "Authorization: Bearer $token" "$@"
