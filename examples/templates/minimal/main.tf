# The smallest useful template: only the appliance provider and terraform's built-in
# terraform_data, so it builds on any appliance without downloading anything.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_workspace_owner" "me" {}

data "appliance_parameter" "greeting" {
  name         = "greeting"
  display_name = "Greeting"
  description  = "Printed when the workspace starts."
  type         = "string"
  default      = "hello"
  mutable      = true
  order        = 1

  validation {
    regex = "^[a-z ]{1,40}$"
    error = "Use 1 to 40 lowercase letters and spaces."
  }
}

data "appliance_parameter" "cpus" {
  name         = "cpus"
  display_name = "CPUs"
  description  = "How many CPUs the workspace may use."
  type         = "number"
  default      = 2
  order        = 2

  validation {
    min = 1
    max = 8
  }
}

# Persistent: no count, so it survives stop and is removed only when the workspace is deleted
# (a real template would put the home volume here).
resource "terraform_data" "home" {
  input = "${data.appliance_workspace_owner.me.name}/${data.appliance_workspace.me.name}"
}

# Ephemeral: exists only while the workspace runs (start_count is 0 for stop and delete).
resource "appliance_agent" "main" {
  count = data.appliance_workspace.me.start_count
  os    = "linux"
  arch  = "amd64"
  dir   = "/home/${data.appliance_workspace_owner.me.name}"
  env = {
    GREETING = data.appliance_parameter.greeting.value
  }
  startup_script = "echo \"$GREETING, ${data.appliance_workspace_owner.me.name}\""
}

resource "appliance_app" "shell" {
  count        = data.appliance_workspace.me.start_count
  agent_id     = appliance_agent.main[0].id
  slug         = "shell"
  display_name = "Shell"
  command      = "/bin/sh"
}

resource "appliance_metadata" "home" {
  resource_id = terraform_data.home.id
  daily_cost  = data.appliance_parameter.cpus.value

  item {
    key   = "owner"
    value = data.appliance_workspace_owner.me.name
  }
  item {
    key   = "cpus"
    value = data.appliance_parameter.cpus.value
  }
}
