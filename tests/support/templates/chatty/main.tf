# A template whose build waits, then prints many numbered lines: followers connect during the
# wait and must each receive every line.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_parameter" "wait" {
  name    = "wait"
  type    = "number"
  default = 0
  mutable = true
}

data "appliance_parameter" "lines" {
  name    = "lines"
  type    = "number"
  default = 10
  mutable = true
}

resource "appliance_agent" "main" {
  count = data.appliance_workspace.me.start_count
  os    = "linux"
  arch  = "amd64"
}

resource "terraform_data" "chatty" {
  count      = data.appliance_workspace.me.start_count
  depends_on = [appliance_agent.main]
  input      = data.appliance_parameter.lines.value

  provisioner "local-exec" {
    command = "sleep ${data.appliance_parameter.wait.value}; for i in $(seq 1 ${data.appliance_parameter.lines.value}); do echo chatty line $i; sleep 0.02; done"
  }
}
