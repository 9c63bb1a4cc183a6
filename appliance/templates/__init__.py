"""Templates: versioned Terraform sources whose import tells which parameters, agents and apps they have."""
