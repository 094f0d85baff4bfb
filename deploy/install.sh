#!/usr/bin/env bash
# Install edgegw as a service on a Debian/Ubuntu industrial PC (run as root from the project folder).
#   ./deploy/install.sh            # installs to /opt/edgegw, config in /etc/edgegw, data in /var/lib/edgegw
# Then edit /etc/edgegw/gateway.yaml, check it with `edgegw config validate`, and start the service.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
id edgegw >/dev/null 2>&1 || useradd --system --home /var/lib/edgegw --shell /usr/sbin/nologin edgegw
# serial ports for Modbus RTU
usermod -a -G dialout edgegw || true
install -d -o edgegw -g edgegw /var/lib/edgegw
install -d -m 0750 -o root -g edgegw /etc/edgegw
install -d /opt/edgegw
cp -r pyproject.toml README.md gateway drivers edge_config cloud_bridge simulators /opt/edgegw/
umask 022
python3 -m venv /opt/edgegw/.venv
/opt/edgegw/.venv/bin/pip install -q -c deploy/constraints.txt /opt/edgegw   # pinned: what was tested
# config readable by the service, writable by root only; secrets readable by root only (systemd reads the
# EnvironmentFile as root before it drops to the edgegw user)
if [ ! -f /etc/edgegw/gateway.yaml ]; then
  sed 's#data_dir: ./data#data_dir: /var/lib/edgegw#' deploy/gateway.example.yaml |
    install -m 0640 -o root -g edgegw /dev/stdin /etc/edgegw/gateway.yaml
fi
[ -f /etc/edgegw/edgegw.env ] || echo "# EDGEGW_MQTT_PASSWORD=..." | install -m 0600 -o root -g root /dev/stdin /etc/edgegw/edgegw.env
install -m 644 deploy/systemd/edgegw.service /etc/systemd/system/edgegw.service
/opt/edgegw/.venv/bin/edgegw config validate /etc/edgegw/gateway.yaml || echo "edit /etc/edgegw/gateway.yaml, then: systemctl enable --now edgegw"
systemctl daemon-reload 2>/dev/null || true
echo "installed. 配置 / config: /etc/edgegw/gateway.yaml — start: systemctl enable --now edgegw"
