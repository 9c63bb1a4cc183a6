# Needs a provider the appliance's mirror does not carry.
terraform {
  required_providers {
    nothere = {
      source = "example.test/acme/nothere"
    }
  }
}

resource "nothere_thing" "x" {}
