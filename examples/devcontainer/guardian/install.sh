#!/bin/sh
# The Guardian dev container feature: install it for everyone, and give the store's volume
# to the container's user (features run as root at build time; $_REMOTE_USER is that user).
set -eu
PACKAGE="${PACKAGE:-guardian-agent}"
python3 -m pip install --no-cache-dir "$PACKAGE"
mkdir -p /var/lib/guardian
if [ -n "${_REMOTE_USER:-}" ] && [ "$_REMOTE_USER" != root ]; then
    chown "$_REMOTE_USER:" /var/lib/guardian
fi
chmod 0700 /var/lib/guardian
