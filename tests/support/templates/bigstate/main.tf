# A template whose state is as large as a test asks (`kib`, held twice: terraform_data's input and
# output) and whose build then holds still for `delay` seconds, so a test can restart the control
# plane while terraform is applying and writing that state.
terraform {
  required_providers {
    appliance = {
      source = "appliance.internal/appliance/appliance"
    }
  }
}

data "appliance_workspace" "me" {}

data "appliance_parameter" "kib" {
  name    = "kib"
  type    = "number"
  default = 1
  mutable = true
}

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

resource "terraform_data" "pad" {
  count = data.appliance_workspace.me.start_count
  input = format("%0${data.appliance_parameter.kib.value * 1024}d", 0)
}

resource "terraform_data" "slow" {
  count      = data.appliance_workspace.me.start_count
  depends_on = [appliance_agent.main, terraform_data.pad]
  input      = data.appliance_parameter.delay.value

  provisioner "local-exec" {
    command = "echo holding for ${data.appliance_parameter.delay.value}s; sleep ${data.appliance_parameter.delay.value}"
  }
}
