#!/bin/busybox sh
# The guest's first process (busybox, in the initramfs): load the modules,
# mount the host's root read-only and the bed's directory, give the daemons
# writable places of their own, and hand over to guest.sh in the host's
# root, so the guest runs the host's own FRR and iproute2 on its own kernel.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod "/lib/modules/$m.ko" || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host || echo "mount host failed"
mount -t 9p -o trans=virtio,version=9p2000.L bed /host/mnt || echo "mount bed failed"
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done
for d in run tmp var/tmp var/log; do mount -t tmpfs tmpfs "/host/$d"; done
exec chroot /host /bin/sh /mnt/guest.sh
