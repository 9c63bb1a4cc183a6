# A workspace with only an agent: its startup script, the script's timeout and one metadata block,
# so agent tests run the agent as a process of their own against the control plane.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_parameter" "script" {
  name    = "script"
  type    = "string"
  default = "echo hello"
  mutable = true
}

data "appliance_parameter" "timeout" {
  name    = "timeout"
  type    = "number"
  default = 60
  mutable = true
}

resource "appliance_agent" "main" {
  count                  = data.appliance_workspace.me.start_count
  os                     = "linux"
  arch                   = "amd64"
  startup_script         = data.appliance_parameter.script.value
  startup_script_timeout = data.appliance_parameter.timeout.value

  metadata {
    key          = "greeting"
    display_name = "Greeting"
    script       = "echo hi from $APPLIANCE_WORKSPACE_NAME"
    interval     = 1
    timeout      = 5
  }
}
