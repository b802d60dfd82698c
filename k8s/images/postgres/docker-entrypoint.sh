#!/usr/bin/env bash
# Entrypoint of localhost/imgproc-postgres: the part of the official postgres image's
# docker-entrypoint.sh that charts/imgproc/charts/postgresql uses.
#  - POSTGRES_PASSWORD, POSTGRES_USER (default postgres), POSTGRES_DB (default the user),
#    POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256); each also as
#    <NAME>_FILE (the chart passes POSTGRES_PASSWORD_FILE).
#  - On an empty $PGDATA: initdb (superuser password from the file, never on a command line),
#    `listen_addresses = '*'`, pg_hba `host all all all <method>` for the pod network, then a
#    socket-only temporary server (the pod stays unready) that creates POSTGRES_DB and runs
#    /docker-entrypoint-initdb.d/* (*.sh: run when executable, else sourced; *.sql: psql).
#  - Options as the first argument run postgres with them; as root it prepares the
#    directories and re-runs itself as postgres (uid 70).
# Not covered: *.sql.gz/.xz/.zst init files, POSTGRES_INITDB_WALDIR, nss_wrapper for uids
# without a passwd entry (the image's postgres user is the chart's uid 70), the "database
# system was shut down uncleanly" recovery hints, docker_setup_env's warnings.
# Unlike initdb's default (which the official image keeps), TCP from 127.0.0.1 needs the
# password too; only the Unix socket is trusted.
set -Eeo pipefail
shopt -s nullglob

# VAR or VAR_FILE (not both), as the official image's file_env.
file_env() {
	local var=$1 file_var="$1_FILE" val=${2:-}
	if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
		echo "error: both $var and $file_var are set (but are exclusive)" >&2
		exit 1
	fi
	if [[ -n ${!var:-} ]]; then
		val=${!var}
	elif [[ -n ${!file_var:-} ]]; then
		val=$(<"${!file_var}")
	fi
	export "$var=$val"
	unset "$file_var"
}

init_database() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	local method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	if [[ -z $POSTGRES_PASSWORD && $method != trust ]]; then
		echo "error: database is uninitialized and superuser password is not specified." >&2
		echo "  Set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust)." >&2
		exit 1
	fi
	local -a args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$method" -D "$PGDATA")
	# shellcheck disable=SC2206 # POSTGRES_INITDB_ARGS holds several arguments
	args+=($POSTGRES_INITDB_ARGS)
	if [[ -n $POSTGRES_PASSWORD ]]; then
		initdb "${args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
	else
		initdb "${args[@]}"
	fi
	printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# Temporary server on the Unix socket only.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
	export PGPASSWORD=$POSTGRES_PASSWORD
	local -a psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [[ $POSTGRES_DB != postgres ]]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<-'SQL'
			CREATE DATABASE :"db";
		SQL
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
			*.sh)
				if [[ -x $f ]]; then
					echo "$0: running $f"
					"$f"
				else
					echo "$0: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi ;;
			*.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
			*) echo "$0: ignoring $f (not covered by this image)" ;;
		esac
	done
	unset PGPASSWORD
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo "$0: PostgreSQL init process complete; ready for start up."
}

if [[ ${1:-} == -* ]]; then
	set -- postgres "$@"
fi
if [[ ${1:-} == postgres ]]; then
	if [[ $(id -u) == 0 ]]; then
		install -d -o postgres -g postgres -m 0700 "$PGDATA"
		install -d -o postgres -g postgres -m 3777 /var/run/postgresql
		exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
	fi
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA" 2>/dev/null || :
	if [[ ! -s $PGDATA/PG_VERSION ]]; then
		init_database
	fi
fi
exec "$@"
