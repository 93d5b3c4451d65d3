# The guest's command loop, on the virtio port named ctl: the host sends
# "<id> <script, base64>" lines; each script's output goes back, then
# "@@end <id> <exit status>". The output goes through a file, not a pipe,
# so a daemon a script starts cannot hold the answer open.
port=
for n in /sys/class/virtio-ports/*/name; do
	[ "$(cat "$n")" = ctl ] && port=/dev/$(basename "$(dirname "$n")")
done
[ -n "$port" ] || { echo "no virtio port named ctl"; exit 1; }
ip link set lo up
exec 3<>"$port"
echo "@@ready" >&3
while read -r id script <&3; do
	printf '%s' "$script" | base64 -d >/run/cmd.sh
	sh /run/cmd.sh >/run/out 2>&1 </dev/null 3>&-
	rc=$?
	cat /run/out >&3
	printf '\n@@end %s %s\n' "$id" "$rc" >&3
done
