#!/usr/bin/env bash
# Builds vmenv-core's test guest from Debian packages: Debian's generic kernel, a busybox-static
# initramfs with the virtio/9p/iso9660 modules, and dropbear. Nothing is installed on the host
# beyond the packages in ci/apt-packages.txt (busybox-static, cpio); the kernel and dropbear are
# fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
#
# Usage: guest/build.sh [OUT_DIR]   (default: <workspace>/target/vmenv-guest)
# Output: OUT_DIR/vmlinuz and OUT_DIR/initrd.gz. The result is cached: a stamp holding the hash of
# this script and the package versions skips the work when nothing changed.
#
# The guest's /init (see below): brings up eth0 with DHCP, reads the NoCloud `cidata` seed
# (hostname from meta-data; ssh_authorized_keys and 9p mounts from user-data), mounts the 9p
# shares, starts httpd on :80 and dropbear on :22, turns the ACPI power button into a clean
# poweroff, and prints `vmenv: <phase>` progress markers on ttyS0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../target/vmenv-guest"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

exec 9>"$out/.lock"
flock 9

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "build.sh: cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)" >&2; exit 1; }
pkgs=("$kpkg" dropbear-bin libtomcrypt1 libtommath1)
want="$(sha256sum "$0" | cut -d' ' -f1) ${pkgs[*]} $(apt-cache policy "${pkgs[@]}" | awk '/Candidate/ {print $2}' | tr '\n' ' ')"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
command -v busybox >/dev/null || { echo "build.sh: busybox (busybox-static) is missing" >&2; exit 1; }
command -v cpio >/dev/null || { echo "build.sh: cpio is missing" >&2; exit 1; }

work="$out/work"
rm -rf "$work"
mkdir -p "$work/debs" "$work/x" "$work/root"
(cd "$work/debs" && apt-get download -q "${pkgs[@]}" >/dev/null 2>&1) || {
  echo "build.sh: apt-get download ${pkgs[*]} failed" >&2; exit 1; }
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/x"; done

kver=${kpkg#linux-image-}
cp "$work/x/boot/vmlinuz-$kver" "$out/vmlinuz.new"

r="$work/root"
mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,root/.ssh,mnt,seed,lib/modules,lib64,usr/lib,var/www,etc/dropbear}
cp "$(command -v busybox)" "$r/bin/busybox"

# Kernel modules, in dependency order (from .modinfo depends=).
mods="virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci failover net_failover virtio_net virtio_blk 9pnet 9pnet_virtio netfs fscache 9p button evdev cdrom isofs"
mdir="$work/x/lib/modules/$kver"
: > "$r/etc/modules"
for m in $mods; do
  f=$(find "$mdir" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
  if [ -z "$f" ]; then
    # Built into this kernel: nothing to load.
    continue
  fi
  case "$f" in *.xz) xz -dc "$f" > "$r/lib/modules/$m.ko" ;; *) cp "$f" "$r/lib/modules/$m.ko" ;; esac
  echo "$m" >> "$r/etc/modules"
done

# dropbear and the libraries it links, found with ldd.
cp "$work/x/usr/sbin/dropbear" "$r/sbin/dropbear"
libpath=$(find "$work/x" -name 'libtom*.so*' -printf '%h\n' | sort -u | tr '\n' ':')
LD_LIBRARY_PATH="$libpath" ldd "$work/x/usr/sbin/dropbear" | awk '/=>/ {print $3} $1 ~ /^\/lib64\// {print $1}' | while read -r lib; do
  [ -n "$lib" ] || continue
  dest="$r$(dirname "$lib")"
  case "$lib" in "$work/x"*) dest="$r/usr/lib" ;; esac
  mkdir -p "$dest"
  cp -L "$lib" "$dest/"
done
mkdir -p "$r/lib/x86_64-linux-gnu" "$r/usr/lib/x86_64-linux-gnu"

