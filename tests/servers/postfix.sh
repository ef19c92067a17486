#!/usr/bin/env bash
# A private Postfix instance on 127.0.0.1 for the tikos-outbox tests.
#
#   bash tests/servers/postfix.sh start DIR [TIME_UNIT_S]   (default 15)
#   bash tests/servers/postfix.sh stop DIR
#
# DIR becomes an alternate Postfix config directory (postfix -c DIR) with its
# own queue, data directory, log file (DIR/maillog), Cyrus sasldb, self-signed
# certificate and one Maildir (DIR/mail) that receives every accepted mail,
# whatever the recipient domain, but kunden.test and rechnung@waescherei.test,
# which go by LMTP to the test Dovecot (see below). Nothing leaves the machine. The default
# instance in /etc/postfix is neither used nor started.
#
# SMTP services (all STARTTLS before AUTH, AUTH required to send):
#   127.0.0.1:20587 plain          no rate limit; Postfix's default smtpd_delay_reject
#                                  (sender restrictions answer at RCPT TO, as at ISPs)
#   127.0.0.1:20588 limited_a      smtpd_client_message_rate_limit = 10
#   127.0.0.1:20589 limited_b      the same, its own anvil counter
#   127.0.0.1:20590 short_timeout  smtpd_timeout = 2s
#   127.0.0.1:20591 strict_helo    EHLO/HELO required, FQDN required
# Every service but plain has smtpd_delay_reject = no, so sender and HELO
# restrictions reply at MAIL FROM and at EHLO, not postponed to RCPT TO.
#
# start is idempotent: a running instance is left alone (info.json is
# rewritten); a stopped one is wiped and created afresh. DIR/info.json tells
# the tests everything they need. Run as root.
set -euo pipefail

readonly HOST=127.0.0.1
readonly MYHOSTNAME=mx.tikos.test
readonly RATE_LIMIT=10
readonly SMTPD_TIMEOUT_S=2
readonly MARKER=.tikos-outbox-postfix
readonly LMTP_PORT=20024  # the test Dovecot's LMTP (tests/servers/dovecot.sh)
# name port extra-smtpd-options
readonly SERVICES="plain 20587 -
limited_a 20588 smtpd_client_message_rate_limit=${RATE_LIMIT},smtpd_delay_reject=no
limited_b 20589 smtpd_client_message_rate_limit=${RATE_LIMIT},smtpd_delay_reject=no
short_timeout 20590 smtpd_timeout=${SMTPD_TIMEOUT_S}s,smtpd_delay_reject=no
strict_helo 20591 smtpd_helo_required=yes,smtpd_helo_restrictions=reject_non_fqdn_helo_hostname,smtpd_delay_reject=no"
# SASL login (user@realm), password, the one sender address it may use
readonly USERS="laundry@tikos.test|Wäsche-Passwort 1|rechnung@waescherei.test
mandant2@tikos.test|zweites-Passwort|rechnung@mandant2.test"

die() { echo "postfix.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 start DIR [TIME_UNIT_S] | stop DIR" >&2; exit 2; }

