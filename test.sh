#!/usr/bin/env bash
# Runs every test project of EdgeNode, installing what the tests need first:
#   mosquitto + mosquitto-clients (a real broker and real MQTT clients), python3-onnx + python3-numpy
#   (the model-signature checker), systemd (systemd-analyze for the unit-file tests), dpkg-deb
#   and file (the .deb tests). Ends with one line: "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
/usr/bin/python3 -c "import onnx, numpy" >/dev/null 2>&1 || need+=(python3-onnx python3-numpy)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v file >/dev/null 2>&1 || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing test dependencies: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian package starts a system mosquitto on 1883; the tests start their own on ephemeral ports.

results="$(mktemp -d)"
status=0
dotnet test EdgeNode.sln --logger "trx" --results-directory "$results" "$@" || status=$?

# Sum the TRX counters of every test project.
python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
p = f = s = 0
for path in glob.glob(sys.argv[1] + "/**/*.trx", recursive=True):
    c = ET.parse(path).getroot().find(".//{*}ResultSummary/{*}Counters")
    if c is None:
        continue
    p += int(c.get("passed", 0)); f += int(c.get("failed", 0)) + int(c.get("error", 0)) + int(c.get("timeout", 0))
    s += int(c.get("notExecuted", 0))
print(f"{p} passed, {f} failed, {s} skipped")
PY
rm -rf "$results"
exit $status
