#!/bin/sh
# Used by the 127.0.0.1 forwards of up.sh --node real: socat runs this once per
# connection. It joins the node's network namespace and connects stdin/stdout to
# HOST:PORT there.  Usage: ns-connect.sh NETNS HOST PORT
exec nsenter --net="/run/netns/$1" socat STDIO "TCP:$2:$3"
