#!/bin/sh
# Entrypoint of localhost/imgproc-redis (the chart replaces it with its own command): the
# argument handling of the official image's docker-entrypoint.sh. Options or a *.conf file as
# the first argument run redis-server with them; as root, the data directory is handed to the
# redis user and the server runs as that user; files are private (umask 0077).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis:redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
fi
if [ "$(umask)" = 0022 ]; then
	umask 0077
fi
exec "$@"
