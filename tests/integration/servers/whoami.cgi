#!/bin/sh
# whoami.cgi - CGI page for the handoff server tests: echoes the client address and port the web server saw.
printf 'Content-Type: text/plain\r\n\r\n'
printf 'client=%s:%s pid=%s\n' "$REMOTE_ADDR" "$REMOTE_PORT" "$$"