# root's login shell, which dropbear runs as `vmenv-sh -c COMMAND` for every SSH command.
# dropbear (2022.83) reads the command's stdout and stderr pipes non-blocking and takes a read
# that fails with EAGAIN for the end of the output: it closes the pipe, and the command's next
# write dies of SIGPIPE (exit 141). This kernel (6.1) makes a pipe look readable while it is still
# empty when a 9p read is spliced into it (sendfile, as busybox `cat` does: the zero-copy read
# adds pipe buffers before the host answers and drops them at end of file), so about one
# command in 20-60 that read a 9p file and then wrote more lost the rest of its output. The
# command therefore writes into pipes that busybox `cat` relays to dropbear with plain read and
# write: nothing is ever spliced into a pipe dropbear reads. The exit status is the command's
# (pipefail); stdin is the command's own.
cat > "$r/bin/vmenv-sh" <<'W'
#!/bin/busybox sh
[ "$1" = "-c" ] || exec /bin/sh "$@"
set -o pipefail
{ /bin/sh -c "$2" 2>&1 >&3 3>&- | cat >&2 3>&-; } 3>&1 | cat
W
chmod 755 "$r/bin/vmenv-sh"
cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/vmenv-sh
P
echo 'root:x:0:' > "$r/etc/group"
printf '/bin/sh\n/bin/vmenv-sh\n' > "$r/etc/shells"
echo '<h1>hello from vmenv guest</h1>' > "$r/var/www/index.html"

cat > "$r/etc/udhcpc.sh" <<'S'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
esac
exit 0
S
chmod +x "$r/etc/udhcpc.sh"

cat > "$r/init" <<'I'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin LD_LIBRARY_PATH=/usr/lib:/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
say() { echo "vmenv: $*" > /dev/ttyS0; }
say init
for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
say modules
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.sh -q -n -t 20 -T 1 >/dev/null 2>&1
say "ip $(ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)"

# NoCloud seed: the drive holding user-data.
hostname vmenv-guest
for d in /dev/vd?; do
  if mount -t iso9660 -o ro "$d" /seed 2>/dev/null; then
    if [ -f /seed/user-data ]; then
      h=$(sed -n 's/^local-hostname: *//p' /seed/meta-data 2>/dev/null)
      [ -n "$h" ] && hostname "$h"
      grep -oE '(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) [A-Za-z0-9+/=]+' /seed/user-data > /root/.ssh/authorized_keys
      # 9p mounts: cloud-config `mounts:` entries [ tag, dir, "9p", options, ... ]
      sed -n 's/^ *- \[ *"\([^"]*\)", *"\([^"]*\)", *"9p", *"\([^"]*\)".*/\1 \2 \3/p' /seed/user-data > /etc/vmenv-mounts
      say "seed $d"
      break
    fi
    umount /seed
  fi
done
chmod 700 /root/.ssh; chmod 600 /root/.ssh/authorized_keys 2>/dev/null
while read -r tag dir opts; do
  mkdir -p "$dir"
  mount -t 9p -o "$opts" "$tag" "$dir" && say "mounted $tag $dir"
done < /etc/vmenv-mounts 2>/dev/null

httpd -h /var/www -p 80
say "hostname $(hostname)"
# "ready" comes before dropbear starts, so it is in the serial log before SSH can answer.
say ready
dropbear -R -s -p 22 2>/dev/null

# Power button -> clean poweroff.
pb=""
for e in /sys/class/input/event*; do
  grep -q "Power Button" "$e/device/name" 2>/dev/null && pb="/dev/input/${e##*/}"
done
if [ -n "$pb" ]; then
  dd if="$pb" bs=24 count=1 of=/dev/null 2>/dev/null
  say poweroff
  sync
  awk '$3=="9p" {print $2}' /proc/mounts | while read -r m; do umount "$m"; done
  poweroff -f
fi
while true; do sleep 3600; done
I
chmod +x "$r/init"

(cd "$r" && find . | cpio -H newc -o --quiet | gzip -1 > "$out/initrd.gz.new")
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initrd.gz.new" "$out/initrd.gz"
rm -rf "$work"
echo "$want" > "$out/.stamp"
echo "build.sh: guest ready in $out ($kpkg, $(du -h "$out/initrd.gz" | cut -f1) initrd)"