[ $# -ge 2 ] || usage
action=$1
[ -n "$2" ] || usage
dir=$(realpath -m -- "$2")
[ "$(id -u)" = 0 ] || die "must run as root"
command -v postfix >/dev/null || die "postfix is not installed (apt-get install postfix sasl2-bin libsasl2-modules)"

def_config_dir=$(postconf -dh config_directory)
case "$dir" in
  / | "$def_config_dir" | "$def_config_dir"/*) die "refusing to use $dir" ;;
esac

# True when the master process of the instance in $dir runs.
running() {
  [ -f "$dir/main.cf" ] && [ -f "$dir/$MARKER" ] || return 1
  # master -t exits 0 when the instance is NOT running (its pid file is unlocked)
  ! "$(postconf -dh daemon_directory)/master" -c "$dir" -t 2>/dev/null
}

log_tail() {
  if [ -f "$dir/maillog" ]; then
    echo "--- last lines of $dir/maillog ---" >&2
    tail -n 40 "$dir/maillog" >&2
  fi
}

json_str() { # minimal JSON string escaping (backslash and double quote)
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

write_info() {
  local unit=$1 first name port rest login password sender
  {
    printf '{\n  "host": "%s",\n  "ports": {' "$HOST"
    first=1
    while read -r name port rest; do
      [ $first ] || printf ','
      printf '\n    "%s": %s' "$name" "$port"
      first=
    done <<<"$SERVICES"
    printf '\n  },\n'
    printf '  "ca_file": %s,\n' "$(json_str "$dir/tls/cert.pem")"
    printf '  "maildir": %s,\n' "$(json_str "$dir/mail")"
    printf '  "maillog": %s,\n' "$(json_str "$dir/maillog")"
    printf '  "time_unit_s": %s,\n  "rate_limit": %s,\n  "smtpd_timeout_s": %s,\n' \
      "$unit" "$RATE_LIMIT" "$SMTPD_TIMEOUT_S"
    printf '  "users": {'
    first=1
    while IFS='|' read -r login password sender; do
      [ $first ] || printf ','
      printf '\n    "%s": "%s"' "$login" "$password"
      first=
    done <<<"$USERS"
    printf '\n  },\n  "senders": {'
    first=1
    while IFS='|' read -r login password sender; do
      [ $first ] || printf ','
      printf '\n    "%s": "%s"' "$login" "$sender"
      first=
    done <<<"$USERS"
    printf '\n  }\n}\n'
  } >"$dir/info.json.tmp"
  mv -f "$dir/info.json.tmp" "$dir/info.json"
}

# True when something listens on $HOST:$1 (read from /proc, no connection made).
listening() {
  local addr
  printf -v addr '0100007F:%04X' "$1"
  awk -v a="$addr" '$2 == a && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp
}

# True when $HOST:$1 does a full STARTTLS handshake whose certificate verifies
# against DIR/tls/cert.pem, and then says goodbye to QUIT. (A mere 220 greeting
# proves little: smtpd that cannot load its key still greets, still offers
# STARTTLS, and only answers it with 454.)
smtp_ready() {
  local out
  out=$(timeout 5 openssl s_client -connect "$HOST:$1" -starttls smtp \
    -name probe.tikos.test -CAfile "$dir/tls/cert.pem" -verify_return_error \
    -verify_hostname localhost -brief -ign_eof 2>&1 <<<$'QUIT\r') || return 1
  [[ "$out" == *$'\n221 '* ]]
}

# Wait (at most 20 s) until every service accepts connections. The rate-limited
# services are only checked for a listening socket: an SMTP connection would
# start their anvil window (it begins at a client's first connection, not at
# its first MAIL) and so skew the first rate-limit test after start. The
# others must complete STARTTLS, which shows that smtpd and TLS work.
wait_for_ports() {
  local name port opts deadline=$((SECONDS + 20))
  while read -r name port opts; do
    while :; do
      if listening "$port"; then
        case "$opts" in
          *rate_limit*) break ;;
          *) smtp_ready "$port" && break ;;
        esac
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        log_tail
        die "service $name ($HOST:$port) does not accept SMTP connections with STARTTLS after 20 s"
      fi
      sleep 0.2
    done
  done <<<"$SERVICES"
}

write_main_cf() {
  local unit=$1 uid=$2 gid=$3 login password sender logins=""
  while IFS='|' read -r login password sender; do
    logins+="${logins:+, }$sender=$login"
  done <<<"$USERS"
  cat >"$dir/main.cf" <<EOF
# Private test instance of tikos-outbox (generated by tests/servers/postfix.sh).
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop

# Logging into a file via postlogd, no syslog.
maillog_file = $dir/maillog
maillog_file_prefixes = $dir

# Loopback only.
inet_interfaces = $HOST
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_bind_address = $HOST

myhostname = $MYHOSTNAME
mydomain = tikos.test
myorigin = \$myhostname
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
biff = no

# Every accepted mail, for any domain, goes into the one Maildir $dir/mail/.
virtual_mailbox_domains = static:all
virtual_mailbox_base = $dir
virtual_mailbox_maps = static:mail/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = $uid
virtual_transport = virtual
# Except: the customers' domain kunden.test and the laundry's own sender mailbox
# go by LMTP into the test Dovecot (tests/servers/dovecot.sh), which has a mailbox
# only for some addresses. Postfix accepts every address at RCPT, so an unknown
# customer comes back as a real bounce (RFC 3464) into the sender's mailbox.
transport_maps = inline:{ kunden.test=lmtp:inet:$HOST:$LMTP_PORT, rechnung@waescherei.test=lmtp:inet:$HOST:$LMTP_PORT }
# Safety net: nothing is ever sent out.
default_transport = error:5.7.1 outbound mail is disabled in this test instance
relay_transport = \$default_transport

# Deliver and retry quickly.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 4s

# TLS: STARTTLS required, AUTH only after it.
smtpd_tls_cert_file = $dir/tls/cert.pem
smtpd_tls_key_file = $dir/tls/key.pem
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtp_tls_security_level = none

# Cyrus SASL with sasldb2 (see $dir/sasl/smtpd.conf).
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/sasl
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_local_domain =

# Restrictions. Postfix's default delay (answered at RCPT TO) here; the
# services but plain answer at MAIL FROM (553) and at EHLO (504), see master.cf.
smtpd_sender_login_maps = inline:{ $logins }
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject

# Rate limits (per service, set in master.cf); loopback is not exempt.
anvil_rate_time_unit = ${unit}s
smtpd_client_event_limit_exceptions =
EOF
}

write_master_cf() {
  local name port opts o
  {
    echo "# Private test instance of tikos-outbox (generated by tests/servers/postfix.sh)."
    echo "# service type  private unpriv  chroot  wakeup  maxproc command + args"
    while read -r name port opts; do
      echo "$HOST:$port inet n - n - - smtpd"
      echo "  -o syslog_name=postfix/$name"
      if [ "$opts" != - ]; then
        for o in ${opts//,/ }; do echo "  -o $o"; done
      fi
    done <<<"$SERVICES"
    cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  } >"$dir/master.cf"
}

create_instance() {
  local unit=$1 uid gid login password sender
  uid=$(id -u postfix) || die "user postfix is missing (is postfix installed?)"
  gid=$(id -g postfix)
  getent group postdrop >/dev/null || groupadd --system postdrop
  command -v saslpasswd2 >/dev/null || die "saslpasswd2 is missing (apt-get install sasl2-bin)"
  compgen -G '/usr/lib/*/sasl2/libplain.so*' >/dev/null \
    || die "the SASL PLAIN plugin is missing (apt-get install libsasl2-modules)"

  if [ -e "$dir" ]; then
    # Only ever wipe a directory this script created (or an empty one).
    if [ -f "$dir/$MARKER" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
      rm -rf -- "$dir"
    else
      die "$dir exists and was not created by this script; refusing to touch it"
    fi
  fi

  # Postfix wants the config directory and queue_directory root-owned and not
  # group/other writable; the data directory belongs to the mail owner.
  umask 022
  mkdir -p "$dir"
  chown root:root "$dir"
  chmod 755 "$dir"
  : >"$dir/$MARKER"
  mkdir -m 755 "$dir/queue" "$dir/sasl" "$dir/tls"
  mkdir -m 700 "$dir/data"
  chown postfix:postfix "$dir/data"
  mkdir -m 700 "$dir/mail" "$dir/mail/new" "$dir/mail/cur" "$dir/mail/tmp"
  chown -R "$uid:$gid" "$dir/mail"

  # Self-signed certificate, also the client's CA file.
  cat >"$dir/tls/openssl.cnf" <<'EOF'
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext
[dn]
CN = localhost
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -config "$dir/tls/openssl.cnf" -keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" 2>/dev/null \
    || die "openssl could not create the certificate"
  chmod 600 "$dir/tls/key.pem"
  chmod 644 "$dir/tls/cert.pem"

  # Cyrus SASL: smtpd.conf and the sasldb2 users (login = user@realm).
  cat >"$dir/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $dir/sasldb2
EOF
  chmod 644 "$dir/sasl/smtpd.conf"
  while IFS='|' read -r login password sender; do
    printf '%s' "$password" | saslpasswd2 -p -c -f "$dir/sasldb2" -u "${login#*@}" "${login%@*}" \
      || die "saslpasswd2 failed for $login"
  done <<<"$USERS"
  # smtpd runs as postfix and opens the sasldb read-only at each AUTH.
  chown root:postfix "$dir/sasldb2"
  chmod 640 "$dir/sasldb2"

  write_main_cf "$unit" "$uid" "$gid"
  write_master_cf
  chmod 644 "$dir/main.cf" "$dir/master.cf"
  : >"$dir/maillog"
  chmod 644 "$dir/maillog"
}

case "$action" in
  start)
    [ $# -le 3 ] || usage
    unit=${3:-15}
    [[ "$unit" =~ ^[1-9][0-9]*$ ]] || die "TIME_UNIT_S must be a positive whole number of seconds, not '$unit'"
    if running; then
      current=$(postconf -c "$dir" -h anvil_rate_time_unit)
      current=${current%s}
      if [ $# -ge 3 ] && [ "$current" != "$unit" ]; then
        echo "postfix.sh: instance in $dir already runs with time unit ${current}s (not ${unit}s); left as it is" >&2
      fi
      write_info "$current"
      wait_for_ports
      echo "postfix.sh: already running in $dir"
      exit 0
    fi
    # Postfix listens with SO_REUSEPORT: a second instance (or anything else
    # with that option) on these ports would silently share the connections.
    while read -r name port _; do
      if listening "$port"; then
        command -v ss >/dev/null && ss -ltnp "sport = :$port" >&2 || true
        die "$HOST:$port ($name) is already in use by another process; stop it first"
      fi
    done <<<"$SERVICES"
    create_instance "$unit"
    write_info "$unit"
    if ! postfix -c "$dir" start >/dev/null 2>"$dir/start.err"; then
      cat "$dir/start.err" >&2
      log_tail
      die "postfix -c $dir start failed"
    fi
    wait_for_ports
    echo "postfix.sh: running in $dir (ports 20587-20591 on $HOST, time unit ${unit}s)"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    if running; then
      postfix -c "$dir" stop >/dev/null 2>&1 || { log_tail; die "postfix -c $dir stop failed"; }
      for _ in $(seq 1 50); do running || break; sleep 0.1; done
      running && die "instance in $dir still runs"
      echo "postfix.sh: stopped the instance in $dir"
    else
      echo "postfix.sh: no instance runs in $dir"
    fi
    ;;
  *) usage ;;
esac
