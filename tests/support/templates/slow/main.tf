# A template whose build holds still after creating its agent, so a test can kill the daemon
# mid-apply: the agent is then in the state terraform had written.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_parameter" "delay" {
  name    = "delay"
  type    = "number"
  default = 0
  mutable = true
}

resource "appliance_agent" "main" {
  count = data.appliance_workspace.me.start_count
  os    = "linux"
  arch  = "amd64"
}

resource "terraform_data" "slow" {
  count      = data.appliance_parameter.delay.value > 0 ? data.appliance_workspace.me.start_count : 0
  depends_on = [appliance_agent.main]
  input      = data.appliance_parameter.delay.value

  provisioner "local-exec" {
    command = "echo holding for ${data.appliance_parameter.delay.value}s; sleep ${data.appliance_parameter.delay.value}"
  }
}
