#!/usr/bin/env bash
# Install the Debian packages the appliance needs: to run it (default) or to test it (--test).
# Idempotent: does nothing when everything is present. As root on Debian it installs with
# apt-get (after apt-get update); otherwise it says exactly what to install and fails.
set -euo pipefail

# binutils: PyInstaller (objdump) packages the appliance Terraform provider at `make run`;
# bubblewrap: every terraform run happens inside its sandbox (docs/adr/0009); docker-registry: the
# internal registry (docs/adr/0018); podman, runc: workspace containers, owned by the runtime service
# (docs/adr/0019; crun fails on these hosts); skopeo: `appliance images import`; debootstrap: the
# embedded server builds the workspace base image once per machine (appliance/server/base_image.py).
packages=(postgresql-15 binutils bubblewrap docker-registry podman runc skopeo debootstrap)
if [[ "${1:-}" == "--test" ]]; then
  # chromium: browser tests; dpkg-dev, gnupg: bundle build tests;
  # systemd-container: the fresh offline host (systemd-nspawn) of the end-to-end tests;
  # vagrant: `vagrant validate` of the operator Vagrantfile; nginx: the installed layout's front
  # in the log-follower load test (tests/integration/appliance/gateway/test_follow_load.py);
  # openssh-client, rsync: ssh/scp/sftp/rsync through `appliance ssh --stdio` (tests/.../cli/test_ssh.py).
  packages+=(chromium git dpkg-dev gnupg systemd-container vagrant nginx openssh-client rsync)
fi
# npm: the console's terminal (xterm.js) is fetched with `npm pack` at build time
# (bundles/build/console_assets.py). A machine with Node.js from elsewhere already has it.
if ! command -v npm >/dev/null; then
  packages+=(npm)
fi
# A system python3 needs python3-venv for 'python3 -m venv'; pyenv and similar builds do not.
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  packages+=(python3-venv)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them as root on Debian 12:  apt-get install ${missing[*]}" >&2
  exit 1
fi

# The appliance runs its own PostgreSQL cluster; stop the package from creating and starting
# a 'main' cluster of its own on port 5432.
if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi

echo "Installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
