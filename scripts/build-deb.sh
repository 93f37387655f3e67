#!/bin/sh
# `make deb`: flow_<version>_<arch>.deb with Debian's own dpkg-deb, in the layout of
# scripts/install.sh (DESTDIR staging): the virtualenv inside at /opt/flow, flow/flowd/flowtui
# linked in /usr/bin, units, sysusers and tmpfiles in /usr/lib, /etc/flowd/flowd.toml a conffile.
# The maintainer scripts (packaging/debian) make the user and folders and reload systemd.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
command -v dpkg-deb >/dev/null 2>&1 || { echo "make deb: dpkg-deb is missing (apt install dpkg)" >&2; exit 1; }
version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$SRC/pyproject.toml")
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
arch=$(dpkg --print-architecture)
stage="$SRC/build/deb/flow_${version}_${arch}"
out="$SRC/flow_${version}_${arch}.deb"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
DESTDIR="$stage" PYTHON="$PYTHON" FLOW_HOME=/opt/flow BINDIR=/usr/bin UNITDIR=/usr/lib/systemd/system \
  USERUNITDIR=/usr/lib/systemd/user SYSUSERSDIR=/usr/lib/sysusers.d TMPFILESDIR=/usr/lib/tmpfiles.d \
  "$SRC/scripts/install.sh" install
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYVER@/$pyver/" -e "s/@SIZE@/$size/" \
  "$SRC/packaging/debian/control" > "$stage/DEBIAN/control"
cp "$SRC/packaging/debian/conffiles" "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 755 "$SRC/packaging/debian/$script" "$stage/DEBIAN/$script"
done
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out" >/dev/null
echo "built $out"
