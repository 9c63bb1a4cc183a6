# A workspace that is a real container: Debian 12 from the appliance's own registry, a home
# volume that outlives the container, and the agent started as the container's entrypoint.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_workspace_owner" "me" {}

data "appliance_parameter" "cpus" {
  name         = "cpus"
  display_name = "CPUs"
  description  = "How many CPUs the workspace may use."
  type         = "number"
  default      = 2
  mutable      = true
  order        = 1

  validation {
    min   = 1
    max   = 8
    error = "Use between {min} and {max} CPUs."
  }
}

data "appliance_parameter" "memory_mb" {
  name         = "memory_mb"
  display_name = "Memory (MiB)"
  description  = "How much memory the workspace may use, in MiB."
  type         = "number"
  default      = 2048
  mutable      = true
  order        = 2

  validation {
    min   = 256
    max   = 16384
    error = "Use between {min} and {max} MiB."
  }
}

# Persistent: no count, so stopping the workspace keeps it; deleting the workspace removes it.
resource "appliance_podman_volume" "home" {
  name = "home"
}

resource "appliance_agent" "main" {
  count = data.appliance_workspace.me.start_count
  os    = "linux"
  arch  = "amd64"
  dir   = "/home/dev"
  # Its output streams to the workspace page as it runs; the agent is ready once it exits 0.
  startup_script = <<-EOT
    echo "Workspace ${data.appliance_workspace.me.name} is starting as $(id -un) in $PWD."
    test -f ~/.profile || cp /etc/skel/.profile ~/ 2>/dev/null || true
    echo "Ready: $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) CPUs."
  EOT

  metadata {
    key          = "load"
    display_name = "Load average"
    script       = "cut -d' ' -f1-3 /proc/loadavg"
    interval     = 10
    timeout      = 5
  }
}

# Ephemeral: exists only while the workspace runs (start_count is 0 for stop and delete).
resource "appliance_podman_container" "workspace" {
  count    = data.appliance_workspace.me.start_count
  name     = "workspace"
  image    = "${data.appliance_workspace.me.registry}/base/debian:12"
  hostname = data.appliance_workspace.me.name
  user     = "dev"
  # The access URL may be loopback (embedded mode); inside the container the appliance is
  # host.containers.internal, which the runtime service forwards to it.
  entrypoint = ["sh", "-c", replace(appliance_agent.main[0].init_script, "/localhost|127\\.0\\.0\\.1/", "host.containers.internal")]
  env = {
    APPLIANCE_AGENT_TOKEN = appliance_agent.main[0].token
  }
  cpus      = data.appliance_parameter.cpus.value
  memory_mb = data.appliance_parameter.memory_mb.value

  mounts {
    volume = appliance_podman_volume.home.name
    path   = "/home/dev"
  }
}
