#!/bin/bash
# Captures what real clients (upnpc, natpmpc, the portfwd CLI) send to a portfwd running in a
# private three-namespace lab, for the fuzz seeds: `S=/tmp/pf-seed capture.sh`, with the
# portfwd binary at $S/portfwd; then extract.py $S/raw and seeds.py. Needs root and tcpdump.
set -x
S=${S:-/tmp/pf-seed}
R=pfz-r; L=pfz-l; W=pfz-w
for n in $R $L $W; do ip netns del $n 2>/dev/null; ip netns add $n; ip -n $n link set lo up; done
ip -n $R link add wan type veth peer name eth0 netns $W
ip -n $R link add lan type veth peer name eth0 netns $L
ip -n $R addr add 198.51.100.1/24 dev wan
ip -n $R addr add 10.77.0.1/24 dev lan
ip -n $R -6 addr add 2001:db8:77::1/64 dev lan nodad
ip -n $R -6 addr add 2001:db8:ff::1/64 dev wan nodad
ip -n $W addr add 198.51.100.2/24 dev eth0
ip -n $L addr add 10.77.0.10/24 dev eth0
ip -n $L -6 addr add 2001:db8:77::10/64 dev eth0 nodad
for x in "$R wan" "$R lan" "$W eth0" "$L eth0"; do set -- $x; ip -n $1 link set $2 up; done
ip -n $L route add default via 10.77.0.1
ip -n $L -6 route add default via 2001:db8:77::1
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip netns exec $R sysctl -qw net.ipv6.conf.all.forwarding=1
rm -rf $S/state; mkdir -p $S/state
cat > $S/portfwd.toml <<'TOML'
# The lab's router: WAN and LAN veths, one share for the LAN web server.
wan = "wan"
lan = "lan"
xdp_mode = "skb"

[[share]]
name = "web"
proto = "tcp"
external_port = 8080
internal = "10.77.0.10:80"

[[share]]
proto = "udp"
external_port = 27015
internal = "10.77.0.10:27015"
remote = "198.51.100.2"
enabled = false

[upnp]
igd_version = 2
secure_mode = true
max_lease = 86400
quota_per_client = 16

[[upnp.rule]]
action = "allow"
external_ports = "1024-65535"
clients = "10.77.0.0/24"

[pcp]
third_party = false
min_lifetime = 120
max_lifetime = 86400

[ipv6]
inbound = "deny"

[api]
listen = "127.0.0.1:9780"

[wan_link]
flap_window = 300
TOML
ip netns exec $R tcpdump -i lan -U -w $S/lan.pcap 'udp port 5351 or tcp port 5000 or udp port 1900' 2>/dev/null &
T1=$!
ip netns exec $R tcpdump -i lo -U -w $S/lo.pcap 'tcp port 9780' 2>/dev/null &
T2=$!
sleep 1
ip netns exec $R $S/portfwd run --config $S/portfwd.toml --state-dir $S/state > $S/daemon.out 2> $S/daemon.err &
D=$!
for i in $(seq 50); do grep -q ready $S/daemon.out && break; sleep 0.2; done
U="http://10.77.0.1:5000/rootDesc.xml"
E="ip netns exec $L"
$E upnpc -l > $S/upnpc-l.out 2>&1
$E upnpc -u $U -s
$E upnpc -u $U -e "ssh" -a 10.77.0.10 22 2222 TCP 3600
$E upnpc -u $U -r 27016 UDP 3600
$E upnpc -u $U -n 10.77.0.10 5353 40000 UDP 600
$E upnpc -u $U -L
$E upnpc -u $U -l
$E upnpc -u $U -d 2222 TCP
$E upnpc -u $U -D 1024 65535 TCP 0
$E upnpc -u $U -G
$E upnpc -u $U -6 -A 2001:db8:ff::2 0 2001:db8:77::10 443 6 3600
$E upnpc -u $U -6 -S
$E natpmpc -g 10.77.0.1
$E natpmpc -g 10.77.0.1 -a 5001 5001 udp 3600
$E natpmpc -g 10.77.0.1 -a 8443 443 tcp 7200
$E natpmpc -g 10.77.0.1 -a 5001 0 udp 0
TOKEN=$(cat $S/state/api-token)
C="ip netns exec $R env PORTFWD_TOKEN=$TOKEN $S/portfwd"
$C share add tcp:9000=10.77.0.10:9000 --name api-share
$C share edit tcp:9000 --internal 10.77.0.10:9001
$C share disable tcp:9000
$C share enable tcp:9000
$C share add tcp:443=[2001:db8:77::10]:443 --name web6 --remote6 2001:db8:ff::2
$C share disable tcp:[2001:db8:77::10]:443
$C device deny 10.77.0.20
$C device reset 10.77.0.20
$C settings set --secure-mode off --quota-per-client 8
$C share list --json > /dev/null
$C events > /dev/null
$C status > /dev/null
$C share rm tcp:9000
sleep 1
kill -TERM $D; wait $D
kill $T1 $T2; wait $T1 $T2 2>/dev/null
# The journal of that session; then the snapshot a restarted daemon writes of it.
rm -rf $S/store1; cp -r $S/state/store $S/store1
ip netns exec $R $S/portfwd run --config $S/portfwd.toml --state-dir $S/state > $S/daemon2.out 2>&1 &
D=$!
for i in $(seq 50); do grep -q ready $S/daemon2.out && break; sleep 0.2; done
kill -TERM $D; wait $D
python3 "$(dirname "$0")/extract.py" $S/raw
for n in $R $L $W; do ip netns del $n; done
